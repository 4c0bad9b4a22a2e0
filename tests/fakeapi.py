"""A tiny HTTP server that answers the few API calls the driver makes for claims.

It serves ResourceClaim JSON in the real resource.k8s.io shape, for fast tests.
It is not a Kubernetes API server: the e2e suite runs the driver against a real one.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_CLAIM_PATH = re.compile(
    r"^/apis/resource\.k8s\.io/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/resourceclaims/(?P<name>[^/?]+)"
)


class FakeApi:
    def __init__(self, versions: tuple[str, ...] = ("v1", "v1beta2", "v1beta1")) -> None:
        self.versions = versions
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        # Bodies sent as they are for a namespace/name, whatever they hold: a malformed claim,
        # something that is not an object, not JSON at all (the fuzz suite's claims).
        self.raw_claims: dict[tuple[str, str], bytes] = {}
        self.requests: list[str] = []
        # Status applies: (path with query, Content-Type, body).
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.patch_fail_with: int | None = None  # answer every status PATCH with this status
        # (namespace, name) -> field manager -> the status.devices entries it applied
        self.device_status: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
        self.fail_with: int | None = None  # answer every claim GET with this status
        self.hanging = False  # hold every claim GET until release() (an API that hangs)
        self._released = threading.Event()
        self._lock = threading.Lock()

    def release(self) -> None:
        """Let every held GET go (and every later one through)."""
        self.hanging = False
        self._released.set()

    def add_claim(self, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        with self._lock:
            self.claims[(meta["namespace"], meta["name"])] = claim

    def add_raw_claim(self, namespace: str, name: str, body: bytes) -> None:
        """Answer GETs of this claim with `body` (status 200), before any `add_claim`."""
        with self._lock:
            self.raw_claims[(namespace, name)] = body

    def remove_claim(self, namespace: str, name: str) -> None:
        with self._lock:
            self.claims.pop((namespace, name), None)
            self.raw_claims.pop((namespace, name), None)

    def handle(self, path: str) -> tuple[int, dict[str, Any] | bytes]:
        """The status and body of the answer: an object to send as JSON, or raw bytes."""
        with self._lock:
            self.requests.append(path)
        if path.split("?")[0].rstrip("/") == "/apis":
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": "resource.k8s.io",
                        "versions": [
                            {"groupVersion": f"resource.k8s.io/{v}", "version": v}
                            for v in self.versions
                        ],
                        "preferredVersion": {
                            "groupVersion": f"resource.k8s.io/{self.versions[0]}",
                            "version": self.versions[0],
                        },
                    }
                ],
            }
        match = _CLAIM_PATH.match(path)
        if match and match["version"] in self.versions:
            if self.hanging:
                self._released.wait(120)
            if self.fail_with:
                return self.fail_with, _status(self.fail_with, "injected failure")
            with self._lock:
                raw = self.raw_claims.get((match["ns"], match["name"]))
                claim = self.claims.get((match["ns"], match["name"]))
            if raw is not None:
                return 200, raw
            if claim is None:
                return 404, _status(404, f'resourceclaims "{match["name"]}" not found')
            return 200, {**claim, "apiVersion": f"resource.k8s.io/{match['version']}"}
        return 404, _status(404, "the server could not find the requested resource")

    def handle_patch(self, path: str, content_type: str, body: bytes) -> tuple[int, Any]:
        """A server-side apply of a claim's status: recorded, and its devices kept in the
        claim as the apply's field manager's (others' entries stay)."""
        # Not in `requests` (reads only): the status writes are counted in `patches`.
        match = _CLAIM_PATH.match(path)
        if not match or not path.split("?")[0].endswith("/status"):
            return 404, _status(404, "the server could not find the requested resource")
        try:
            applied = json.loads(body)
        except ValueError:
            return 400, _status(400, "not JSON")
        with self._lock:
            self.patches.append((path, content_type, applied))
            if self.patch_fail_with:
                return self.patch_fail_with, _status(self.patch_fail_with, "injected failure")
            claim = self.claims.get((match["ns"], match["name"]))
            if claim is None:
                return 404, _status(404, f'resourceclaims "{match["name"]}" not found')
            uid = (applied.get("metadata") or {}).get("uid")
            if uid and uid != claim["metadata"]["uid"]:
                return 409, _status(409, "Precondition failed: UID in precondition")
            query = parse_qs(urlsplit(path).query)
            manager = (query.get("fieldManager") or [""])[0]
            owned = self.device_status.setdefault((match["ns"], match["name"]), {})
            owned[manager] = (applied.get("status") or {}).get("devices") or []
            claim["status"]["devices"] = [d for entries in owned.values() for d in entries]
            return 200, claim


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }


@contextmanager
def serve(api: FakeApi) -> Iterator[str]:
    """Serve `api` on a loopback port; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as Go servers do; else 40 ms delayed-ACK stalls

        def do_GET(self) -> None:
            code, body = api.handle(self.path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, body = api.handle_patch(
                self.path, self.headers.get("Content-Type", ""), self.rfile.read(length)
            )
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "fake", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def claim_object(
    name: str,
    uid: str,
    results: list[dict[str, Any]] | None,
    *,
    namespace: str = "default",
    config: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ResourceClaim in the resource.k8s.io/v1 shape; results=None means unallocated."""
    claim: dict[str, Any] = {
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"devices": {"requests": []}},
        "status": {},
    }
    if results is not None:
        claim["status"]["allocation"] = {
            "devices": {"results": results, "config": config or []},
            "nodeSelector": {},
        }
    return claim


def result(
    device: str, request: str = "gpu", *, pool: str = "node-1", driver: str = "gpu.cdi.example.com"
) -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": pool, "device": device}
