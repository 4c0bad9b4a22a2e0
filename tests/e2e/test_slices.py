"""Scenario 6: the published ResourceSlices are valid and selectable with CEL.

The API server validated every slice it stored; these tests check what a cluster admin
would look at (`kubectl get resourceslices -o yaml`) and that DeviceClass and claim CEL
selectors see the attributes the driver publishes.
"""

from __future__ import annotations

import pytest
import yaml

from .harness import kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

NODE_GPUS = 8


def _pool_slices(k: kube.Kube, cluster: E2ECluster) -> list[kube.Obj]:
    def probe() -> list[kube.Obj] | None:
        slices = [
            s
            for s in k.items("resourceslices")
            if s["spec"].get("driver") == cluster.driver_name
            and s["spec"].get("nodeName") == cluster.node_name
        ]
        if not slices:
            return None
        # A complete pool: every slice of the newest generation is there.
        gen = max(s["spec"]["pool"]["generation"] for s in slices)
        current = [s for s in slices if s["spec"]["pool"]["generation"] == gen]
        return current if len(current) == current[0]["spec"]["pool"]["resourceSliceCount"] else None

    return k.wait("the node's pool of ResourceSlices", probe, 60)  # type: ignore[no-any-return]


def test_the_node_publishes_one_valid_pool_with_every_device(
    cluster: E2ECluster, k: kube.Kube
) -> None:
    slices = _pool_slices(k, cluster)
    pools = {s["spec"]["pool"]["name"] for s in slices}
    assert len(pools) == 1, pools
    devices = [d for s in slices for d in s["spec"].get("devices", [])]
    names = [d["name"] for d in devices]
    assert sorted(names) == sorted(f"gpu-{i}" for i in range(NODE_GPUS)), names
    for d in devices:
        attrs = d.get("attributes", {})
        assert attrs, f"device {d['name']} publishes no attributes"
        # Each attribute holds exactly one typed value (the API server enforces it too).
        for name, value in attrs.items():
            assert len(value) == 1 and next(iter(value)) in ("int", "bool", "string", "version"), (
                name,
                value,
            )

    # Round trip through the API server's validation once more: a server-side dry-run
    # update of what the driver wrote must be accepted unchanged.
    for s in slices:
        k.run("replace", "--dry-run=server", "-f", "-", input=yaml.safe_dump(s))


def _pod_with_selector(name: str, cel: str) -> tuple[kube.Obj, kube.Obj]:
    claim = kube.claim(name, 1)
    claim["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [{"cel": {"expression": cel}}]
    pod = kube.env_dump_pod(name, claims=[("gpu", {"resourceClaimName": name})])
    return claim, pod


def test_device_class_and_claim_selectors_match_published_attributes(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    slices = _pool_slices(k, cluster)
    by_name = {d["name"]: d for s in slices for d in s["spec"]["devices"]}
    target = by_name["gpu-5"]
    index_attr = target["attributes"]["index"]
    domain = cluster.driver_name

    # The DeviceClass (device.driver == ...) plus a claim selector on a published attribute.
    cel = f'device.attributes["{domain}"].index == {index_attr["int"]}'
    claim, pod = _pod_with_selector("index-five", cel)
    k.create([claim, pod], ns=ns)
    k.wait_pod_running(ns, "index-five")
    allocated = k.get("resourceclaim", "index-five", ns)["status"]["allocation"]
    (result,) = allocated["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"]) == (
        domain,
        slices[0]["spec"]["pool"]["name"],
        "gpu-5",
    )
    assert kube.gpu_devices(k.container_env(ns, "index-five")) == ["gpu-5"]

    # A selector that matches no published device leaves the pod unscheduled.
    claim, pod = _pod_with_selector("no-such-gpu", f'device.attributes["{domain}"].index == 99')
    k.create([claim, pod], ns=ns)

    def unschedulable() -> str | None:
        for c in k.get("pod", "no-such-gpu", ns).get("status", {}).get("conditions", []):
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return str(c.get("message", ""))
        return None

    assert "cannot allocate all claims" in k.wait("no-such-gpu unschedulable", unschedulable, 60)
