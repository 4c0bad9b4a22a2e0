"""The two drivers under test, as processes started the way a DaemonSet pod would start them,
each with its own kubelet dirs and CDI root, and ready once GetInfo is answered."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import kubelet, procstat
from tests.e2e.harness import procs

OURS = "ours"
THEIRS = "theirs"


@dataclass(frozen=True)
class DriverKind:
    """How to start one of the two drivers; `key` is "ours" or "theirs"."""

    key: str
    label: str
    driver_name: str
    binary: Path | None = None  # the reference driver's executable
    command: tuple[str, ...] = ()  # ours: how to start it (default: the console script)
    env: tuple[tuple[str, str], ...] = ()  # added to the process environment

    def argv(
        self, root: Path, cdi_root: Path, kubeconfig: Path, node: str, devices: int
    ) -> list[str]:
        kubelet_dir = root / "kubelet"
        if self.key == OURS:
            return [
                *(self.command or _our_command()),
                f"--driver-name={self.driver_name}",
                f"--node-name={node}",
                f"--kubeconfig={kubeconfig}",
                f"--kubelet-dir={kubelet_dir}",
                f"--cdi-root={cdi_root}",
                f"--mock-devices={devices}",
            ]
        assert self.binary is not None
        return [
            str(self.binary),
            f"--driver-name={self.driver_name}",
            f"--node-name={node}",
            f"--kubeconfig={kubeconfig}",
            f"--kubelet-registrar-directory-path={kubelet_dir / 'plugins_registry'}",
            f"--kubelet-plugins-directory-path={kubelet_dir / 'plugins'}",
            f"--cdi-root={cdi_root}",
            f"--num-devices={devices}",
            # client-go's defaults (5 QPS, burst 10) would cap it at 5 claim reads a second;
            # our driver has no client-side limit, so neither gets one here.
            "--kube-api-qps=100000",
            "--kube-api-burst=100000",
        ]

    def registration_socket(self, root: Path) -> Path:
        return root / "kubelet" / "plugins_registry" / f"{self.driver_name}-reg.sock"


def ours(command: tuple[str, ...] = ()) -> DriverKind:
    return DriverKind(OURS, "dra-cdi-driver (Python)", "gpu.cdi.example.com", command=command)


def theirs(binary: Path, version: str) -> DriverKind:
    return DriverKind(THEIRS, f"dra-example-driver {version} (Go)", "gpu.example.com", binary)


def _our_command() -> list[str]:
    """The `dra-cdi-driver` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("dra-cdi-driver")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dra_cdi_driver"]


class DriverProcess:
    """One running driver: started, timed until registration answers, stopped."""

    def __init__(
        self,
        kind: DriverKind,
        root: Path,
        kubeconfig: Path,
        node: str,
        devices: int = 8,
        cdi_root: Path | None = None,
    ) -> None:
        self.kind = kind
        self.root = root
        self.cdi_root = cdi_root or root / "cdi"
        # The kubelet's dirs exist before any plugin starts (it creates them).
        for kubelet_dir in ("plugins_registry", "plugins"):
            (root / "kubelet" / kubelet_dir).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **dict(kind.env), "NODE_NAME": node}
        self.proc = procs.Proc(
            kind.key,
            kind.argv(root, self.cdi_root, kubeconfig, node, devices),
            root / "driver.log",
            root / "driver.pid",
            env=env,
        )
        self.startup_s = float("nan")
        self.started_at = float("nan")  # time.perf_counter() just before the process started
        self.info: kubelet.PluginInfo | None = None

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30.0) -> float:
        """Start the process; returns the seconds until GetInfo was answered."""
        socket = self.kind.registration_socket(self.root)
        started = self.started_at = time.perf_counter()
        self.proc.start()
        deadline = time.monotonic() + timeout_s
        while True:
            self.proc.check()
            if socket.exists():
                try:
                    self.info = kubelet.get_info(socket, timeout_s=1.0)
                    break
                except grpc.RpcError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind.label}: no registration after {timeout_s} s")
            time.sleep(0.002)
        self.startup_s = time.perf_counter() - started
        kubelet.notify_registered(socket)
        return self.startup_s

    def wait_idle(
        self, quiet_cpu_s: float = 0.02, interval_s: float = 0.25, timeout_s: float = 30.0
    ) -> float:
        """Seconds until the process uses less than `quiet_cpu_s` of CPU in `interval_s`: it
        has finished starting (slices published, lazy imports done)."""
        started = time.perf_counter()
        before = self.cpu_seconds()
        while time.perf_counter() - started < timeout_s:
            time.sleep(interval_s)
            now = self.cpu_seconds()
            if now - before < quiet_cpu_s:
                return time.perf_counter() - started - interval_s
            before = now
        return float("nan")

    def dra(self) -> kubelet.DraClient:
        assert self.info is not None
        return kubelet.DraClient(self.info.endpoint)

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return procstat.rss_mib(self.pid)

    def peak_rss_mib(self) -> float:
        return procstat.peak_rss_mib(self.pid)

    def stop(self) -> None:
        self.proc.stop(timeout=15)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.cdi_root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return procs.tail(self.proc.log, lines)
