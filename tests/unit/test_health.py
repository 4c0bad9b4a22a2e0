"""Device health: the mock switch, the inventory's record of changes, the taints it puts in
the ResourceSlices, the kubelet's health stream and the metrics."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.base import Taint
from dra_cdi_driver.devices.health import DeviceHealth, clean_reason
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.publisher import Publisher
from dra_cdi_driver.kubeapi.slices import (
    DEVICE_TAINTS,
    build_slices,
    chunk,
    dropped_by_server,
    publishable,
    taint_value,
    without,
)
from dra_cdi_driver.kubelet.device_health import DeviceHealthService
from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2 as pb
from dra_cdi_driver.metrics import Metrics
from tests.unit.test_publisher import DRIVER, NODE, FakeSliceApi

NOWHERE = Path("/nonexistent")


def _inventory(tmp_path: Path, count: int = 2, mode: str = "whole") -> Inventory:
    source = MockSource(
        NODE, count, dev_dir=NOWHERE, lib_dir=NOWHERE, bin_dir=NOWHERE, mode=mode,
        health_dir=tmp_path / "health",
    )  # fmt: skip
    source.install_host_files()
    inventory = Inventory(source)
    inventory.refresh()
    return inventory


def _flip(tmp_path: Path, device: str, reason: str | None) -> None:
    path = tmp_path / "health" / device
    if reason is None:
        path.unlink()
    else:
        path.write_text(reason)


# --- the mock switch and the inventory ---------------------------------------------------


def test_a_file_makes_its_device_unhealthy_with_its_reason_and_removing_it_heals(
    tmp_path: Path,
) -> None:
    inventory = _inventory(tmp_path)
    changes: list[dict[str, DeviceHealth]] = []
    inventory.subscribe_health(changes.append)
    assert inventory.check_health() == {}
    assert all(h.healthy for h in inventory.health().values())

    _flip(tmp_path, "gpu-1", "ECC errors\nsecond line ignored")
    changed = inventory.check_health()
    assert list(changed) == ["gpu-1"]
    assert changed["gpu-1"].healthy is False and changed["gpu-1"].reason == "ECC errors"
    assert inventory.check_health() == {}  # no change, no news
    assert len(changes) == 1

    _flip(tmp_path, "gpu-1", None)
    healed = inventory.check_health()["gpu-1"]
    assert healed.healthy and healed.reason == "" and healed.since >= changed["gpu-1"].since
    assert len(changes) == 2


def test_an_empty_file_still_means_unhealthy_and_odd_files_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inventory = _inventory(tmp_path, count=3)
    _flip(tmp_path, "gpu-0", "")
    (tmp_path / "health" / "gpu-1").symlink_to("/etc/passwd")  # never followed
    (tmp_path / "health" / "gpu-2").write_bytes(b"x" * 100_000)  # too large to be a reason
    (tmp_path / "health" / "gpu-99").write_text("no such device")
    health = {n: h for n, h in inventory.health().items()}
    inventory.check_health()
    health = inventory.health()
    assert health["gpu-0"].reason == "unhealthy"
    assert health["gpu-1"].reason == health["gpu-2"].reason
    assert "unreadable" in health["gpu-1"].reason
    assert "gpu-99" not in health
    inventory.check_health()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("names no device" in w for w in warnings) == 1  # once, not every second


def test_a_gpu_file_covers_its_partitions(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, count=2, mode="partitioned")
    _flip(tmp_path, "gpu-0", "fell off the bus")
    _flip(tmp_path, "gpu-1-quarter-3", "bad quarter")
    inventory.check_health()
    bad = {n: h.reason for n, h in inventory.health().items() if not h.healthy}
    assert bad == {
        "gpu-0": "fell off the bus",
        "gpu-0-half-0": "fell off the bus",
        "gpu-0-half-1": "fell off the bus",
        **{f"gpu-0-quarter-{i}": "fell off the bus" for i in range(4)},
        "gpu-1-quarter-3": "bad quarter",
    }


def test_reasons_are_one_short_printable_line() -> None:
    assert clean_reason("  a\x1b[31mred\x07 line \n next") == "a [31mred  line"
    assert len(clean_reason("x" * 10_000)) == 256
    assert clean_reason(" \n ") == "unhealthy"


# --- taints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "value"),
    [
        ("XID 79 (critical error)", "XID-79-critical-error"),
        ("ECC errors", "ECC-errors"),
        ("--", "unhealthy"),
        ("é" * 80, "unhealthy"),
        ("a" * 80, "a" * 63),
        ("ok_" + "b" * 59 + " tail", "ok_" + "b" * 59),
    ],
)
def test_a_taint_value_is_a_valid_label_value(reason: str, value: str) -> None:
    assert taint_value(reason) == value


def test_a_tainted_device_is_published_with_its_taint_and_at_most_64_per_slice(
    tmp_path: Path,
) -> None:
    inventory = _inventory(tmp_path, count=70)
    devices = inventory.devices()
    assert [len(c) for c in chunk(devices)] == [70]
    taint = Taint(f"{DRIVER}/unhealthy", "ECC", "NoSchedule", 1_700_000_000.7)
    from dataclasses import replace

    tainted = [replace(d, taints=(taint,)) if d.name == "gpu-3" else d for d in devices]
    assert [len(c) for c in chunk(tainted)] == [64, 6]
    slices = build_slices(
        tainted, driver=DRIVER, node=NODE, generation=1, api_version="v1", node_uid="u"
    )
    entry = next(d for s in slices for d in s["spec"]["devices"] if d["name"] == "gpu-3")
    assert entry["taints"] == [
        {
            "key": f"{DRIVER}/unhealthy",
            "value": "ECC",
            "effect": "NoSchedule",
            "timeAdded": "2023-11-14T22:13:20Z",
        }
    ]
    # Older versions and servers: no taints; an unhealthy device is left out rather than offered.
    kept, _ = publishable(tainted, [], [DEVICE_TAINTS])
    assert "gpu-3" not in {d.name for d in kept} and len(kept) == 69
    slices = build_slices(
        tainted, driver=DRIVER, node=NODE, generation=1, api_version="v1beta1", node_uid="u"
    )
    assert "gpu-3" not in {d["name"] for s in slices for d in s["spec"]["devices"]}


def test_a_server_that_drops_taints_is_noticed() -> None:
    source = MockSource(NODE, 2, dev_dir=NOWHERE, lib_dir=NOWHERE, bin_dir=NOWHERE)
    from dataclasses import replace

    taint = Taint(f"{DRIVER}/unhealthy", "x", "NoSchedule", 0)
    devices = [replace(d, taints=(taint,)) for d in source.discover()]
    desired = {
        s["metadata"]["name"]: s
        for s in build_slices(
            devices, driver=DRIVER, node=NODE, generation=1, api_version="v1", node_uid="u"
        )
    }
    stored = {n: without(s, [DEVICE_TAINTS]) for n, s in desired.items()}
    assert dropped_by_server(desired, stored) == {DEVICE_TAINTS}


def _published(api: FakeSliceApi) -> dict[str, Any]:
    return {d["name"]: d for s in api.ours().values() for d in s["spec"].get("devices", [])}


@pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute"])
def test_the_publisher_taints_an_unhealthy_device_and_untaints_it_when_it_heals(
    tmp_path: Path, effect: str
) -> None:
    api = FakeSliceApi()
    inventory = _inventory(tmp_path)
    publisher = Publisher(api, inventory, taint_effect=effect)
    publisher.sync_once()
    assert not any("taints" in d for d in _published(api).values())

    _flip(tmp_path, "gpu-0", "XID 79")
    inventory.check_health()
    result = publisher.sync_once()
    assert result.writes == 1
    [taint] = _published(api)["gpu-0"]["taints"]
    assert taint["key"] == f"{DRIVER}/unhealthy" and taint["value"] == "XID-79"
    assert taint["effect"] == effect and taint["timeAdded"].endswith("Z")
    assert "taints" not in _published(api)["gpu-1"]
    assert publisher.sync_once().writes == 0  # steady: the round trip compares equal

    _flip(tmp_path, "gpu-0", None)
    inventory.check_health()
    publisher.sync_once()
    assert "taints" not in _published(api)["gpu-0"]


def test_a_server_without_taints_gets_the_device_left_out_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeSliceApi()
    api.drops = {DEVICE_TAINTS}
    inventory = _inventory(tmp_path)
    _flip(tmp_path, "gpu-0", "broken")
    inventory.check_health()
    publisher = Publisher(api, inventory)
    for _ in range(3):
        publisher.sync_once()
    assert publisher.sync_once().writes == 0
    assert publisher.features_off == {DEVICE_TAINTS}
    assert set(_published(api)) == {"gpu-1"}
    lines = [r.getMessage() for r in caplog.records if "drops the fields" in r.getMessage()]
    assert len(lines) == 1 and "leaving unhealthy devices out" in lines[0]


def test_a_bad_taint_effect_is_refused() -> None:
    with pytest.raises(ValueError, match="NoSchedule"):
        Publisher(FakeSliceApi(), Inventory(MockSource(NODE, 1)), taint_effect="Sometimes")


# --- the kubelet's health stream --------------------------------------------------------


class _Context:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


def test_the_health_stream_sends_each_change_at_once_with_its_reason(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    service = DeviceHealthService(inventory, NODE)
    context = _Context()
    stream = service.NodeWatchResources(pb.NodeWatchResourcesRequest(), context)
    first = next(stream)
    assert {(d.device.device_name, d.health) for d in first.devices} == {
        ("gpu-0", pb.HEALTHY),
        ("gpu-1", pb.HEALTHY),
    }
    got: list[pb.NodeWatchResourcesResponse] = []
    reader = threading.Thread(target=lambda: got.append(next(stream)))
    reader.start()
    _flip(tmp_path, "gpu-1", "overheated")
    inventory.check_health()
    reader.join(timeout=0.9)  # well before the 1 s poll: woken by the change
    assert got, "no message after a health change"
    by_name = {d.device.device_name: d for d in got[0].devices}
    assert by_name["gpu-1"].health == pb.UNHEALTHY and by_name["gpu-1"].message == "overheated"
    assert by_name["gpu-0"].health == pb.HEALTHY and by_name["gpu-0"].message == ""
    assert by_name["gpu-1"].device.pool_name == NODE
    assert by_name["gpu-1"].health_check_timeout_seconds == 30
    service.close()
    assert list(stream) == []


# --- metrics --------------------------------------------------------------------------------


def test_the_devices_gauge_counts_by_health(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, count=3)
    metrics = Metrics()
    metrics.watch_inventory(inventory)
    _flip(tmp_path, "gpu-2", "gone")
    inventory.check_health()
    values = {
        s.labels["health"]: s.value
        for family in metrics.registry.collect()
        if family.name == "dra_cdi_driver_devices"
        for s in family.samples
    }
    assert values == {"healthy": 2, "unhealthy": 1, "unknown": 0}


def test_health_files_are_read_with_the_mock_dirs_permissions(tmp_path: Path) -> None:
    _inventory(tmp_path)
    mode = os.stat(tmp_path / "health").st_mode & 0o777
    assert mode & 0o022 == 0  # only the driver's user may flip the switch
