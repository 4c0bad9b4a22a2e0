"""A GPU in MIG mode as a partitionable device: the counter set NVML's profiles give it, what
the GPU and each MIG device consume, and what is published without shared counters.

`fits` does what the scheduler does with counters: a set of devices can be allocated together
only while what they consume of each counter adds up to no more than the counter set has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes.utils import parse_quantity

from dra_cdi_driver.devices import Device, Inventory, InventoryError
from dra_cdi_driver.devices.base import CounterSet, counter_problems
from dra_cdi_driver.devices.nvidia.mig import mebibytes
from dra_cdi_driver.devices.nvidia.source import NvidiaSource
from dra_cdi_driver.kubeapi.slices import PARTITIONABLE, build_slices, publishable
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import (
    H100_GPU_INSTANCE_PROFILES,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_UNKNOWN,
    NVML_GPU_INSTANCE_PROFILE_1_SLICE,
    NVML_GPU_INSTANCE_PROFILE_2_SLICE,
    NVML_GPU_INSTANCE_PROFILE_4_SLICE,
    FakeNvml,
    h100_node,
    mig_device,
)

MIG_GPU = "gpu-3"
COUNTERS = "gpu-3-counters"
MIGS = [f"gpu-3-mig-{gi}-0" for gi in range(7, 14)]


def discover(tmp_path: Path, data: dict[str, Any] | None = None) -> tuple[NvidiaSource, FakeNvml]:
    data = data or h100_node()
    host = nvidia_host.build(tmp_path, data)
    fake = FakeNvml(data)
    source = NvidiaSource(nvml=fake, driver_root=host.driver_root, sysfs=host.sysfs, proc=host.proc)
    return source, fake


def by_name(source: NvidiaSource) -> dict[str, Device]:
    return {d.name: d for d in source.discover()}


def fits(counter_set: CounterSet, *devices: Device) -> bool:
    for counter, total in counter_set.counters.items():
        used = sum(
            parse_quantity(use.counters.get(counter, "0"))
            for device in devices
            for use in device.consumes
            if use.counter_set == counter_set.name
        )
        if used > parse_quantity(total):
            return False
    return True


def test_a_mig_gpu_has_a_counter_set_sized_by_its_full_profile(tmp_path: Path) -> None:
    source, _ = discover(tmp_path)
    devices = by_name(source)
    # The H100's largest GPU-instance profile, 7g.80gb: 7 slices, 81152 MiB.
    assert source.counter_sets() == [CounterSet(COUNTERS, {"slices": "7", "memory": "81152Mi"})]
    gpu = devices[MIG_GPU]
    assert [(u.counter_set, dict(u.counters)) for u in gpu.consumes] == [
        (COUNTERS, {"slices": "7", "memory": "81152Mi"})
    ]
    assert gpu.needs_counters
    assert gpu.attributes["type"] == "gpu" and gpu.attributes["migEnabled"] is True
    for name in MIGS:
        mig = devices[name]
        assert [(u.counter_set, dict(u.counters)) for u in mig.consumes] == [
            (COUNTERS, {"slices": "1", "memory": "9984Mi"})
        ]
        assert not mig.needs_counters
    assert counter_problems(list(devices.values()), source.counter_sets()) == []


def test_gpus_not_in_mig_mode_stay_whole_devices_without_counters(tmp_path: Path) -> None:
    devices = by_name(discover(tmp_path)[0])
    for name in ("gpu-0", "gpu-7"):
        assert devices[name].consumes == ()
        assert not devices[name].needs_counters
    source, _ = discover(tmp_path / "none", h100_node(mig_minor=None))
    assert source.discover() and source.counter_sets() == []


def test_the_gpu_and_any_of_its_mig_devices_never_fit_together(tmp_path: Path) -> None:
    source, _ = discover(tmp_path)
    devices = by_name(source)
    [counters] = source.counter_sets()
    assert fits(counters, devices[MIG_GPU])
    assert fits(counters, *(devices[n] for n in MIGS))  # all seven MIG devices at once
    for name in MIGS:
        assert not fits(counters, devices[MIG_GPU], devices[name]), name


def test_without_shared_counters_the_mig_devices_are_published_but_not_their_gpu(
    tmp_path: Path,
) -> None:
    source, _ = discover(tmp_path)
    devices, counter_sets = publishable(source.discover(), source.counter_sets(), [PARTITIONABLE])
    names = sorted(d.name for d in devices)
    assert names == sorted([f"gpu-{i}" for i in range(8) if i != 3] + MIGS)
    assert counter_sets == [] and all(d.consumes == () for d in devices)


def test_the_counter_set_gets_a_slice_of_its_own(tmp_path: Path) -> None:
    source, _ = discover(tmp_path)
    inventory = Inventory(source)
    assert inventory.refresh()  # the API's rules on counters hold: no InventoryError
    slices = build_slices(
        inventory.devices(),
        counter_sets=inventory.counter_sets(),
        driver="gpu.cdi.example.com",
        node="gpu-node",
        generation=1,
        api_version="v1",
        node_uid=None,
    )
    assert [len(s["spec"].get("devices", [])) for s in slices] == [15, 0]
    assert slices[1]["spec"]["sharedCounters"] == [
        {"name": COUNTERS, "counters": {"memory": {"value": "81152Mi"}, "slices": {"value": "7"}}}
    ]


def two_compute_instances() -> dict[str, Any]:
    """GPU 3 split into a 3g.40gb GPU instance (1) with two compute instances of 1 slice each,
    and a 4g.40gb GPU instance (2) with one."""
    data = h100_node()
    big = {"gpu_instance_slices": 3, "compute_instance_slices": 1, "memory_mib": 40448}
    data["gpus"][3]["migDevices"] = [
        mig_device(3, 0, 1, 0, "1c.3g.40gb", **big),
        mig_device(3, 1, 1, 1, "1c.3g.40gb", **big),
        mig_device(3, 2, 2, 0, "4g.40gb", gpu_instance_slices=4, memory_mib=40448),
    ]
    return data


def test_compute_instances_of_one_gpu_instance_are_handed_out_one_at_a_time(
    tmp_path: Path,
) -> None:
    source, _ = discover(tmp_path, two_compute_instances())
    devices = by_name(source)
    [counters] = source.counter_sets()
    assert counters.counters == {"slices": "7", "memory": "81152Mi", "gpu-instance-1": "1"}
    ci0, ci1, other = devices["gpu-3-mig-1-0"], devices["gpu-3-mig-1-1"], devices["gpu-3-mig-2-0"]
    assert dict(ci0.consumes[0].counters) == {
        "slices": "3",
        "memory": "40448Mi",
        "gpu-instance-1": "1",
    }
    # They share their GPU instance's memory: never both at once, each with the other one.
    assert not fits(counters, ci0, ci1)
    assert fits(counters, ci0, other) and fits(counters, ci1, other)
    assert not fits(counters, devices[MIG_GPU], ci0)
    assert fits(counters, devices[MIG_GPU])
    # Without shared counters nothing would keep them apart: they are not published.
    assert ci0.needs_counters and ci1.needs_counters and not other.needs_counters
    kept, _ = publishable(list(devices.values()), [counters], [PARTITIONABLE])
    assert [d.name for d in kept if d.name.startswith("gpu-3")] == ["gpu-3-mig-2-0"]


def test_the_largest_profile_the_gpu_supports_is_the_whole_gpu(tmp_path: Path) -> None:
    # An A30: profiles of 1, 2 and 4 slices; NVML refuses the 8- and 7-slice ones.
    data = h100_node(mig_minor=0, count=1)
    gpu = data["gpus"][0]
    gpu["gpuInstanceProfiles"] = {
        str(p): {**H100_GPU_INSTANCE_PROFILES[str(p)], "memorySizeMB": mib}
        for p, mib in (
            (NVML_GPU_INSTANCE_PROFILE_1_SLICE, 5836),
            (NVML_GPU_INSTANCE_PROFILE_2_SLICE, 11904),
            (NVML_GPU_INSTANCE_PROFILE_4_SLICE, 24064),
        )
    }
    gpu["migDevices"] = [mig_device(0, 0, 3, memory_mib=5836)]
    source, _ = discover(tmp_path, data)
    source.discover()
    assert source.counter_sets() == [
        CounterSet("gpu-0-counters", {"slices": "4", "memory": "24064Mi"})
    ]


def test_without_profiles_the_counter_set_holds_what_the_mig_devices_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = h100_node()
    data["gpus"][3]["gpuInstanceProfiles"] = {}  # NVML: NOT_SUPPORTED for every profile
    source, _ = discover(tmp_path, data)
    devices = by_name(source)
    [counters] = source.counter_sets()
    assert counters.counters == {"slices": "7", "memory": f"{7 * 9984}Mi"}
    assert fits(counters, *(devices[n] for n in MIGS))
    assert not fits(counters, devices[MIG_GPU], devices[MIGS[0]])
    [warning] = [r for r in caplog.records if "no full-GPU MIG profile" in r.message]
    assert warning.fields["devices"] == [MIG_GPU]  # type: ignore[attr-defined]


def test_a_profile_smaller_than_the_layout_nvml_reports_does_not_block_it(
    tmp_path: Path,
) -> None:
    data = h100_node()
    full = H100_GPU_INSTANCE_PROFILES[str(4)]
    data["gpus"][3]["gpuInstanceProfiles"] = {"4": {**full, "memorySizeMB": 60000}}
    source, _ = discover(tmp_path, data)
    devices = by_name(source)
    [counters] = source.counter_sets()
    assert counters.counters["memory"] == f"{7 * 9984}Mi"  # the seven devices exist together
    assert fits(counters, *(devices[n] for n in MIGS))


def test_a_driver_without_the_version_2_call_is_asked_through_version_1(tmp_path: Path) -> None:
    data = h100_node()
    data["errors"] = {"nvmlDeviceGetGpuInstanceProfileInfoV": NVML_ERROR_FUNCTION_NOT_FOUND}
    source, fake = discover(tmp_path, data)
    source.discover()
    assert source.counter_sets()[0].counters == {"slices": "7", "memory": "81152Mi"}
    assert "nvmlDeviceGetGpuInstanceProfileInfo" in fake.calls


def test_an_nvml_failure_reading_the_profiles_says_which_gpu(tmp_path: Path) -> None:
    data = h100_node()
    data["gpus"][3]["errors"] = {"nvmlDeviceGetGpuInstanceProfileInfoV": NVML_ERROR_UNKNOWN}
    source, _ = discover(tmp_path, data)
    with pytest.raises(InventoryError, match="reading GPU 3 failed: Unknown Error"):
        source.discover()


def test_a_new_mig_layout_changes_the_counter_set(tmp_path: Path) -> None:
    data = h100_node()
    source, _ = discover(tmp_path, data)
    inventory = Inventory(source)
    inventory.refresh()
    data["gpus"][3]["migDevices"] = two_compute_instances()["gpus"][3]["migDevices"]
    assert inventory.refresh()
    [counters] = inventory.counter_sets()
    assert "gpu-instance-1" in counters.counters
    assert inventory.get("gpu-3-mig-1-1") is not None and inventory.get(MIGS[0]) is None


@pytest.mark.parametrize(
    ("mib", "quantity"),
    [(9984, "9984Mi"), (81152, "81152Mi"), (20480, "20Gi"), (1024 * 1024, "1Ti"), (0, "0")],
)
def test_memory_is_written_as_the_api_server_stores_it(mib: int, quantity: str) -> None:
    assert mebibytes(mib) == quantity
    assert parse_quantity(quantity) == mib * 1024 * 1024
