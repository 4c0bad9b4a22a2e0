"""The host files a CUDA container needs: the driver's user-space libraries and tools, and the
device nodes, found under the driver root.

Where the libraries go in the container, and why: each library (the versioned file, e.g.
libcuda.so.550.54.15, and its soname links libcuda.so.1, libcuda.so) is bind-mounted into
one dedicated directory, /usr/local/nvidia/lib64, and the tools into /usr/local/nvidia/bin.
That is the layout NVIDIA's CUDA and NGC images already point LD_LIBRARY_PATH and PATH at
(a contract from nvidia-docker 1 and GKE), whatever the distribution of host and image;
mounting at the host's own paths would work only when image and host agree on the lib dir
(/usr/lib64 vs /usr/lib/x86_64-linux-gnu). Every other image finds them through its
ld.so.cache, which ldcache.py's hook updates. We deliberately do not set
LD_LIBRARY_PATH: a CDI env entry replaces the image's value, and NGC images keep several
other directories there.

Only libraries whose file name carries the running driver's version are taken: a leftover
of an older driver next to the new one would fail against the loaded kernel module.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dra_cdi_driver.cdi import ContainerEdits, DeviceNode, Mount
from dra_cdi_driver.devices.inventory import InventoryError

log = logging.getLogger(__name__)

CONTAINER_LIB_DIR = Path("/usr/local/nvidia/lib64")
CONTAINER_BIN_DIR = Path("/usr/local/nvidia/bin")

# Searched in this order; 64-bit dirs first (RHEL keeps 32-bit libraries in /usr/lib).
LIB_DIRS = (
    "usr/lib64",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib64",
    "lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib",
    "lib",
)
BIN_DIRS = ("usr/bin", "usr/local/bin", "bin", "usr/sbin", "sbin")

# What nvidia-smi and CUDA need (the toolkit's "utility" and "compute" capabilities).
REQUIRED_LIBRARIES = ("libcuda.so", "libnvidia-ml.so")
LIBRARIES = (
    *REQUIRED_LIBRARIES,
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",
    "libcudadebugger.so",
    "libnvidia-cfg.so",
    "libnvidia-gpucomp.so",
    "libnvidia-opencl.so",
    "libnvidia-allocator.so",
    "libnvidia-pkcs11.so",
    "libnvidia-pkcs11-openssl3.so",
)
BINARIES = (
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)
# /dev/nvidiactl is always needed; the others only where the host has them.
CONTROL_NODE = "/dev/nvidiactl"
OPTIONAL_CONTROL_NODES = ("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
_CAP_MINOR = re.compile(r"^DeviceFileMinor:\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class HostRoot:
    """A host directory: `host` is its path for the container runtime (the CDI host paths),
    `mount` where this process sees it (a hostPath mount when the driver runs in a pod)."""

    host: Path
    mount: Path

    def host_path(self, seen: Path) -> str:
        return str(self.host / seen.relative_to(self.mount))

    def device_node(self, path: str) -> DeviceNode:
        """`path` inside the container; hostPath only when it differs (cdiVersion 0.5.0)."""
        host = str(self.host / path.lstrip("/"))
        return DeviceNode(path=path, host_path="" if host == path else host)

    def has(self, path: str) -> bool:
        return os.path.lexists(self.mount / path.lstrip("/"))


def dev_root(driver_root: HostRoot) -> HostRoot:
    """Where the /dev/nvidia* nodes are: in the driver root when it has its own /dev (the
    GPU operator's driver container), else the host's /dev."""
    if driver_root.has(CONTROL_NODE):
        return driver_root
    return HostRoot(Path("/"), Path("/"))


def control_nodes(dev: HostRoot) -> tuple[DeviceNode, ...]:
    present = [p for p in OPTIONAL_CONTROL_NODES if dev.has(p)]
    return tuple(dev.device_node(p) for p in (CONTROL_NODE, *present))


def mig_cap_nodes(dev: HostRoot, proc: Path, gpu_minor: int, gi: int, ci: int) -> list[str]:
    """The /dev/nvidia-caps nodes that grant access to one MIG device (its GPU instance and
    compute instance), from /proc/driver/nvidia/capabilities; [] where not readable."""
    base = proc / "driver" / "nvidia" / "capabilities" / f"gpu{gpu_minor}" / "mig" / f"gi{gi}"
    nodes: list[str] = []
    for access in (base / "access", base / f"ci{ci}" / "access"):
        try:
            match = _CAP_MINOR.search(access.read_text())
        except OSError:
            return []
        if not match:
            return []
        nodes.append(f"/dev/nvidia-caps/nvidia-cap{match.group(1)}")
    return nodes


def library_dirs(root: HostRoot) -> list[Path]:
    return [root.mount / d for d in LIB_DIRS if (root.mount / d).is_dir()]


@dataclass(frozen=True)
class DriverFiles:
    """The driver's files as CDI mounts, and what was looked for but not found."""

    mounts: tuple[Mount, ...]
    missing: tuple[str, ...]

    def edits(self) -> ContainerEdits:
        return ContainerEdits(mounts=self.mounts)


def find_driver_files(root: HostRoot, driver_version: str) -> DriverFiles:
    """The libraries of `driver_version` and the tools under the driver root.

    Raises InventoryError when libcuda or libnvidia-ml is missing: a container could not
    run CUDA, so publishing the GPUs would only move the failure into every pod.
    """
    mounts: list[Mount] = []
    missing: list[str] = []
    dirs = library_dirs(root)
    for base in LIBRARIES:
        found = _library(root, dirs, base, driver_version)
        if found:
            mounts += found
        elif base in REQUIRED_LIBRARIES:
            looked = ", ".join(str(root.mount / d) for d in LIB_DIRS)
            raise InventoryError(
                f"{base}.{driver_version} (NVIDIA driver {driver_version}) not found under "
                f"the driver root {root.mount} (looked in {looked}): set --nvidia-driver-root "
                "to where the driver is installed (e.g. /run/nvidia/driver with the GPU "
                "operator) and mount it into the driver's pod (--nvidia-driver-root-mount)"
            )
        else:
            missing.append(f"{base}.{driver_version}")
    for name in BINARIES:
        binary = _first_file(root, (root.mount / d / name for d in BIN_DIRS))
        if binary is None:
            missing.append(name)
            continue
        mounts.append(Mount(root.host_path(binary), str(CONTAINER_BIN_DIR / name)))
    return DriverFiles(tuple(mounts), tuple(missing))


def _library(root: HostRoot, dirs: list[Path], base: str, version: str) -> list[Mount]:
    """The versioned file and each link to it in its dir (sonames), all from one dir."""
    for lib_dir in dirs:
        real = _resolve(root.mount, lib_dir / f"{base}.{version}")
        if real is None:
            continue
        links = sorted(
            p.name
            for p in lib_dir.glob(f"{base}*")
            if p.is_symlink() and _resolve(root.mount, p) == real
        )
        host = root.host_path(real)
        names = [f"{base}.{version}", *(n for n in links if n != f"{base}.{version}")]
        return [Mount(host, str(CONTAINER_LIB_DIR / n)) for n in names]
    return []


def _first_file(root: HostRoot, candidates: Iterable[Path]) -> Path | None:
    for candidate in candidates:
        real = _resolve(root.mount, candidate)
        if real is not None:
            return real
    return None


def _resolve(root: Path, path: Path) -> Path | None:
    """Follow symlinks as the host would see them: an absolute target is inside the driver
    root, not inside this container. None unless it ends at a regular file within root."""
    for _ in range(40):  # the kernel's limit on nested links
        if not path.is_symlink():
            if not path.is_file():
                return None
            normal = Path(os.path.normpath(path))
            return normal if normal.is_relative_to(root) else None
        target = Path(os.readlink(path))
        path = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    return None
