"""Rediscovery (`--rediscover-interval`): GPUs that disappear leave the pool; failures are
logged and never crash or empty it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dra_cdi_driver.devices import Device, Inventory
from dra_cdi_driver.devices.inventory import refresh_loop
from dra_cdi_driver.devices.nvidia.source import NvidiaSource
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    FakeNvml,
    h100_node,
)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_rediscovery_follows_the_gpus_and_survives_nvml_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stop: threading.Event
) -> None:
    caplog.set_level(logging.INFO)
    data = h100_node()
    host = nvidia_host.build(tmp_path, data)
    fake = FakeNvml(data)
    inventory = Inventory(NvidiaSource(nvml=fake, driver_root=host.driver_root, proc=host.proc))
    inventory.refresh()
    published: list[list[str]] = []
    inventory.subscribe(lambda devices: published.append(sorted(d.name for d in devices)))
    thread = threading.Thread(target=refresh_loop, args=(inventory, 0.01, stop), daemon=True)
    thread.start()

    data["gpus"][6]["errors"] = {"nvmlDeviceGetHandleByIndex": NVML_ERROR_GPU_IS_LOST}
    wait_for(lambda: bool(published) and "gpu-6" not in published[-1])
    assert inventory.get("gpu-6") is None

    data["errors"] = {"nvmlInit": NVML_ERROR_DRIVER_NOT_LOADED}  # e.g. a driver reload
    wait_for(lambda: fake.calls.count("nvmlInit") >= 10)
    failures = [r for r in caplog.records if "rediscovery failed" in r.message]
    assert len(failures) == 1, "one line per distinct error, not one per attempt"
    assert "kernel driver is not loaded" in failures[0].fields["error"]  # type: ignore[attr-defined]
    assert len(inventory.devices()) == 14  # the last known devices stay published
    assert thread.is_alive()

    data["errors"] = {}
    data["gpus"][6]["errors"] = {}
    wait_for(lambda: any("works again" in r.message for r in caplog.records))
    assert inventory.get("gpu-6") is not None
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_interval_zero_means_no_rediscovery(stop: threading.Event) -> None:
    class Never(NvidiaSource):
        def discover(self) -> list[Device]:
            raise AssertionError("must not be called")

    refresh_loop(Inventory(Never(nvml=FakeNvml(h100_node()))), 0, stop)  # returns at once
