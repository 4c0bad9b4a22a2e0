"""Shared and partitioned mock GPUs on the real scheduler, kubelet and containerd (DRA 1.36).

Local provider only: two more drivers run next to the usual one for this module, each with
one mock GPU: `shared.cdi.example.com` (--mock-gpu-mode shared: consumable capacity) and
`parts.cdi.example.com` (--mock-gpu-mode partitioned: a counter set, the whole GPU, halves
and quarters). The scheduler decides who gets what; the driver's CDI specs decide what each
container sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .harness import kube
from .harness.driver import LocalDriver, driver_command
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

SHARED = "shared.cdi.example.com"
PARTS = "parts.cdi.example.com"


@pytest.fixture(scope="module")
def drivers(cluster: E2ECluster) -> Iterator[dict[str, LocalDriver]]:
    from .harness.local import LocalCluster

    local = cluster.local
    if not isinstance(local, LocalCluster) or cluster.mock_dir is None:
        pytest.skip("needs the local provider: two more drivers run on the test host")
    command = driver_command()
    assert command is not None
    root = cluster.mock_dir
    started = {}
    k = cluster.kube
    try:
        for name, mode in ((SHARED, "shared"), (PARTS, "partitioned")):
            driver = LocalDriver(
                local,
                command,
                driver_name=name,
                device_args=[
                    "--device-source=mock",
                    "--mock-devices=1",
                    f"--mock-gpu-mode={mode}",
                    f"--mock-dev-dir={root}/dev/mock",
                    f"--mock-lib-dir={root}/mock/so",
                    f"--mock-bin-dir={root}/mock/bin",
                ],
            )
            cluster.log_files[driver.name] = driver.proc.log
            k.apply(kube.device_class(name, name))
            driver.start()
            driver.wait_sockets()
            started[name] = driver
        yield started
    finally:
        for name, driver in started.items():
            driver.stop()
            k.run("delete", "resourceslices", f"--field-selector=spec.driver={name}", check=False)
            k.run("delete", "deviceclass", name, "--ignore-not-found", check=False)


def claim(name: str, device_class: str, **exactly: Any) -> kube.Obj:
    request = {"deviceClassName": device_class, "count": 1, **exactly}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": request}]}},
    }


def with_config(obj: kube.Obj) -> kube.Obj:
    parameters = {
        "apiVersion": "gpu.cdi.example.com/v1alpha1",
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlice": "Short"},
    }
    obj["spec"]["devices"]["config"] = [
        {"requests": ["gpu"], "opaque": {"driver": PARTS, "parameters": parameters}}
    ]
    return obj


def pod(name: str, *claims: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[(c, {"resourceClaimName": c}) for c in claims])


def partition(kind: str) -> list[dict[str, Any]]:
    return [{"cel": {"expression": f'device.attributes["{PARTS}"].partition == "{kind}"'}}]


def scheduling_message(k: kube.Kube, ns: str, name: str) -> str | None:
    for cond in k.get("pod", name, ns).get("status", {}).get("conditions", []):
        if cond["type"] == "PodScheduled" and cond["status"] == "False":
            return str(cond.get("message", "")) or None
    return None


def wait_pool(k: kube.Kube, driver: str, devices: int) -> None:
    def listed() -> bool:
        slices = k.items("resourceslices", None, f"--field-selector=spec.driver={driver}")
        return sum(len(s["spec"].get("devices", [])) for s in slices) == devices

    k.wait(f"{driver} publishing {devices} devices", listed, 60)


def test_claims_share_one_gpu_by_memory_until_it_is_used_up(
    drivers: dict[str, LocalDriver], k: kube.Kube, ns: str
) -> None:
    wait_pool(k, SHARED, 1)
    memory = {"capacity": {"requests": {"memory": "30Gi"}}}
    k.create([claim(f"share-{i}", SHARED, **memory) for i in range(3)], ns=ns)
    k.create([pod("a", "share-0"), pod("b", "share-1")], ns=ns)
    k.wait_pod_running(ns, "a")
    k.wait_pod_running(ns, "b")
    envs = {p: k.container_env(ns, p) for p in ("a", "b")}
    for env in envs.values():
        assert env["GPU_DEVICE_0"] == "gpu-0"
        assert env["GPU_DEVICE_0_MEMORY_LIMIT"] == "30Gi"
        assert env["GPU_DEVICE_0_COMPUTE_LIMIT"] == "10"  # the policy's default
    assert envs["a"]["GPU_DEVICE_0_SHARE_ID"] != envs["b"]["GPU_DEVICE_0_SHARE_ID"]
    results = {
        c: k.get("resourceclaim", c, ns)["status"]["allocation"]["devices"]["results"][0]
        for c in ("share-0", "share-1")
    }
    assert {r["device"] for r in results.values()} == {"gpu-0"}
    assert envs["a"]["GPU_DEVICE_0_SHARE_ID"] == results["share-0"]["shareID"]

    # 30 + 30 of 80Gi are taken: a third 30Gi share does not fit, and the pod says why.
    k.create(pod("c", "share-2"), ns=ns)
    message = k.wait("pod c reported unschedulable", lambda: scheduling_message(k, ns, "c"), 60)
    assert "cannot allocate all claims" in message, message

    # One sharer goes: the other keeps its device and spec, and the waiting one gets its share.
    k.delete("pod", "a", ns)
    k.wait_pod_running(ns, "c", timeout=120)
    assert k.get("pod", "b", ns)["status"]["phase"] == "Running"
    assert kube.parse_env(k.logs(ns, "b")) == envs["b"]
    shares = drivers[SHARED].cdi_root.glob(f"{SHARED}_gpu-*.json")
    assert len(list(shares)) == 2  # b's and c's


def test_partitions_never_overlap_what_is_allocated(
    drivers: dict[str, LocalDriver], k: kube.Kube, ns: str
) -> None:
    wait_pool(k, PARTS, 7)  # the whole GPU, 2 halves, 4 quarters
    k.create(
        [
            claim("whole", PARTS, selectors=partition("whole")),
            claim("quarter", PARTS, selectors=partition("quarter")),
            with_config(claim("halves", PARTS, selectors=partition("half"), count=2)),
        ],
        ns=ns,
    )
    k.create(pod("big", "whole"), ns=ns)
    k.wait_pod_running(ns, "big")
    assert kube.parse_env(k.logs(ns, "big"))["GPU_DEVICE_0"] == "gpu-0"

    # The whole GPU consumes its counter set: not even a quarter of it is left.
    k.create(pod("small", "quarter"), ns=ns)
    message = k.wait("pod small unschedulable", lambda: scheduling_message(k, ns, "small"), 60)
    assert "cannot allocate all claims" in message, message

    # Without the whole GPU, its two halves fit, together, in one claim.
    k.delete("pod", "big", ns)
    k.delete("pod", "small", ns)
    k.create(pod("two-halves", "halves"), ns=ns)
    k.wait_pod_running(ns, "two-halves", timeout=120)
    env = kube.parse_env(k.logs(ns, "two-halves"))
    assert {env["GPU_DEVICE_0_HALF_0"], env["GPU_DEVICE_0_HALF_1"]} == {
        "gpu-0-half-0",
        "gpu-0-half-1",
    }
    assert env["GPU_DEVICE_0_HALF_0_UUID"] != env["GPU_DEVICE_0_HALF_1_UUID"]
    # The opaque GpuConfig reaches each partition as it does a whole GPU.
    assert env["GPU_DEVICE_0_HALF_0_SHARING_STRATEGY"] == "TimeSlicing"
    assert env["GPU_DEVICE_0_HALF_1_TIMESLICE_INTERVAL"] == "Short"
