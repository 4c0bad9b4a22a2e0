"""Where things are: the version pins, the cache, the binaries the local provider runs."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = E2E_DIR.parent.parent
LOCAL_DIR = E2E_DIR / "local"

DRIVER_NAME = "gpu.cdi.example.com"
EXTENDED_RESOURCE = "mock.com/gpu"  # the chart's DeviceClass serves it for the mock source
NODE_NAME = "e2e-node"
PAUSE_IMAGE = "registry.local/pause:e2e"
TEST_IMAGE = "registry.local/busybox:e2e"
DEB_SUITE = os.environ.get("DEB_SUITE", "trixie")


def k8s_version() -> str:
    """The k8s.io/kubernetes version pinned in tests/e2e/go.mod (the single source of truth)."""
    override = os.environ.get("K8S_VERSION")
    if override:
        return override
    text = (E2E_DIR / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", text, re.M)
    if not m:
        raise RuntimeError(f"no k8s.io/kubernetes requirement in {E2E_DIR / 'go.mod'}")
    return m.group(1)


def e2e_required() -> bool:
    """E2E_REQUIRE is set (CI): what would skip a test fails it instead."""
    return os.environ.get("E2E_REQUIRE", "") not in ("", "0")


def cache_dir() -> Path:
    return Path(os.environ.get("DRA_E2E_CACHE") or Path.home() / ".cache" / "dra-cdi-driver-e2e")


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every program the local provider starts."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kubectl: Path
    etcd: Path
    containerd: Path
    containerd_shim_dir: Path  # holds containerd-shim-runc-v2 (must be on containerd's PATH)
    ctr: Path
    runc: Path

    def missing(self) -> list[str]:
        out = []
        for name, value in self.__dict__.items():
            p = Path(value)
            if not p.exists():
                out.append(f"{name}: {p}")
        return out


def binaries() -> Binaries:
    cache = cache_dir()
    kbin = cache / f"k8s-{k8s_version()}" / "bin"
    droot = cache / f"debs-{DEB_SUITE}" / "root" / "usr" / "bin"
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return Binaries(
        kube_apiserver=kbin / "kube-apiserver",
        kube_controller_manager=kbin / "kube-controller-manager",
        kube_scheduler=kbin / "kube-scheduler",
        kubelet=kbin / "kubelet",
        kubectl=kbin / "kubectl",
        etcd=droot / "etcd",
        containerd=droot / "containerd",
        containerd_shim_dir=droot,
        ctr=droot / "ctr",
        runc=Path(runc),
    )


def images_dir() -> Path:
    return cache_dir() / "images"


def kubectl_path() -> str:
    """kubectl for any provider: the pinned one from the cache, else the one on PATH."""
    env = os.environ.get("KUBECTL")
    if env:
        return env
    cached = binaries().kubectl
    if cached.exists():
        return str(cached)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("no kubectl: run tests/e2e/local/setup.sh or put kubectl on PATH")
    return found
