"""Cluster providers for the e2e tests, picked by E2E_PROVIDER=local|existing|kind.

A provider hands the tests an ``E2ECluster``: a kubeconfig, the node the driver serves, and
what the tests may do on that node. Scenarios that need more than the API (reading the CDI
root, restarting the driver or the kubelet) check the matching capability and skip
otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import config, kube, logs, procs

REPO = Path(__file__).resolve().parents[3]


# Figures a provider measured, printed at the end of the session (tests/e2e/conftest.py).
SUMMARY: list[str] = []


class ProviderUnavailable(Exception):
    """The provider cannot run here (reason in the message): tests are skipped."""


@dataclass
class E2ECluster:
    provider: str
    kube: kube.Kube
    node_name: str
    driver_name: str = config.DRIVER_NAME
    # Host paths of the driver on node_name; set when the tests run on that host.
    cdi_root: Path | None = None
    plugin_dir: Path | None = None
    # The root of the classic mock layout on the node: <mock_dir>/dev/mock/device_<i> and
    # <mock_dir>/mock/so/device_<i>.so (they show up in containers at those paths).
    mock_dir: Path | None = None
    # Logs to show when a test fails: component name -> file.
    log_files: dict[str, Path] = field(default_factory=dict)
    local: object | None = None  # LocalCluster for the local provider
    driver: object | None = None  # LocalDriver for the local provider
    kind: object | None = None  # KindCluster for the kind provider

    def current_log_files(self) -> dict[str, Path]:
        """The logs to show now; the kind provider reads them off the node first."""
        from .kind import KindCluster

        if isinstance(self.kind, KindCluster):
            return {**self.log_files, **self.kind.collect_logs()}
        return self.log_files

    @property
    def host_access(self) -> bool:
        return self.cdi_root is not None and self.plugin_dir is not None

    @property
    def checkpoint_dir(self) -> Path:
        assert self.plugin_dir is not None
        return self.plugin_dir / "checkpoint"

    @property
    def can_restart_driver(self) -> bool:
        return self.driver is not None

    @property
    def can_restart_kubelet(self) -> bool:
        return self.local is not None

    # -- local-only operations (guarded by the capabilities above) -------------------
    def kubelet_log(self) -> str:
        path = self.log_files.get("kubelet")
        return path.read_text(errors="replace") if path else ""

    def registrations(self) -> int:
        """How often the kubelet has registered this driver's plugin (kubelet -v>=3)."""
        pat = re.compile(
            r'"Registered DRA plugin".*driverName="' + re.escape(self.driver_name) + '"'
        )
        return len(pat.findall(self.kubelet_log()))

    def restart_driver(self) -> None:
        from .driver import LocalDriver

        assert isinstance(self.driver, LocalDriver)
        self.driver.restart()

    def restart_kubelet(self) -> None:
        from .local import LocalCluster

        assert isinstance(self.local, LocalCluster)
        self.local.restart_kubelet()
        self.local.wait_node_ready()

    def wait_registered(self, more_than: int, timeout: float = 60) -> int:
        return int(
            procs.wait_for(
                f"kubelet registering {self.driver_name} (more than {more_than} times)",
                lambda: (n := self.registrations()) > more_than and n,
                timeout,
            )
        )


def provider_name() -> str:
    name = os.environ.get("E2E_PROVIDER", "").strip().lower()
    if name:
        if name not in ("local", "existing", "kind"):
            raise ValueError(f"E2E_PROVIDER={name!r}: use local, existing or kind")
        return name
    return "local"


@contextmanager
def provide(name: str | None = None) -> Iterator[E2ECluster]:
    name = name or provider_name()
    if name == "local":
        with _local() as c:
            yield c
    elif name == "existing":
        yield _existing(os.environ.get("KUBECONFIG"))
    else:
        with _kind() as c:
            yield c


