"""Pods written for a device plugin run unchanged: `mock.com/gpu: N` in their resources.

demo/device-plugin-pods.yaml is applied as it is, but for its namespace (the test's) and the
image (the cluster's busybox: it cannot pull ubuntu:latest; on the local provider also host
networking, as it has no CNI). The DeviceClass carries extendedResourceName mock.com/gpu, as
the chart's does, and the node has the classic layout (hack/mock-layout.sh).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from .harness import config, kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

DEMO = config.REPO_ROOT / "demo" / "device-plugin-pods.yaml"
NODE_GPUS = 8


def demo_objects(cluster: E2ECluster, ns: str, step: str) -> list[dict[str, Any]]:
    objs = []
    for doc in yaml.safe_load_all(DEMO.read_text()):
        if (
            not doc
            or doc["kind"] == "Namespace"
            or doc["metadata"]["labels"]["dra-demo/step"] != step
        ):
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = ns
        if doc["kind"] == "Pod":
            for container in doc["spec"]["containers"]:
                container["image"] = config.TEST_IMAGE
            if cluster.provider == "local":
                doc["spec"]["hostNetwork"] = True
        objs.append(doc)
    return objs


def mock_gpus(k: kube.Kube, ns: str, pod: str) -> dict[str, list[str]]:
    """What the container sees of its mock GPUs: device nodes, libraries, list_device.sh."""
    return {
        "dev": k.exec(ns, pod, ["ls", "/dev/mock"]).split(),
        "so": k.exec(ns, pod, ["ls", "/mock/so"]).split(),
        "tool": k.exec(ns, pod, ["list_device.sh"]).splitlines(),
    }


def assert_devices(seen: dict[str, list[str]], count: int) -> list[str]:
    devices = seen["dev"]
    assert len(devices) == count, seen
    assert seen["so"] == [f"{d}.so" for d in devices], seen
    assert seen["tool"] == [f"{d} /mock/so/{d}.so" for d in devices], seen
    return devices


def unschedulable_message(k: kube.Kube, ns: str, pod: str) -> str | None:
    for cond in k.get("pod", pod, ns).get("status", {}).get("conditions", []):
        if cond["type"] == "PodScheduled" and cond["status"] == "False":
            return str(cond.get("message", "")) or None
    return None


def test_device_plugin_pods_get_their_mock_gpus_and_wait_when_none_are_left(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    if cluster.mock_dir is None:
        pytest.skip("needs the classic mock layout on the node")
    k.create(demo_objects(cluster, ns, "1"), ns=ns)
    k.wait_pod_running(ns, "ubuntu1", timeout=180)
    k.wait_pod_running(ns, "ubuntu2", timeout=180)
    first = assert_devices(mock_gpus(k, ns, "ubuntu1"), 4)
    second = assert_devices(mock_gpus(k, ns, "ubuntu2"), 3)
    assert not set(first) & set(second), (first, second)

    # One GPU left: the pod asking for two waits, and the scheduler says why.
    k.create(demo_objects(cluster, ns, "2"), ns=ns)
    message = k.wait(
        "ubuntu3 reported unschedulable", lambda: unschedulable_message(k, ns, "ubuntu3"), 60
    )
    assert "mock.com/gpu" in message or "cannot allocate all claims" in message, message
    assert k.get("pod", "ubuntu3", ns)["status"]["phase"] == "Pending"

    k.delete("pod", "ubuntu1", ns)
    k.wait_pod_running(ns, "ubuntu3", timeout=180)
    third = assert_devices(mock_gpus(k, ns, "ubuntu3"), 2)
    assert not set(third) & set(second)

    # A claim of its own and the extended resource, in one container: both are there.
    k.create(demo_objects(cluster, ns, "3"), ns=ns)
    k.wait_pod_running(ns, "mixed", timeout=180)
    mixed = assert_devices(mock_gpus(k, ns, "mixed"), 2)
    assert not set(mixed) & (set(second) | set(third))
    pod = k.get("pod", "mixed", ns)
    claims = {s["name"] for s in pod["status"].get("resourceClaimStatuses", [])}
    assert claims == {"gpu"}, pod["status"]
    extended = pod["status"].get("extendedResourceClaimStatus", {})
    assert extended.get("resourceClaimName"), pod["status"]
