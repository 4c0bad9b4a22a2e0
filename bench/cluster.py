"""The API server both drivers talk to: etcd + kube-apiserver from the e2e cache, plus the
objects a kubelet-less node needs (a bare Node, DeviceClasses, namespaces)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.test_publisher_apiserver import ApiServer, local_apiserver, missing_binaries

__all__ = [
    "ApiServer",
    "apiserver",
    "ensure_device_class",
    "ensure_namespace",
    "ensure_node",
    "missing_binaries",
    "server_version",
]

GROUP = "resource.k8s.io"


@contextlib.contextmanager
def apiserver(root: Path) -> Iterator[ApiServer]:
    """etcd (no fsync) and kube-apiserver on loopback, stopped on exit."""
    with local_apiserver(root) as server:
        yield server


def server_version(server: ApiServer) -> str:
    return str(client.VersionApi(server.client()).get_code().git_version)


def ensure_node(api: client.ApiClient, name: str) -> None:
    """A bare Node object: what the drivers' ResourceSlices are owned by (no kubelet runs)."""
    _create(lambda: client.CoreV1Api(api).create_node(_node(name)))


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    _create(lambda: client.CoreV1Api(api).create_namespace(body))


def ensure_device_class(api: client.ApiClient, driver: str) -> None:
    """A DeviceClass named after the driver that selects its devices (what the claims ask)."""
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "DeviceClass",
        "metadata": {"name": driver},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
    }
    objects = client.CustomObjectsApi(api)
    _create(lambda: objects.create_cluster_custom_object(GROUP, "v1", "deviceclasses", body))


def _create(call: Callable[[], object]) -> None:
    """Run a create call; an object that already exists is fine."""
    try:
        call()
    except ApiException as err:
        if err.status != 409:
            raise


def _node(name: str) -> client.V1Node:
    return client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"bench": "dra"}))
