"""Scenarios 4 and 5: what the driver leaves on the node, and surviving restarts."""

from __future__ import annotations

import json

import pytest

from .harness import kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e


def _pod(name: str, template: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[("gpu", {"resourceClaimTemplateName": template})])


def _claim_of(k: kube.Kube, ns: str, pod: str) -> kube.Obj:
    """The ResourceClaim generated for the pod's only claim."""
    status = k.wait(
        f"claim of {pod} generated",
        lambda: k.get("pod", pod, ns).get("status", {}).get("resourceClaimStatuses"),
        60,
    )
    name = status[0]["resourceClaimName"]
    return k.get("resourceclaim", name, ns)


def _spec_files(cluster: E2ECluster, uid: str) -> list[str]:
    assert cluster.cdi_root is not None
    return sorted(p.name for p in cluster.cdi_root.iterdir() if uid in p.name)


def _checkpointed(cluster: E2ECluster) -> set[str]:
    d = cluster.checkpoint_dir
    return {p.stem for p in d.glob("*.json")} if d.is_dir() else set()


def _need_host(cluster: E2ECluster) -> None:
    if not cluster.host_access:
        pytest.skip("needs the node's CDI root and plugin dir (local provider)")


def test_deleting_the_pod_unprepares_its_claim(cluster: E2ECluster, k: kube.Kube, ns: str) -> None:
    _need_host(cluster)
    k.apply(kube.claim_template("one", 1), ns=ns)
    k.create(_pod("user", "one"), ns=ns)
    k.wait_pod_running(ns, "user")
    uid = _claim_of(k, ns, "user")["metadata"]["uid"]

    files = _spec_files(cluster, uid)
    assert len(files) == 1 and files[0].endswith(".json"), files
    spec = json.loads((cluster.cdi_root / files[0]).read_text())  # type: ignore[operator]
    (dev,) = kube.gpu_devices(k.container_env(ns, "user"))
    assert any(
        f"GPU_DEVICE_{dev.split('-')[1]}={dev}" in e
        for d in spec["devices"]
        for e in d["containerEdits"].get("env", [])
    ), spec
    assert uid in _checkpointed(cluster)

    k.delete("pod", "user", ns)
    k.wait(
        "CDI spec removed and checkpoint entry dropped",
        lambda: not _spec_files(cluster, uid) and uid not in _checkpointed(cluster),
        60,
    )


def test_pods_survive_a_driver_restart_and_new_pods_start(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    if not cluster.can_restart_driver:
        pytest.skip("needs to restart the driver process (local provider)")
    k.apply(kube.claim_template("one", 1), ns=ns)
    k.create(_pod("before", "one"), ns=ns)
    k.wait_pod_running(ns, "before")
    before_devices = kube.gpu_devices(k.container_env(ns, "before"))
    registered = cluster.registrations()

    cluster.restart_driver()
    cluster.wait_registered(registered)

    pod = k.get("pod", "before", ns)
    assert pod["status"]["phase"] == "Running", kube.describe_pod(pod)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert k.exec(ns, "before", ["echo", "alive"]).strip() == "alive"

    k.create(_pod("after", "one"), ns=ns)
    k.wait_pod_running(ns, "after", timeout=180)
    after_devices = kube.gpu_devices(k.container_env(ns, "after"))
    assert len(after_devices) == 1 and not set(after_devices) & set(before_devices)

    if cluster.host_access:
        # The restarted driver still knows the claim it prepared before: it unprepares it.
        uid = _claim_of(k, ns, "before")["metadata"]["uid"]
        k.delete("pod", "before", ns)
        k.wait(
            "claim prepared before the restart cleaned up",
            lambda: not _spec_files(cluster, uid) and uid not in _checkpointed(cluster),
            60,
        )


def _node_slices(k: kube.Kube, cluster: E2ECluster) -> list[kube.Obj]:
    return [
        s
        for s in k.items("resourceslices")
        if s["spec"].get("driver") == cluster.driver_name
        and s["spec"].get("nodeName") == cluster.node_name
    ]


def test_kubelet_restart_driver_registers_again_and_slices_come_back(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    if not cluster.can_restart_kubelet:
        pytest.skip("needs to restart the kubelet (local provider)")
    k.apply(kube.claim_template("one", 1), ns=ns)
    k.create(_pod("before", "one"), ns=ns)
    k.wait_pod_running(ns, "before")
    old = {
        s["metadata"]["uid"]
        for s in k.wait("slices published", lambda: _node_slices(k, cluster), 60)
    }
    registered = cluster.registrations()

    cluster.restart_kubelet()
    cluster.wait_registered(registered, timeout=90)
    # The kubelet deletes the node's slices when it starts; the driver puts them back.
    slices = k.wait(
        "slices published again by the driver",
        lambda: (
            (s := _node_slices(k, cluster)) and not {x["metadata"]["uid"] for x in s} & old and s
        ),
        120,
    )
    assert sum(len(s["spec"].get("devices", [])) for s in slices) == 8

    assert k.get("pod", "before", ns)["status"]["phase"] == "Running"
    k.create(_pod("after", "one"), ns=ns)
    k.wait_pod_running(ns, "after", timeout=180)
