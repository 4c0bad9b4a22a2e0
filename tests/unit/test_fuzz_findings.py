"""What the atheris harnesses (tests/fuzz/atheris) found in the parsers, kept as plain tests.

Each input once raised an exception its caller does not expect (UnicodeEncodeError,
TypeError, RecursionError): a claim then failed with "internal error", a whole gRPC call
failed, or the driver or `doctor` stopped with a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dra_cdi_driver import config
from dra_cdi_driver.config import ConfigError
from dra_cdi_driver.devices.inventory import InventoryError
from dra_cdi_driver.devices.nvidia.toolkit import find_spec
from dra_cdi_driver.doctor.cdi_specs import spec_kind
from dra_cdi_driver.model import PreparedClaim

UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
DEEP = "[" * 1000 + "]" * 1000
HUGE_DEVICES = '{"kind": "nvidia.com/gpu", "devices": 18446744073709551616}'


def test_an_env_value_that_is_not_utf8_is_a_config_error() -> None:
    """JSON carries lone surrogates ("\\udc92"), and the API server passes opaque
    parameters through as they are."""
    parameters = {"apiVersion": "gpu.cdi.example.com/v1alpha1", "kind": "GpuConfig"}
    with pytest.raises(ConfigError, match="value is not UTF-8 text"):
        config.parse({**parameters, "env": {"X": "\udc92"}})


@pytest.mark.parametrize("field", ["device", "pool", "requestNames", "cdiDeviceIds"])
def test_a_record_with_a_string_that_is_not_utf8_is_refused(field: str) -> None:
    """Accepted, it failed the protobuf answer to the kubelet: every claim of the call."""
    device = {"requestNames": ["gpu"], "pool": "node", "device": "gpu-0", "cdiDeviceIds": ["x"]}
    device[field] = ["\ud800"] if isinstance(device[field], list) else "\ud800"
    record = {"namespace": "ns", "name": "c", "uid": UID, "devices": [device], "cdiSpec": None}
    with pytest.raises(ValueError, match=r"UTF-8|not a list of strings"):
        PreparedClaim.from_json(record)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        (
            "nvidia.json",
            HUGE_DEVICES,
            "not a list",
        ),
        ("nvidia.json", DEEP, "nested too deeply"),
        ("nvidia.yaml", DEEP, "nested too deeply"),
    ],
)
def test_a_toolkit_spec_of_a_wrong_shape_is_an_inventory_error(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InventoryError, match=problem):
        find_spec([tmp_path])


@pytest.mark.parametrize("name", ["deep.json", "deep.yaml"])
def test_doctor_reports_a_spec_nested_too_deeply(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        spec_kind(tmp_path / name)
