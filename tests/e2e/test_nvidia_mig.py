"""A GPU in MIG mode on the real scheduler: it and its MIG devices consume one counter set, so
the scheduler never hands out the GPU together with one of its MIG devices.

Local provider only, with a fake GPU node as in test_nvidia.py (fake NVML, a built driver
root): one H100 in MIG mode with seven 1g.10gb MIG devices, published by a driver of its own
(mig.cdi.example.com) with a DeviceClass of the same name. What the containers see is
test_nvidia.py's business; here the scheduler decides who gets what.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.fake_nvml import h100_node

from .harness import config, kube, nvidia
from .harness.driver import LocalDriver, driver_command
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

DRIVER = "mig.cdi.example.com"
MIGS = [f"gpu-0-mig-{gi}-0" for gi in range(7, 14)]


@pytest.fixture(scope="module")
def mig_driver(cluster: E2ECluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from .harness.local import LocalCluster

    local = cluster.local
    if not isinstance(local, LocalCluster):
        pytest.skip("needs the local provider: a fake GPU node is built on the test host")
    why = nvidia.missing_tools()
    if why:
        if config.e2e_required():
            pytest.fail(f"E2E_REQUIRE is set but {why}", pytrace=False)
        pytest.skip(why)
    node = nvidia.build_node(tmp_path_factory.mktemp("mig"), h100_node(mig_minor=0, count=1))
    command = driver_command()
    assert command is not None
    driver = LocalDriver(
        local,
        command,
        driver_name=DRIVER,
        device_args=[
            "--device-source",
            "nvidia",
            "--nvidia-driver-root",
            str(node.driver_root),
            # The test image is busybox: no ld.so.cache to add the libraries to.
            "--nvidia-ldcache-hook=false",
        ],
        env=node.driver_env(config.REPO_ROOT),
    )
    cluster.log_files[driver.name] = driver.proc.log
    k = cluster.kube
    k.apply(kube.device_class(DRIVER, DRIVER))
    driver.start()
    driver.wait_sockets()
    try:
        yield
    finally:
        driver.stop()
        k.run("delete", "resourceslices", f"--field-selector=spec.driver={DRIVER}", check=False)
        k.run("delete", "deviceclass", DRIVER, "--ignore-not-found", check=False)


def published(k: kube.Kube) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The driver's devices by name and its counter sets, once it published all of both."""

    def probe() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        slices = k.items("resourceslices", None, f"--field-selector=spec.driver={DRIVER}")
        devices = {d["name"]: d for s in slices for d in s["spec"].get("devices") or []}
        counters = [c for s in slices for c in s["spec"].get("sharedCounters") or []]
        return (devices, counters) if len(devices) == 8 and counters else None

    return k.wait(f"{DRIVER} publishing the GPU, its MIG devices and counters", probe, 90)  # type: ignore[no-any-return]


def claim_of_type(name: str, device_type: str) -> kube.Obj:
    claim = kube.claim(name, 1, device_class=DRIVER)
    claim["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": f'device.attributes["{DRIVER}"].type == "{device_type}"'}}
    ]
    return claim


def pod(name: str, claim: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[("gpu", {"resourceClaimName": claim})])


def allocated(k: kube.Kube, ns: str, claim: str) -> str:
    results = k.get("resourceclaim", claim, ns)["status"]["allocation"]["devices"]["results"]
    return str(results[0]["device"])


def unschedulable_because(k: kube.Kube, ns: str, name: str) -> str:
    def probe() -> str | None:
        for cond in k.get("pod", name, ns).get("status", {}).get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return str(cond.get("message", "")) or None
        return None

    return k.wait(f"pod {name} reported unschedulable", probe, 60)  # type: ignore[no-any-return]


def test_the_gpu_and_its_mig_devices_consume_one_counter_set(
    mig_driver: None, k: kube.Kube
) -> None:
    devices, counter_sets = published(k)
    assert sorted(devices) == sorted(["gpu-0", *MIGS])
    assert counter_sets == [
        {
            "name": "gpu-0-counters",
            "counters": {"memory": {"value": "81152Mi"}, "slices": {"value": "7"}},
        }
    ]
    assert devices["gpu-0"]["attributes"]["migEnabled"] == {"bool": True}
    assert devices["gpu-0"]["consumesCounters"] == [
        {"counterSet": "gpu-0-counters", "counters": counter_sets[0]["counters"]}
    ]
    assert devices[MIGS[0]]["consumesCounters"] == [
        {
            "counterSet": "gpu-0-counters",
            "counters": {"memory": {"value": "9984Mi"}, "slices": {"value": "1"}},
        }
    ]


def test_the_scheduler_never_hands_out_the_gpu_with_one_of_its_mig_devices(
    mig_driver: None, k: kube.Kube, ns: str
) -> None:
    published(k)
    k.create(
        [
            claim_of_type("mig-a", "mig"),
            claim_of_type("mig-b", "mig"),
            claim_of_type("whole", "gpu"),
        ],
        ns=ns,
    )
    # Two MIG devices of the one GPU, held at once.
    k.create([pod("a", "mig-a"), pod("b", "mig-b")], ns=ns)
    k.wait_pod_running(ns, "a")
    k.wait_pod_running(ns, "b")
    held = {allocated(k, ns, "mig-a"), allocated(k, ns, "mig-b")}
    assert len(held) == 2 and held <= set(MIGS), held

    # The whole GPU while they hold its MIG devices: the pod waits, and says why.
    k.create(pod("big", "whole"), ns=ns)
    message = unschedulable_because(k, ns, "big")
    assert "cannot allocate all claims" in message, message

    # Once they are gone, the GPU is free again, and then no MIG device of it is.
    k.delete("pod", "a", ns)
    k.delete("pod", "b", ns)
    k.wait_pod_running(ns, "big", timeout=120)
    assert allocated(k, ns, "whole") == "gpu-0"
    k.create(pod("small", "mig-a"), ns=ns)
    message = unschedulable_because(k, ns, "small")
    assert "cannot allocate all claims" in message, message