@contextmanager
def _local() -> Iterator[E2ECluster]:
    from .driver import LocalDriver, driver_command
    from .local import LocalCluster

    missing = config.binaries().missing()
    if missing:
        raise ProviderUnavailable(
            "local provider: binaries missing, run "
            "tests/e2e/local/setup.sh first:\n  " + "\n  ".join(missing)
        )
    if os.geteuid() != 0:
        raise ProviderUnavailable("local provider: needs root (containerd, kubelet, mounts)")
    command = driver_command()
    if command is None:
        raise ProviderUnavailable(
            "local provider: no dra-cdi-driver command (install the "
            "package into .venv or set E2E_DRIVER_CMD)"
        )
    cluster = LocalCluster()
    try:
        t0 = time.monotonic()
        cluster.up()
        k = kube.Kube(cluster.kubeconfig)
        k.apply(kube.device_class(extended_resource=config.EXTENDED_RESOURCE))
        mock = cluster.L.root / "mock-root"
        driver = LocalDriver(
            cluster, command, mock_devices=int(os.environ.get("E2E_MOCK_DEVICES", "8"))
        )
        _make_mock_layout(mock, driver.mock_devices)
        driver.proc.argv += [
            f"--mock-dev-dir={mock}/dev/mock",
            f"--mock-lib-dir={mock}/mock/so",
            f"--mock-bin-dir={mock}/mock/bin",
        ]
        driver.start()
        driver.wait_sockets()
        c = E2ECluster(
            provider="local",
            kube=k,
            node_name=cluster.node_name,
            cdi_root=cluster.cdi_root,
            plugin_dir=driver.plugin_dir,
            mock_dir=mock,
            log_files=cluster.log_files(),
            local=cluster,
            driver=driver,
        )
        c.wait_registered(0)
        cluster.timings["driver_registered"] = time.monotonic() - t0
    except Exception as e:
        tails = logs.tails_text(cluster.log_files(), scale=0.5)
        cluster.down()
        raise RuntimeError(f"local cluster failed to start: {e}\n{tails}") from e
    try:
        yield c
    finally:
        cluster.down()


def _make_mock_layout(root: Path, count: int) -> None:
    """The classic mock layout (hack/mock-layout.sh), under `root` instead of /."""
    subprocess.run([str(REPO / "hack" / "mock-layout.sh"), str(count), str(root)], check=True)


def _existing(kubeconfig: str | None, provider: str = "existing") -> E2ECluster:
    if not kubeconfig:
        raise ProviderUnavailable("existing provider: set KUBECONFIG")
    k = kube.Kube(kubeconfig, kubectl=config.kubectl_path())
    node = os.environ.get("E2E_NODE") or _node_with_slices(k)
    if not node:
        raise ProviderUnavailable(
            f"existing provider: no node publishes {config.DRIVER_NAME} "
            "ResourceSlices (is the driver installed?); set E2E_NODE"
        )
    if k.get_or_none("deviceclass", config.DRIVER_NAME) is None:
        k.apply(kube.device_class(extended_resource=config.EXTENDED_RESOURCE))
    host = os.environ.get("E2E_HOST_CDI_ROOT")
    return E2ECluster(
        provider=provider,
        kube=k,
        node_name=node,
        # Only when the tests run on that node and say where the driver keeps its files.
        cdi_root=Path(host) if host else None,
        plugin_dir=Path(os.environ["E2E_HOST_PLUGIN_DIR"])
        if host and os.environ.get("E2E_HOST_PLUGIN_DIR")
        else None,
    )


def _node_with_slices(k: kube.Kube) -> str | None:
    for s in k.items("resourceslices"):
        if s["spec"].get("driver") == config.DRIVER_NAME and s["spec"].get("nodeName"):
            return str(s["spec"]["nodeName"])
    return None


@contextmanager
def _kind() -> Iterator[E2ECluster]:
    """A kind cluster made by the user's own hack/kind-*.sh workflow (harness/kind.py); then
    the tests see it as an `existing` cluster. Deleted afterwards, and the Docker engine
    stopped when the harness started it, unless E2E_KEEP_CLUSTER is set."""
    from . import engine
    from .kind import KindCluster, available, node_image

    reason = available()
    if reason:
        raise ProviderUnavailable(reason)
    docker = engine.up()
    kind: KindCluster | None = None
    try:
        kind = KindCluster(docker, node_image(docker.env))
        t0 = time.monotonic()
        kind.up()
        cluster = _existing(str(kind.kubeconfig), provider="kind")
        cluster.kind = kind
        cluster.mock_dir = Path("/")  # hack/kind-up.sh made the classic layout on the node
        kind.timings["cluster ready"] = time.monotonic() - t0
        yield cluster
    except BaseException as e:
        if kind is not None and not isinstance(e, GeneratorExit):
            print(logs.tails_text(kind.collect_logs(), scale=0.5))
        raise
    finally:
        if kind is not None:
            SUMMARY.extend(f"kind: {line}" for line in kind.summary())
        if os.environ.get("E2E_KEEP_CLUSTER"):
            where = kind.kubeconfig if kind else "-"
            print(f"\n[e2e] E2E_KEEP_CLUSTER is set: kind cluster kept, KUBECONFIG={where}")
        elif kind is not None:
            kind.down()
        elif docker.ours:
            engine.down()
