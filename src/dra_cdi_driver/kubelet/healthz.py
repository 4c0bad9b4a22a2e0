"""The driver's HTTP port: GET /healthz for the probes, GET /metrics for Prometheus.

/healthz is 200 only while both kubelet-facing gRPC servers answer on their sockets
(this instance's: named with the pod UID when it has one). It dials them the way the
kubelet does, so a wedged server, a deleted socket or a dead thread pool fails the
liveness probe and the pod restarts.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from dra_cdi_driver.kubelet.pb import (
    kubelet_dra_v1_pb2,
    kubelet_dra_v1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)
from dra_cdi_driver.logs import kv
from dra_cdi_driver.metrics import Metrics

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0


def check(dra_socket: Path, registration_socket: Path) -> str | None:
    """None when healthy, else what failed."""
    try:
        with grpc.insecure_channel(f"unix://{registration_socket}") as channel:
            pluginregistration_v1_pb2_grpc.RegistrationStub(channel).GetInfo(
                pluginregistration_v1_pb2.InfoRequest(), timeout=PROBE_TIMEOUT_S
            )
        with grpc.insecure_channel(f"unix://{dra_socket}") as channel:
            # An empty request touches the whole server path but prepares nothing.
            kubelet_dra_v1_pb2_grpc.DRAPluginStub(channel).NodePrepareResources(
                kubelet_dra_v1_pb2.NodePrepareResourcesRequest(), timeout=PROBE_TIMEOUT_S
            )
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return None


class HealthServer:
    def __init__(
        self,
        port: int,
        dra_socket: Path,
        registration_socket: Path,
        metrics: Metrics | None = None,
    ) -> None:
        sockets = (dra_socket, registration_socket)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/healthz":
                    problem = check(*sockets)
                    if problem:
                        log.warning("health check failed", extra=kv(problem=problem))
                    body = (problem or "ok").encode() + b"\n"
                    self._answer(503 if problem else 200, body, "text/plain")
                elif path == "/metrics" and metrics is not None:
                    body, content_type = metrics.render(self.headers.get("Accept"))
                    self._answer(200, body, content_type)
                else:
                    self.send_error(404)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="healthz", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving /healthz and /metrics", extra=kv(port=self.port))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
