"""NVIDIA health from NVML events (through the fake NVML): critical XIDs and lost GPUs make
devices unhealthy; the XIDs of application errors do not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.nvidia.health import APPLICATION_XIDS, XidWatcher
from dra_cdi_driver.devices.nvidia.source import NvidiaSource
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import (
    FakeNvml,
    h100_node,
    nvmlEventTypeGpuUnavailableError,
    nvmlEventTypeXidCriticalError,
)

XID = nvmlEventTypeXidCriticalError


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Inventory, FakeNvml]]:
    data = h100_node(mig_minor=3, count=4)
    data["gpus"][1]["supportedEventTypes"] = XID | nvmlEventTypeGpuUnavailableError
    host = nvidia_host.build(tmp_path, data)
    fake = FakeNvml(data)
    source = NvidiaSource(nvml=fake, driver_root=host.driver_root, sysfs=host.sysfs, proc=host.proc)
    inventory = Inventory(source)
    inventory.refresh()
    stop = threading.Event()
    source.watch_health(stop)
    assert source._xids is not None and source._xids.ready.wait(5)
    yield inventory, fake
    stop.set()


def _unhealthy(inventory: Inventory, timeout: float = 3.0) -> dict[str, str]:
    """Poll as the health loop does until something is unhealthy (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        inventory.check_health()
        bad = {n: h.reason for n, h in inventory.health().items() if not h.healthy}
        if bad or time.monotonic() > deadline:
            return bad
        time.sleep(0.02)


def test_a_critical_xid_makes_its_gpu_unhealthy_for_good(node: tuple[Inventory, FakeNvml]) -> None:
    inventory, fake = node
    fake.post_event(0, XID, 79)  # fallen off the bus
    assert _unhealthy(inventory) == {"gpu-0": "XID 79 (critical error)"}
    time.sleep(0.1)
    assert _unhealthy(inventory, 0) == {"gpu-0": "XID 79 (critical error)"}  # no recovery


@pytest.mark.parametrize("xid", sorted(APPLICATION_XIDS))
def test_application_xids_leave_the_gpu_healthy(node: tuple[Inventory, FakeNvml], xid: int) -> None:
    inventory, fake = node
    fake.post_event(0, XID, xid)
    assert _unhealthy(inventory, timeout=0.3) == {}


def test_the_ignored_list_is_nvidias() -> None:
    assert {13, 31, 43, 45, 68, 109} == APPLICATION_XIDS


def test_an_xid_of_one_gpu_instance_marks_only_its_mig_devices(
    node: tuple[Inventory, FakeNvml],
) -> None:
    inventory, fake = node
    fake.post_event(3, XID, 94, gpu_instance=8)  # contained ECC error in GPU instance 8
    bad = _unhealthy(inventory)
    assert set(bad) == {"gpu-3", "gpu-3-mig-8-0"}
    fake.post_event(3, XID, 48)  # the whole GPU
    time.sleep(0.2)
    bad = _unhealthy(inventory)
    assert {n for n in bad if n.startswith("gpu-3")} == {
        d.name for d in inventory.devices() if d.name.startswith("gpu-3")
    }


def test_a_lost_gpu_and_its_events_are_only_those_it_registered_for(
    node: tuple[Inventory, FakeNvml],
) -> None:
    inventory, fake = node
    fake.post_event(0, nvmlEventTypeGpuUnavailableError)  # not supported there: never comes
    fake.post_event(1, nvmlEventTypeGpuUnavailableError)
    assert _unhealthy(inventory) == {"gpu-1": "GPU unavailable (lost)"}


def test_a_failing_wait_marks_every_gpu_as_nvidias_plugins_do(tmp_path: Path) -> None:
    data = h100_node(mig_minor=None, count=2)
    fake = FakeNvml(data)
    watcher = XidWatcher(fake)
    stop = threading.Event()
    watcher.start(stop)
    assert watcher.ready.wait(5)
    fake.data["errors"] = {"nvmlEventSetWait": 999}
    source = NvidiaSource(nvml=fake)
    deadline = time.monotonic() + 3
    while not watcher._bad and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    assert set(watcher._bad) == {g["uuid"] for g in data["gpus"]}
    assert source.unhealthy([]) == {}  # a source that watches nothing reports nothing
