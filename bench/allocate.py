"""ResourceClaims allocated the way kube-scheduler does it: create the claim, then write
`status.allocation` (device results and a node selector) through the /status subresource."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

GROUP = "resource.k8s.io"
VERSION = "v1"
REQUEST = "gpu"


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str


def claim_body(namespace: str, name: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "devices": {
                "requests": [
                    {"name": REQUEST, "exactly": {"deviceClassName": device_class, "count": 1}}
                ]
            }
        },
    }


def allocation(driver: str, node: str, device: str) -> dict[str, Any]:
    """What the scheduler writes: one result per allocated device, and where it is."""
    return {
        "devices": {
            "results": [{"request": REQUEST, "driver": driver, "pool": node, "device": device}]
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


def create_allocated_claims(
    api: client.ApiClient,
    *,
    namespace: str,
    driver: str,
    node: str,
    devices: int,
    count: int,
    prefix: str = "claim",
    workers: int = 8,
) -> list[ClaimRef]:
    """`count` claims in `namespace`, claim i allocated device gpu-<i mod devices> of `node`."""
    objects = client.CustomObjectsApi(api)

    def make(i: int) -> ClaimRef:
        name = f"{prefix}-{i:05d}"
        created: Any = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "resourceclaims", claim_body(namespace, name, driver)
        )
        created["status"] = {"allocation": allocation(driver, node, f"gpu-{i % devices}")}
        objects.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "resourceclaims", name, created
        )
        return ClaimRef(namespace, name, str(created["metadata"]["uid"]))

    with ThreadPoolExecutor(workers, thread_name_prefix="allocate") as pool:
        return list(pool.map(make, range(count)))
