"""Real driver processes on real unix sockets, driven by a gRPC client built from our protos."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from dra_cdi_driver.kubelet.pb import (
    kubelet_dra_v1_pb2,
    kubelet_dra_v1_pb2_grpc,
    kubelet_dra_v1beta1_pb2,
    kubelet_dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from tests.fakeapi import FakeApi, serve, write_kubeconfig

DRIVER = "gpu.cdi.example.com"
NODE = "node-1"
PB = {"v1": kubelet_dra_v1_pb2, "v1beta1": kubelet_dra_v1beta1_pb2}
STUBS = {"v1": kubelet_dra_v1_pb2_grpc, "v1beta1": kubelet_dra_v1beta1_pb2_grpc}


@dataclass
class DriverProcess:
    """One `dra-cdi-driver` process with its own dirs, as a DaemonSet pod would run it."""

    root: Path
    kubeconfig: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to this environment
    proc: subprocess.Popen[bytes] | None = None

    @property
    def plugin_dir(self) -> Path:
        return self.root / "plugins" / DRIVER

    @property
    def registrar_dir(self) -> Path:
        return self.root / "plugins_registry"

    @property
    def cdi_root(self) -> Path:
        return self.root / "cdi"

    @property
    def pod_uid(self) -> str | None:
        return self.env.get("POD_UID") or None

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / (f"dra-{self.pod_uid}.sock" if self.pod_uid else "dra.sock")

    @property
    def registration_socket(self) -> Path:
        uid = f"-{self.pod_uid}" if self.pod_uid else ""
        return self.registrar_dir / f"{DRIVER}{uid}-reg.sock"

    @property
    def log_path(self) -> Path:
        return self.root / (f"driver-{self.pod_uid}.log" if self.pod_uid else "driver.log")

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "dra_cdi_driver",
            "--driver-name",
            DRIVER,
            "--node-name",
            NODE,
            "--kubeconfig",
            str(self.kubeconfig),
            "--kubelet-dir",
            str(self.root),
            "--cdi-root",
            str(self.cdi_root),
            "--log-level",
            "debug",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Ready when the registration socket answers GetInfo."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"driver exited {self.proc.returncode}:\n{self.log()}")
            if self.registration_socket.exists():
                try:
                    self.plugin_info()
                    return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"driver not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def plugin_info(self) -> pluginregistration_v1_pb2.PluginInfo:
        with grpc.insecure_channel(f"unix://{self.registration_socket}") as channel:
            stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
            info: pluginregistration_v1_pb2.PluginInfo = stub.GetInfo(
                pluginregistration_v1_pb2.InfoRequest(), timeout=5
            )
            return info

    def notify(self, registered: bool, error: str = "") -> None:
        with grpc.insecure_channel(f"unix://{self.registration_socket}") as channel:
            stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
            stub.NotifyRegistrationStatus(
                pluginregistration_v1_pb2.RegistrationStatus(
                    plugin_registered=registered, error=error
                ),
                timeout=5,
            )

    def dra(self, version: str) -> DraClient:
        return DraClient(self.dra_socket, version)

    def spec_files(self) -> list[Path]:
        return sorted(self.cdi_root.glob("*.json")) if self.cdi_root.exists() else []

    def checkpoint_files(self) -> list[Path]:
        directory = self.plugin_dir / "checkpoint"
        return sorted(directory.glob("*.json")) if directory.exists() else []


class DraClient:
    """Plays the kubelet: calls NodePrepare/NodeUnprepareResources over the unix socket."""

    def __init__(self, socket: Path, version: str) -> None:
        self.pb = PB[version]
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._stub = STUBS[version].DRAPluginStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _claims(self, claims: list[tuple[str, str, str]]) -> list[object]:
        return [self.pb.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims]

    def prepare(self, *claims: tuple[str, str, str]):  # type: ignore[no-untyped-def]
        request = self.pb.NodePrepareResourcesRequest(claims=self._claims(list(claims)))
        return self._stub.NodePrepareResources(request, timeout=45)

    def unprepare(self, *claims: tuple[str, str, str]):  # type: ignore[no-untyped-def]
        request = self.pb.NodeUnprepareResourcesRequest(claims=self._claims(list(claims)))
        return self._stub.NodeUnprepareResources(request, timeout=45)


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    with serve(api) as url:
        yield api, url


DriverFactory = Callable[..., DriverProcess]


@pytest.fixture
def make_driver(tmp_path: Path) -> Iterator[DriverFactory]:
    """Start driver processes against an API URL; all are killed and cleaned up after."""
    started: list[DriverProcess] = []

    def make(
        api_url: str,
        extra_args: Sequence[str] = (),
        *,
        pod_uid: str | None = None,
        beside: DriverProcess | None = None,
    ) -> DriverProcess:
        """`beside`: share that driver's dirs, as the two pods of a rolling update do."""
        # Unix socket paths are limited to 105 bytes (gRPC); pytest's tmp_path can be long.
        root = beside.root if beside else Path(tempfile.mkdtemp(prefix="dra-it-", dir="/tmp"))
        kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{len(started)}", api_url)
        driver = DriverProcess(
            root=root,
            kubeconfig=kubeconfig,
            extra_args=list(extra_args),
            env={"POD_UID": pod_uid} if pod_uid else {},
        )
        started.append(driver)
        driver.start()
        return driver

    yield make
    for driver in started:
        if driver.proc is not None:
            driver.stop(signal.SIGKILL)
        shutil.rmtree(driver.root, ignore_errors=True)


@pytest.fixture
def driver_proc(make_driver: DriverFactory, fake_api: tuple[FakeApi, str]) -> DriverProcess:
    return make_driver(fake_api[1])
