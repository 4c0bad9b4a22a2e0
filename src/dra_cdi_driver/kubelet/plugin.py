"""The two unix-socket gRPC servers the kubelet dials, and their life cycle.

Start order matters: the DRA socket serves before the registration socket
appears, because the kubelet's plugin watcher registers us as soon as it sees
the registration socket. Stop is the reverse.
"""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from dra_cdi_driver import fsutil
from dra_cdi_driver.driver import Driver
from dra_cdi_driver.kubelet.device_health import DeviceHealthService
from dra_cdi_driver.kubelet.dra_service import VERSIONS, DraService
from dra_cdi_driver.kubelet.pb import (
    dra_health_v1alpha1_pb2_grpc,
    kubelet_dra_v1_pb2_grpc,
    kubelet_dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2_grpc,
)
from dra_cdi_driver.kubelet.registration import RegistrationService
from dra_cdi_driver.kubelet.sockets import serves
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660  # the kubelet runs as root; nobody else needs these sockets


class PluginStartError(Exception):
    """A socket could not be served; the message names the path."""


class KubeletPlugin:
    def __init__(
        self,
        *,
        driver_name: str,
        dra_socket: Path,
        registration_socket: Path,
        driver: Driver,
        workers: int = 16,
    ) -> None:
        self.dra_socket = dra_socket
        self.registration_socket = registration_socket
        self.registration = RegistrationService(driver_name, str(dra_socket))
        self._driver = driver
        self._workers = workers
        self._dra_server: grpc.Server | None = None
        self._registration_server: grpc.Server | None = None
        self._device_health = DeviceHealthService(driver.inventory, driver.node_name)

    def start(self) -> None:
        fsutil.RootDir(self.dra_socket.parent).ensure()
        # The registrar dir belongs to the kubelet: create it if missing, never chmod it.
        self.registration_socket.parent.mkdir(parents=True, exist_ok=True, mode=0o750)

        # Two more threads than prepare workers: the kubelet's health stream holds one.
        self._dra_server = grpc.server(
            ThreadPoolExecutor(self._workers + 2, thread_name_prefix="dra-grpc")
        )
        kubelet_dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(
            DraService(VERSIONS["v1"], self._driver), self._dra_server
        )
        kubelet_dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server(
            DraService(VERSIONS["v1beta1"], self._driver), self._dra_server
        )
        dra_health_v1alpha1_pb2_grpc.add_DRAResourceHealthServicer_to_server(
            self._device_health, self._dra_server
        )
        _serve(self._dra_server, self.dra_socket)

        self._registration_server = grpc.server(
            ThreadPoolExecutor(2, thread_name_prefix="registration-grpc")
        )
        pluginregistration_v1_pb2_grpc.add_RegistrationServicer_to_server(
            self.registration, self._registration_server
        )
        _serve(self._registration_server, self.registration_socket)
        log.info(
            "serving the kubelet",
            extra=kv(
                dra_socket=str(self.dra_socket), registration_socket=str(self.registration_socket)
            ),
        )

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop serving and remove both sockets (registration first: the kubelet then
        unregisters the plugin instead of dialing a dead socket)."""
        self._device_health.close()
        for server, path in (
            (self._registration_server, self.registration_socket),
            (self._dra_server, self.dra_socket),
        ):
            if server is not None:
                server.stop(grace_s).wait()
            _remove_socket(path)
        self._dra_server = self._registration_server = None
        log.info("stopped serving the kubelet")


def _serve(server: grpc.Server, path: Path) -> None:
    if path.exists() and serves(path):
        raise PluginStartError(
            f"another process serves {path}: is another instance of the driver running with "
            "the same --pod-uid (or without one)?"
        )
    if _remove_socket(path):
        log.info("removed stale socket", extra=kv(path=str(path)))
    try:
        port = server.add_insecure_port(f"unix://{path}")
    except RuntimeError as err:
        raise PluginStartError(f"cannot listen on {path}: {err}") from None
    if port == 0:
        raise PluginStartError(f"cannot listen on {path}")
    server.start()
    path.chmod(SOCKET_MODE)


def _remove_socket(path: Path) -> bool:
    """Remove a socket left by an earlier run; refuses to delete anything that is not one."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise PluginStartError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()
    return True
