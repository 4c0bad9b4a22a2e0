"""Records on disk are untrusted: whatever a file holds, reading it never raises, and only a
record of the right shape is taken (found by tests/fuzz)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.checkpoint import Checkpoint, _checksum
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice

UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
CLAIM = PreparedClaim(
    claim=ClaimRef("default", "c", UID),
    devices=(PreparedDevice(("gpu",), "node-1", "gpu-0", (f"v.com/gpu=gpu-0-{UID}",)),),
    cdi_spec={"cdiVersion": "0.3.0"},
)


def _file(tmp_path: Path, claim: Any) -> Path:
    """A record of `claim` as the driver writes it: the checksum matches."""
    body = {"version": 1, "bootId": "boot-a", "claim": claim}
    path = tmp_path / f"{UID}.json"
    path.write_text(json.dumps({**body, "checksum": _checksum(body)}))
    return path


def test_a_record_nested_too_deeply_to_decode_is_dropped(tmp_path: Path) -> None:
    """json.loads raised RecursionError out of the start-up sweep: no start."""
    path = tmp_path / f"{UID}.json"
    path.write_text('{"version":' + "[" * 100_000 + "]" * 100_000 + "}")
    assert Checkpoint(tmp_path, "boot-a").get(UID) is None
    assert not path.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cdiSpec", "spec"),  # written as the claim's CDI spec
        ("cdiSpec", []),
        ("namespace", 5),
        ("devices", {"gpu-0": {}}),
        ("devices", [1]),
        ("0.pool", 7),  # put in the kubelet's answer: a TypeError, a gRPC-level error
        ("0.device", ["gpu-0"]),
        ("0.requestNames", "gpu"),
        ("0.cdiDeviceIds", [None]),
        ("0.shareId", 5),
    ],
)
def test_a_record_with_a_value_of_the_wrong_type_is_dropped(
    tmp_path: Path, field: str, value: Any
) -> None:
    """A record whose checksum matches (anyone who can write the dir can compute one) but
    whose values are of the wrong type was taken, and answering its claim failed."""
    claim = CLAIM.to_json()
    if field.startswith("0."):
        claim["devices"][0][field[2:]] = value
    else:
        claim[field] = value
    path = _file(tmp_path, claim)
    assert Checkpoint(tmp_path, "boot-a").get(UID) is None
    assert not path.exists()


def test_a_record_of_the_right_shape_is_taken(tmp_path: Path) -> None:
    _file(tmp_path, CLAIM.to_json())
    assert Checkpoint(tmp_path, "boot-a").get(UID) == CLAIM
