"""Device health on the real scheduler, kubelet and API server (DRA 1.36), local provider.

A driver of its own (`health.cdi.example.com`, two mock GPUs) runs for this module. Its
health switch is a file per device in <plugin-dir>/health: the test flips a GPU unhealthy
and sees the taint in the ResourceSlice, a new pod that needs the GPU wait (unschedulable:
the 1.36 scheduler says the claim cannot be allocated, not why), the running pod's
allocatedResourcesStatus turn Unhealthy (kubelet gate ResourceHealthStatus, beta and on by
default in 1.36: the local cluster sets no gates, and it is on) and the claim's Ready
condition turn False; then flips it back and sees all recover.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import kube
from .harness.driver import LocalDriver, driver_command
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

DRIVER = "health.cdi.example.com"
TAINT = f"{DRIVER}/unhealthy"


@pytest.fixture(scope="module")
def driver(cluster: E2ECluster) -> Iterator[LocalDriver]:
    from .harness.local import LocalCluster

    local = cluster.local
    if not isinstance(local, LocalCluster) or cluster.mock_dir is None:
        pytest.skip("needs the local provider: a driver of its own runs on the test host")
    command = driver_command()
    assert command is not None
    k = cluster.kube
    started = LocalDriver(local, command, driver_name=DRIVER, mock_devices=2)
    cluster.log_files[started.name] = started.proc.log
    k.apply(kube.device_class(DRIVER, DRIVER))
    try:
        started.start()
        started.wait_sockets()
        yield started
    finally:
        started.stop()
        k.run("delete", "resourceslices", f"--field-selector=spec.driver={DRIVER}", check=False)
        k.run("delete", "deviceclass", DRIVER, "--ignore-not-found", check=False)


def flip(driver: LocalDriver, device: str, reason: str | None) -> float:
    path: Path = driver.plugin_dir / "health" / device
    if reason is None:
        path.unlink()
    else:
        path.write_text(reason + "\n")
    return time.monotonic()


def claim(name: str, index: int) -> kube.Obj:
    selector = {"cel": {"expression": f'device.attributes["{DRIVER}"].index == {index}'}}
    request = {"deviceClassName": DRIVER, "count": 1, "selectors": [selector]}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": request}]}},
    }


def pod(name: str, claim_name: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[(claim_name, {"resourceClaimName": claim_name})])


def taints(k: kube.Kube) -> dict[str, list[dict[str, Any]]]:
    slices = k.items("resourceslices", None, f"--field-selector=spec.driver={DRIVER}")
    return {d["name"]: d.get("taints", []) for s in slices for d in s["spec"].get("devices", [])}


def resource_health(k: kube.Kube, ns: str, name: str) -> dict[str, str]:
    """resourceID -> health, from the pod's containerStatuses[].allocatedResourcesStatus."""
    out: dict[str, str] = {}
    for status in k.get("pod", name, ns).get("status", {}).get("containerStatuses", []):
        for entry in status.get("allocatedResourcesStatus") or []:
            for resource in entry.get("resources") or []:
                out[resource["resourceID"]] = resource.get("health", "")
    return out


def ready(k: kube.Kube, ns: str, name: str) -> dict[str, str]:
    """device -> its Ready condition's status, from the claim's status.devices[]."""
    out = {}
    for device in k.get("resourceclaim", name, ns).get("status", {}).get("devices") or []:
        for cond in device.get("conditions") or []:
            if cond["type"] == "Ready" and device["driver"] == DRIVER:
                out[device["device"]] = cond["status"]
    return out


def scheduling_message(k: kube.Kube, ns: str, name: str) -> str | None:
    for cond in k.get("pod", name, ns).get("status", {}).get("conditions", []):
        if cond["type"] == "PodScheduled" and cond["status"] == "False":
            return str(cond.get("message", "")) or None
    return None


def test_an_unhealthy_gpu_is_tainted_shown_to_its_pod_and_claim_and_recovers(
    driver: LocalDriver, k: kube.Kube, ns: str, record_property: Any
) -> None:
    k.wait("both GPUs published", lambda: set(taints(k)) == {"gpu-0", "gpu-1"}, 60)
    k.create([claim("held", 0), claim("wanted", 1)], ns=ns)
    k.create(pod("running", "held"), ns=ns)
    k.wait_pod_running(ns, "running")
    k.wait("claim Ready", lambda: ready(k, ns, "held") == {"gpu-0": "True"}, 60)
    [entry] = k.get("resourceclaim", "held", ns)["status"]["devices"]
    assert entry["pool"] and entry["data"]["uuid"].startswith("GPU-")
    assert entry["data"]["cdiDeviceIDs"][0].startswith(f"{DRIVER}/gpu=gpu-0-")

    started = flip(driver, "gpu-0", "ECC errors (e2e)")
    flip(driver, "gpu-1", "ECC errors (e2e)")
    k.wait("taints published", lambda: all(taints(k).values()), 30, interval=0.2)
    taint_s = time.monotonic() - started
    [taint] = taints(k)["gpu-0"]
    assert (taint["key"], taint["value"], taint["effect"]) == (
        TAINT,
        "ECC-errors-e2e",
        "NoSchedule",
    )

    # The kubelet names a resource by its CDI device id.
    resource = entry["data"]["cdiDeviceIDs"][0]
    k.wait(
        "pod status Unhealthy",
        lambda: resource_health(k, ns, "running").get(resource) == "Unhealthy",
        60,
        interval=0.2,
    )
    pod_s = time.monotonic() - started
    k.wait("claim not Ready", lambda: ready(k, ns, "held") == {"gpu-0": "False"}, 30)
    assert k.get("pod", "running", ns)["status"]["phase"] == "Running"  # NoSchedule: it stays

    k.create(pod("waiting", "wanted"), ns=ns)
    message = k.wait("pod waiting unschedulable", lambda: scheduling_message(k, ns, "waiting"), 60)
    # gpu-1 is free and the only device the claim may have: the taint is all that stands in
    # the way. The 1.36 scheduler does not name it, only that the claim cannot be allocated.
    assert "cannot allocate all claims" in message, message

    flip(driver, "gpu-0", None)
    flip(driver, "gpu-1", None)
    k.wait("taints gone", lambda: not any(taints(k).values()), 30, interval=0.2)
    k.wait_pod_running(ns, "waiting", timeout=120)
    k.wait(
        "pod status Healthy",
        lambda: resource_health(k, ns, "running").get(resource) == "Healthy",
        60,
    )
    k.wait("claim Ready again", lambda: ready(k, ns, "held") == {"gpu-0": "True"}, 30)
    record_property("flip_to_taint_s", round(taint_s, 2))
    record_property("flip_to_pod_status_s", round(pod_s, 2))
    print(f"\nflip -> taint {taint_s:.2f}s, flip -> pod status {pod_s:.2f}s; scheduler: {message}")
