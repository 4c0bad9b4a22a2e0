"""NVIDIA GPUs through a fake NVML: which devices the scheduler sees, and with what."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dra_cdi_driver.devices import Inventory, InventoryError
from dra_cdi_driver.devices.base import Version
from dra_cdi_driver.devices.nvidia.nvml import _profile
from dra_cdi_driver.devices.nvidia.pci import canonical_bus_id
from dra_cdi_driver.devices.nvidia.source import NvidiaSource, cuda_version, semver
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import (
    H100_MEMORY,
    MIG_1G_10GB_MEMORY,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeNvml,
    gpu_uuid,
    h100_node,
    mig_uuid,
)


def make_source(
    tmp_path: Path, data: dict[str, Any] | None = None, **kw: Any
) -> tuple[NvidiaSource, FakeNvml, nvidia_host.FakeHost]:
    data = data or h100_node()
    host = nvidia_host.build(tmp_path, data)
    fake = FakeNvml(data)
    source = NvidiaSource(
        nvml=fake, driver_root=host.driver_root, sysfs=host.sysfs, proc=host.proc, **kw
    )
    return source, fake, host


def test_eight_h100s_and_the_mig_devices_of_the_one_in_mig_mode(tmp_path: Path) -> None:
    source, fake, _ = make_source(tmp_path)
    devices = source.discover()
    names = [d.name for d in devices]
    assert [n for n in names if "mig" not in n] == [f"gpu-{i}" for i in range(8)]
    assert sorted(n for n in names if "mig" in n) == sorted(
        f"gpu-3-mig-{gi}-0" for gi in range(7, 14)
    )
    assert len(devices) == 15
    assert [p for d in devices for p in d.problems()] == []
    assert fake.initialized == 0  # every nvmlInit has its nvmlShutdown


def test_a_gpu_has_the_attributes_users_select_on(tmp_path: Path) -> None:
    source, _, host = make_source(tmp_path)
    gpu = {d.name: d for d in source.discover()}["gpu-1"]
    assert dict(gpu.attributes) == {
        "type": "gpu",
        "uuid": gpu_uuid(1),
        "index": 1,
        "minor": 1,
        "migEnabled": False,
        "productName": "NVIDIA H100 80GB HBM3",
        "brand": "Nvidia",
        "architecture": "Hopper",
        "cudaComputeCapability": Version("9.0.0"),
        "driverVersion": Version("550.54.15"),
        "cudaDriverVersion": Version("12.4.0"),
        "pcieBusID": "0000:2a:00.0",
        "resource.kubernetes.io/pcieRoot": host.pcie_root(1),
    }
    assert gpu.capacity == {"memory": str(H100_MEMORY)}


def test_gpus_on_one_root_complex_share_pcie_root(tmp_path: Path) -> None:
    source, _, _ = make_source(tmp_path)
    roots = {d.name: d.attributes["resource.kubernetes.io/pcieRoot"] for d in source.discover()}
    assert roots["gpu-0"] == roots["gpu-1"] != roots["gpu-2"]


def test_mig_enabled_gpu_and_its_mig_devices(tmp_path: Path) -> None:
    source, _, host = make_source(tmp_path)
    devices = {d.name: d for d in source.discover()}
    assert devices["gpu-3"].attributes["migEnabled"] is True
    assert all(devices[f"gpu-{i}"].attributes["migEnabled"] is False for i in (0, 7))
    mig = devices["gpu-3-mig-9-0"]
    assert mig.attributes["type"] == "mig"
    assert mig.attributes["uuid"] == mig_uuid(3, 2)
    assert mig.attributes["profile"] == "1g.10gb"
    assert mig.attributes["parentUUID"] == gpu_uuid(3)
    assert mig.attributes["parentMinor"] == 3
    assert mig.attributes["gpuInstance"] == 9
    assert mig.attributes["computeInstance"] == 0
    assert mig.attributes["productName"] == "NVIDIA H100 80GB HBM3"
    assert mig.attributes["resource.kubernetes.io/pcieRoot"] == host.pcie_root(3)
    assert mig.capacity == {"memory": str(MIG_1G_10GB_MEMORY), "multiprocessors": "16"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550.54.15", "550.54.15"),
        ("535.104.05", "535.104.5"),  # semver forbids leading zeros
        ("12.4", "12.4.0"),
        ("470", "470.0.0"),
        ("1.2.3.4", "1.2.3+4"),
    ],
)
def test_driver_versions_become_semver(text: str, expected: str) -> None:
    assert semver(text) == Version(expected)


def test_cuda_versions_become_semver() -> None:
    assert cuda_version(12040) == Version("12.4.0")
    assert cuda_version(11080) == Version("11.8.0")
    assert semver("unknown") is None


def test_bus_ids_are_named_as_linux_names_them() -> None:
    assert canonical_bus_id("00000000:AB:00.0") == "0000:ab:00.0"
    assert canonical_bus_id("0001:18:00.0") == "0001:18:00.0"


def test_a_profile_is_rebuilt_when_the_name_lacks_it() -> None:
    attributes = SimpleNamespace(
        gpuInstanceSliceCount=3, computeInstanceSliceCount=2, memorySizeMB=40192
    )
    assert _profile("NVIDIA A100-SXM4-80GB MIG 3g.40gb", attributes) == "3g.40gb"
    assert _profile("weird", attributes) == "2c.3g.40gb"


def test_what_older_gpus_cannot_tell_is_left_out(tmp_path: Path) -> None:
    data = h100_node(mig_minor=None)
    data["gpus"][0]["migMode"] = None  # no MIG support at all
    data["gpus"][0]["errors"] = {"nvmlDeviceGetArchitecture": NVML_ERROR_NOT_SUPPORTED}
    source, _, _ = make_source(tmp_path, data)
    gpu = source.discover()[0]
    assert "architecture" not in gpu.attributes
    assert gpu.attributes["migEnabled"] is False
    assert not gpu.problems()


def test_without_sysfs_there_is_no_pcie_root(tmp_path: Path) -> None:
    source, _, _ = make_source(tmp_path)
    source.sysfs = tmp_path / "nowhere"
    assert all("resource.kubernetes.io/pcieRoot" not in d.attributes for d in source.discover())


def test_long_names_are_cut_to_the_api_limit(tmp_path: Path) -> None:
    data = h100_node(mig_minor=None, count=1)
    data["gpus"][0]["name"] = "N" * 90
    source, _, _ = make_source(tmp_path, data)
    [gpu] = source.discover()
    assert gpu.attributes["productName"] == "N" * 64
    assert not gpu.problems()


def test_a_lost_gpu_leaves_the_pool_and_the_change_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = h100_node()
    source, fake, _ = make_source(tmp_path, data)
    inventory = Inventory(source)
    assert inventory.refresh()
    assert inventory.get("gpu-5") is not None
    seen: list[int] = []
    inventory.subscribe(lambda devices: seen.append(len(devices)))

    data["gpus"][5]["errors"] = {"nvmlDeviceGetHandleByIndex": NVML_ERROR_GPU_IS_LOST}
    caplog.set_level(logging.INFO)
    assert inventory.refresh()
    assert inventory.get("gpu-5") is None
    assert seen == [14]
    assert any("GPU is unusable" in r.message for r in caplog.records)
    changed = [r for r in caplog.records if r.message == "device inventory changed"]
    assert changed[-1].fields["removed"] == ["gpu-5"]  # type: ignore[attr-defined]
    assert not inventory.refresh()  # nothing changed since: no event
    assert fake.initialized == 0


def test_no_gpu_is_an_error_unless_allowed(tmp_path: Path) -> None:
    data = h100_node(mig_minor=None, count=0)
    source, _, _ = make_source(tmp_path, data)
    with pytest.raises(InventoryError, match=r"no usable GPU.*--nvidia-allow-no-gpus"):
        source.discover()
    allowed, _, _ = make_source(tmp_path / "b", data, allow_no_gpus=True)
    assert allowed.discover() == []


def test_a_mig_gpu_whose_memory_nvml_withholds_is_still_listed(tmp_path: Path) -> None:
    data = h100_node()
    data["gpus"][3]["errors"] = {"nvmlDeviceGetMemoryInfo": NVML_ERROR_NO_PERMISSION}
    source, _, _ = make_source(tmp_path, data)
    devices = {d.name: d for d in source.discover()}
    assert devices["gpu-3"].capacity == {}
    assert devices["gpu-3-mig-7-0"].capacity["memory"] == str(MIG_1G_10GB_MEMORY)
    data["gpus"][2]["errors"] = {"nvmlDeviceGetMemoryInfo": NVML_ERROR_NO_PERMISSION}
    with pytest.raises(InventoryError, match="reading GPU 2 failed: Insufficient Permissions"):
        source.discover()  # not in MIG mode: a real failure
