"""What the driver writes into a claim's status.devices[], and the flags that steer health."""

from __future__ import annotations

from pathlib import Path

import pytest

from dra_cdi_driver.cli import build_parser, settings_from_args
from dra_cdi_driver.devices.health import DeviceHealth
from dra_cdi_driver.kubeapi.claim_status import device_status, field_manager
from dra_cdi_driver.model import PreparedDevice
from dra_cdi_driver.settings import SettingsError

DEVICE = PreparedDevice(("gpu",), "node-1", "gpu-0", ("gpu.cdi.example.com/gpu=gpu-0-uid",))
ATTRS = {"uuid": "GPU-1", "productName": "NVIDIA H100", "index": 0}


def test_a_ready_device_has_its_condition_and_data() -> None:
    entry = device_status("d.example.com", DEVICE, DeviceHealth(True, "", 100.0), ATTRS, 200.0)
    assert entry == {
        "driver": "d.example.com",
        "pool": "node-1",
        "device": "gpu-0",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Prepared",
                "message": "prepared for the claim's pods",
                "lastTransitionTime": "1970-01-01T00:03:20Z",  # prepared after it was healthy
            }
        ],
        "data": {
            "cdiDeviceIDs": ["gpu.cdi.example.com/gpu=gpu-0-uid"],
            "uuid": "GPU-1",
            "model": "NVIDIA H100",
        },
    }


def test_an_unhealthy_device_is_not_ready_since_it_failed_and_a_share_is_named() -> None:
    shared = PreparedDevice(("gpu",), "node-1", "gpu-0", ("x/gpu=y",), share_id="abc")
    entry = device_status(
        "d.example.com", shared, DeviceHealth(False, "XID 79", 300.0), {"model": "Mock"}, 200.0
    )
    [condition] = entry["conditions"]
    assert condition["status"] == "False" and condition["reason"] == "Unhealthy"
    assert condition["message"] == "the device is unhealthy: XID 79"
    assert condition["lastTransitionTime"] == "1970-01-01T00:05:00Z"
    assert entry["shareID"] == "abc" and entry["data"]["model"] == "Mock"


def test_the_field_manager_is_the_driver_on_its_node() -> None:
    assert field_manager("gpu.example.com", "node-1") == "gpu.example.com/node-1"
    assert len(field_manager("d" * 63, "n" * 253)) == 128


def test_health_flags_and_their_environment_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n1"]))
    assert settings.unhealthy_taint_effect == "NoSchedule" and settings.claim_device_status
    assert settings.mock_health_dir == settings.plugin_dir / "health"
    monkeypatch.setenv("UNHEALTHY_TAINT_EFFECT", "NoExecute")
    monkeypatch.setenv("CLAIM_DEVICE_STATUS", "false")
    monkeypatch.setenv("MOCK_HEALTH_DIR", "/run/flip")
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n1"]))
    assert settings.unhealthy_taint_effect == "NoExecute"
    assert settings.claim_device_status is False
    assert settings.mock_health_dir == Path("/run/flip")
    settings.validate()


def test_a_relative_health_dir_is_refused() -> None:
    settings = settings_from_args(
        build_parser().parse_args(["--node-name", "n1", "--mock-health-dir", "rel"])
    )
    with pytest.raises(SettingsError, match="--mock-health-dir"):
        settings.validate()
