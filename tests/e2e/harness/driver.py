"""The driver as a host process next to a local cluster (what the DaemonSet does elsewhere)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path

from . import config, procs


def driver_command() -> list[str] | None:
    """How to start `dra-cdi-driver`: $E2E_DRIVER_CMD, the repo's venv, PATH, or python -m."""
    env = os.environ.get("E2E_DRIVER_CMD")
    if env:
        return shlex.split(env)
    venv = config.REPO_ROOT / ".venv" / "bin" / "dra-cdi-driver"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("dra-cdi-driver")
    if found:
        return [found]
    if importlib.util.find_spec("dra_cdi_driver") is not None:
        return [sys.executable, "-m", "dra_cdi_driver"]
    return None


class LocalDriver:
    """Runs the driver with the cluster's admin kubeconfig and the kubelet's plugin dirs."""

    def __init__(
        self,
        cluster: object,
        command: list[str],
        *,
        mock_devices: int = 8,
        driver_name: str = config.DRIVER_NAME,
        device_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """device_args replace the mock source's (`--device-source mock --mock-devices N`);
        env is added to this process's environment."""
        from .local import LocalCluster

        assert isinstance(cluster, LocalCluster)
        self.cluster = cluster
        self.driver_name = driver_name
        self.mock_devices = mock_devices
        self.plugin_dir = cluster.plugin_dir(driver_name)
        self.registrar_dir = cluster.registrar_dir
        self.cdi_root = cluster.cdi_root
        argv = [
            *command,
            "--driver-name",
            driver_name,
            "--node-name",
            cluster.node_name,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--cdi-root",
            str(self.cdi_root),
            "--plugin-dir",
            str(self.plugin_dir),
            "--registrar-dir",
            str(self.registrar_dir),
            *(device_args or ["--device-source", "mock", "--mock-devices", str(mock_devices)]),
            "--log-level",
            "debug",
            *shlex.split(os.environ.get("E2E_DRIVER_ARGS", "")),
        ]
        # The usual driver keeps its short name in logs and pid files; others go by theirs.
        # An instance with a pod UID (a pod of a rolling update: its sockets carry the UID)
        # gets its own too, so that two instances of one driver keep apart.
        self.pod_uid = (env or {}).get("POD_UID") or None
        self.name = "dra-cdi-driver" if driver_name == config.DRIVER_NAME else driver_name
        if self.pod_uid:
            self.name += f"-{self.pod_uid[:8]}"
        self.proc = procs.Proc(
            self.name,
            argv,
            cluster.L.logs / f"{self.name}.log",
            cluster.L.run / f"{self.name}.pid",
            env=procs.env_with({"PYTHONUNBUFFERED": "1", **(env or {})}),
        )
        cluster.procs[self.name] = self.proc

    @property
    def registration_socket(self) -> Path:
        uid = f"-{self.pod_uid}" if self.pod_uid else ""
        return self.registrar_dir / f"{self.driver_name}{uid}-reg.sock"

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / (f"dra-{self.pod_uid}.sock" if self.pod_uid else "dra.sock")

    @property
    def checkpoint_dir(self) -> Path:
        return self.plugin_dir / "checkpoint"

    def start(self) -> None:
        self.proc.start()

    def stop(self) -> int | None:
        return self.proc.stop(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_sockets(self, timeout: float = 60) -> None:
        procs.wait_for(
            "driver sockets",
            lambda: self.registration_socket.exists() and self.dra_socket.exists(),
            timeout,
            procs=[self.proc],
        )
