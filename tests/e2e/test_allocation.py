"""Scenario 1: eight mock GPUs shared out between pods the way a user would see it."""

from __future__ import annotations

import time

import pytest

from .harness import kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

NODE_GPUS = 8


def _template_pod(name: str, template: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[("gpus", {"resourceClaimTemplateName": template})])


def _devices(k: kube.Kube, ns: str, pod: str) -> list[str]:
    return kube.gpu_devices(k.container_env(ns, pod))


def test_eight_gpus_go_to_pods_exclusively_and_a_waiting_pod_starts_when_freed(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    k.apply([kube.claim_template(f"gpus-{n}", n) for n in (4, 3, 2)], ns=ns)
    k.create([_template_pod("a", "gpus-4"), _template_pod("b", "gpus-3")], ns=ns)
    k.wait_pod_running(ns, "a")
    k.wait_pod_running(ns, "b")

    a, b = _devices(k, ns, "a"), _devices(k, ns, "b")
    assert len(a) == 4 and len(set(a)) == 4, f"pod a got {a}"
    assert len(b) == 3 and len(set(b)) == 3, f"pod b got {b}"
    assert not set(a) & set(b), f"a device given twice: a={a} b={b}"
    assert set(a) | set(b) <= {f"gpu-{i}" for i in range(NODE_GPUS)}

    if cluster.mock_dir is not None:
        # The CDI spec's device nodes and libraries reached the container at the classic
        # paths, and only its own; the tools of /mock/bin are on its PATH.
        listing = k.exec(ns, "a", ["ls", "/dev/mock", "/mock/so"])
        names = set(listing.split())
        for dev in a:
            i = dev.split("-")[1]
            assert f"device_{i}" in names and f"device_{i}.so" in names, listing
        for dev in b:
            assert f"device_{dev.split('-')[1]}" not in names, listing
        listed = k.exec(ns, "a", ["list_device.sh"]).splitlines()
        indexes = sorted(d.split("-")[1] for d in a)
        assert listed == [f"device_{i} /mock/so/device_{i}.so" for i in indexes], listed

    # Only one GPU is left: a pod wanting two is not scheduled, and says why.
    k.create(_template_pod("c", "gpus-2"), ns=ns)

    def unschedulable() -> str | None:
        pod = k.get("pod", "c", ns)
        for cond in pod.get("status", {}).get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return str(cond.get("message", ""))
        return None

    message = k.wait("pod c reported unschedulable", unschedulable, 60)
    assert "cannot allocate all claims" in message, message
    time.sleep(3)
    assert k.get("pod", "c", ns)["status"]["phase"] == "Pending"

    k.delete("pod", "a", ns)
    k.wait_pod_running(ns, "c", timeout=180)
    c = _devices(k, ns, "c")
    assert len(c) == 2 and not set(c) & set(b), f"c={c} b={b}"


def test_one_claim_shared_by_two_containers_and_two_pods(k: kube.Kube, ns: str) -> None:
    k.apply(kube.claim("shared-gpu", 1), ns=ns)
    source = {"resourceClaimName": "shared-gpu"}
    p1 = kube.env_dump_pod(
        "p1", claims=[("gpu", source)], containers=[("first", ["gpu"]), ("second", ["gpu"])]
    )
    p2 = kube.env_dump_pod("p2", claims=[("gpu", source)])
    k.create([p1, p2], ns=ns)
    k.wait_pod_running(ns, "p1")
    k.wait_pod_running(ns, "p2")

    seen = {
        "p1/first": kube.gpu_devices(k.container_env(ns, "p1", "first")),
        "p1/second": kube.gpu_devices(k.container_env(ns, "p1", "second")),
        "p2/ctr": kube.gpu_devices(k.container_env(ns, "p2", "ctr")),
    }
    first = seen["p1/first"]
    assert len(first) == 1, seen
    assert all(devs == first for devs in seen.values()), seen

    claim = k.get("resourceclaim", "shared-gpu", ns)
    reserved = {r["name"] for r in claim["status"].get("reservedFor", [])}
    assert reserved == {"p1", "p2"}, claim["status"]
    results = claim["status"]["allocation"]["devices"]["results"]
    assert [r["device"] for r in results] == first


def test_opaque_config_reaches_the_container(k: kube.Kube, ns: str) -> None:
    params = {
        "apiVersion": "gpu.cdi.example.com/v1alpha1",
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlice": "Short"},
        "env": {"E2E_GREETING": "hello from the claim", "E2E_MODE": "fast"},
    }
    k.apply(kube.claim_template("configured", 1, config_params=params), ns=ns)
    k.create(_template_pod("configured", "configured"), ns=ns)
    k.wait_pod_running(ns, "configured")
    env = k.container_env(ns, "configured")
    assert env.get("E2E_GREETING") == "hello from the claim", env
    assert env.get("E2E_MODE") == "fast", env
    (dev,) = kube.gpu_devices(env)
    i = dev.split("-")[1]
    assert env.get(f"GPU_DEVICE_{i}_SHARING_STRATEGY") == "TimeSlicing", env


def test_invalid_opaque_config_is_reported_on_the_pod(k: kube.Kube, ns: str) -> None:
    params = {"apiVersion": "gpu.cdi.example.com/v1alpha1", "kind": "GpuConfig", "bogusField": True}
    k.apply(kube.claim_template("bad-config", 1, config_params=params), ns=ns)
    k.create(_template_pod("bad", "bad-config"), ns=ns)

    def failed_prepare() -> str | None:
        for e in k.events(ns, "bad"):
            if "bogusField" in e.get("message", ""):
                return str(e["message"])
        return None

    message = k.wait("an event naming the bad field", failed_prepare, 90)
    assert "bogusField" in message
    pod = k.get("pod", "bad", ns)
    assert pod["status"]["phase"] == "Pending", kube.describe_pod(pod)
