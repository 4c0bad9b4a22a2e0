"""What the API server says about this node and about DRA: the kubelet's version, the
resource.k8s.io versions served. Reads only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.doctor.report import Result
from dra_cdi_driver.kubeapi.client import REQUEST_TIMEOUT_S, RESOURCE_GROUP, RESOURCE_VERSIONS

_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
T = TypeVar("T")


class ApiCallError(Exception):
    """A failed request; `status` is the HTTP code, None when the server was not reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def call(fn: Callable[[], T]) -> T:
    """Run one request; every failure becomes an ApiCallError with the server's words."""
    try:
        return fn()
    except ApiException as err:
        raise ApiCallError(_server_message(err), int(err.status or 0)) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise ApiCallError(f"cannot reach the API server: {err}") from None


def _server_message(err: ApiException) -> str:
    try:
        body = json.loads(err.body or "")
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return f"HTTP {err.status}: {message or err.reason or ''}"


def minor_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of "v1.36.3", "v1.33.1-eks-abc"; None when unreadable."""
    match = _VERSION.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class NodeInfo:
    kubelet_version: str  # e.g. "v1.36.3"
    container_runtime_version: str  # e.g. "containerd://1.7.24"


def read_node(api: client.ApiClient, name: str) -> NodeInfo:
    """Raises ApiCallError."""
    node = call(lambda: client.CoreV1Api(api).read_node(name, _request_timeout=REQUEST_TIMEOUT_S))
    info = node.status.node_info if node.status else None
    return NodeInfo(
        kubelet_version=str(info.kubelet_version or "") if info else "",
        container_runtime_version=str(info.container_runtime_version or "") if info else "",
    )


def node_error(err: ApiCallError, check: str, node_name: str) -> Result:
    if err.status == 404:
        return Result.fail(
            check,
            f"Node {node_name!r} does not exist in the API server",
            "set --node-name (NODE_NAME) to this node's name as `kubectl get nodes` shows it",
        )
    return Result.warn(check, f"cannot read Node {node_name!r}: {err}; not checked")


def check_kubelet(node: NodeInfo) -> Result:
    check = "kubelet"
    version = minor_version(node.kubelet_version)
    if version is None:
        return Result.warn(check, f"version {node.kubelet_version!r} not understood; not checked")
    text = node.kubelet_version
    if version >= (1, 34):
        return Result.ok(check, f"{text}: DRA is GA, the kubelet speaks the v1 DRA plugin API")
    if version >= (1, 32):
        return Result.warn(
            check,
            f"{text}: DRA is beta here, the kubelet speaks only the v1beta1 DRA plugin API, and "
            "the DynamicResourceAllocation feature gate must be on (kubelet, API server, "
            "scheduler, controller manager)",
            "upgrade to Kubernetes 1.34 or later, where DRA is on by default",
        )
    return Result.fail(
        check,
        f"{text}: the driver needs a kubelet of 1.32 or later (DRA beta; GA from 1.34)",
        "upgrade the node to Kubernetes 1.34 or later",
    )


def served_resource_versions(api: client.ApiClient) -> list[str]:
    """The resource.k8s.io versions the server serves, newest known first. Raises
    ApiCallError."""
    groups = call(lambda: client.ApisApi(api).get_api_versions(_request_timeout=REQUEST_TIMEOUT_S))
    served = {v.version for g in groups.groups if g.name == RESOURCE_GROUP for v in g.versions}
    return [v for v in RESOURCE_VERSIONS if v in served]


def server_version(api: client.ApiClient) -> str:
    info: Any = call(lambda: client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT_S))
    return str(info.git_version)


def check_resource_api(served: list[str], kubernetes_version: str) -> Result:
    check = "api server"
    where = f"Kubernetes {kubernetes_version}" if kubernetes_version else "version unknown"
    if not served:
        return Result.fail(
            check,
            f"resource.k8s.io is not served ({where}): DRA is off",
            "on Kubernetes 1.32-1.33, turn on the DynamicResourceAllocation feature gate and "
            "--runtime-config=resource.k8s.io/v1beta1=true; or upgrade to 1.34 or later",
        )
    others = f" (also {', '.join(served[1:])})" if served[1:] else ""
    if served[0] == "v1":
        return Result.ok(check, f"resource.k8s.io/v1 served{others}, {where}")
    return Result.warn(
        check,
        f"resource.k8s.io/v1 not served; the driver speaks {served[0]}{others}, {where}",
        "upgrade to Kubernetes 1.34 or later (DRA GA, resource.k8s.io/v1)",
    )
