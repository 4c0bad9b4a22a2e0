"""Shared and partitioned GPUs (DRA 1.36): the devices, their slices, and the fallback where
the API server does not serve the fields."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dra_cdi_driver.devices import Device
from dra_cdi_driver.devices.base import CounterSet, CounterUse, counter_problems
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.slices import (
    CONSUMABLE_CAPACITY,
    PARTITIONABLE,
    build_slices,
    dropped_by_server,
    publishable,
    without,
)

NODE = "node-1"
DRIVER = "gpu.cdi.example.com"
NOWHERE = Path("/nonexistent")


def source(count: int, mode: str) -> MockSource:
    return MockSource(NODE, count, dev_dir=NOWHERE, lib_dir=NOWHERE, bin_dir=NOWHERE, mode=mode)


def slices_of(src: MockSource, version: str = "v1") -> list[dict[str, object]]:
    return build_slices(
        src.discover(),
        counter_sets=src.counter_sets(),
        driver=DRIVER,
        node=NODE,
        generation=3,
        api_version=version,
        node_uid=None,
    )


def test_a_partitioned_gpu_is_a_counter_set_its_whole_and_its_parts() -> None:
    src = source(1, "partitioned")
    devices = {d.name: d for d in src.discover()}
    assert sorted(devices) == [
        "gpu-0",
        "gpu-0-half-0",
        "gpu-0-half-1",
        "gpu-0-quarter-0",
        "gpu-0-quarter-1",
        "gpu-0-quarter-2",
        "gpu-0-quarter-3",
    ]
    [counters] = src.counter_sets()
    assert counters == CounterSet("gpu-0-counters", {"memory": "80Gi", "slices": "4"})
    consumed = {n: d.consumes[0].counters for n, d in devices.items()}
    assert consumed["gpu-0"] == {"memory": "80Gi", "slices": "4"}
    assert consumed["gpu-0-half-1"] == {"memory": "40Gi", "slices": "2"}
    assert consumed["gpu-0-quarter-3"] == {"memory": "20Gi", "slices": "1"}
    assert [n for n, d in devices.items() if not d.needs_counters] == ["gpu-0"]
    half = devices["gpu-0-half-1"]
    assert half.attributes["partition"] == "half"
    assert half.attributes["parentUUID"] == devices["gpu-0"].attributes["uuid"]
    assert half.attributes["uuid"] != devices["gpu-0"].attributes["uuid"]
    assert "GPU_DEVICE_0_HALF_1=gpu-0-half-1" in half.edits.env
    assert counter_problems(list(devices.values()), src.counter_sets()) == []


def test_counter_sets_go_in_their_own_slice_and_device_slices_hold_at_most_64() -> None:
    slices = slices_of(source(10, "partitioned"))  # 70 devices, 10 counter sets
    shapes = [
        (len(s["spec"].get("devices", [])), len(s["spec"].get("sharedCounters", [])))  # type: ignore[attr-defined]
        for s in slices
    ]
    assert shapes == [(64, 0), (6, 0), (0, 8), (0, 2)]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {4}  # type: ignore[index]
    assert {s["spec"]["pool"]["generation"] for s in slices} == {3}  # type: ignore[index]
    names = [s["metadata"]["name"] for s in slices]  # type: ignore[index]
    assert names == [f"{NODE}-gpu-cdi-example-com-{names[0].split('-')[-2]}-{i}" for i in range(4)]
    assert names == [s["metadata"]["name"] for s in slices_of(source(10, "partitioned"))]  # type: ignore[index]
    device = slices[0]["spec"]["devices"][1]  # type: ignore[index]
    assert device["name"] == "gpu-0-half-0"
    assert device["consumesCounters"] == [
        {
            "counterSet": "gpu-0-counters",
            "counters": {"memory": {"value": "40Gi"}, "slices": {"value": "2"}},
        }
    ]


def test_a_shared_gpu_is_shareable_with_a_policy_per_capacity() -> None:
    [device] = slices_of(source(1, "shared"))[0]["spec"]["devices"]  # type: ignore[index]
    assert device["allowMultipleAllocations"] is True
    assert device["capacity"] == {
        "compute": {
            "value": "100",
            "requestPolicy": {"default": "10", "validRange": {"min": "1", "step": "1"}},
        },
        "memory": {
            "value": "80Gi",
            "requestPolicy": {"default": "10Gi", "validRange": {"min": "1Gi", "step": "1Gi"}},
        },
    }


def test_a_shares_variables_say_what_it_was_given() -> None:
    src = source(2, "shared")
    gpu = src.discover()[1]
    share = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    edits = src.allocation_edits(gpu, {"memory": "24Gi", "compute": "30"}, share)
    assert set(edits.env) == {
        f"GPU_DEVICE_1_SHARE_ID={share}",
        "GPU_DEVICE_1_MEMORY_LIMIT=24Gi",
        "GPU_DEVICE_1_COMPUTE_LIMIT=30",
    }
    assert not src.allocation_edits(gpu, {}, None)


def test_without_shared_counters_only_whole_devices_that_overlap_nothing_are_published() -> None:
    src = source(2, "partitioned")
    devices, counters = publishable(src.discover(), src.counter_sets(), [PARTITIONABLE])
    assert [(d.name, d.consumes) for d in devices] == [("gpu-0", ()), ("gpu-1", ())]
    assert counters == []
    plain = Device("x", {}, {}, copy.deepcopy(src.discover()[0].edits))
    mig = Device("mig", {}, {}, plain.edits, consumes=(CounterUse("c", {"m": "1"}),))
    kept, _ = publishable([plain, mig], [CounterSet("c", {"m": "1"})], [PARTITIONABLE])
    assert [(d.name, d.consumes) for d in kept] == [("x", ()), ("mig", ())]


def test_without_consumable_capacity_a_shared_gpu_is_exclusive() -> None:
    src = source(1, "shared")
    [device], _ = publishable(src.discover(), [], [CONSUMABLE_CAPACITY])
    assert not device.shareable and device.request_policies == {}


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
def test_older_api_versions_get_whole_devices(version: str) -> None:
    slices = slices_of(source(2, "shared"), version)
    assert "allowMultipleAllocations" not in str(slices)
    devices = slices_of(source(2, "partitioned"), version)[0]["spec"]["devices"]  # type: ignore[index]
    assert [d["name"] for d in devices] == ["gpu-0", "gpu-1"]


def _by_name(slices: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {s["metadata"]["name"]: s for s in slices}  # type: ignore[index]


@pytest.mark.parametrize(
    ("mode", "feature"), [("partitioned", PARTITIONABLE), ("shared", CONSUMABLE_CAPACITY)]
)
def test_the_features_whose_fields_the_server_dropped_are_found(mode: str, feature: str) -> None:
    desired = _by_name(slices_of(source(2, mode)))
    assert dropped_by_server(desired, copy.deepcopy(desired)) == set()
    stored = {name: without(s, [feature]) for name, s in desired.items()}
    assert stored != desired
    assert dropped_by_server(desired, stored) == {feature}


def test_slices_an_older_driver_wrote_are_not_taken_for_dropped_fields() -> None:
    # Whole GPUs, as a driver in the default mode published them: not ours less some fields.
    for mode in ("partitioned", "shared"):
        desired = _by_name(slices_of(source(2, mode)))
        older = _by_name(slices_of(source(2, "whole")))
        assert dropped_by_server(desired, older) == set()
