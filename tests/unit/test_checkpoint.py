from __future__ import annotations

import json
from pathlib import Path

from dra_cdi_driver.checkpoint import Checkpoint
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice

CLAIM = PreparedClaim(
    claim=ClaimRef("default", "c", "uid-1"),
    devices=(PreparedDevice(("gpu",), "node-1", "gpu-0", ("v.com/gpu=gpu-0-uid-1",)),),
    cdi_spec={"cdiVersion": "0.3.0"},
)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    first = Checkpoint(tmp_path, boot_id="boot-a")
    first.load()
    first.add(CLAIM)
    second = Checkpoint(tmp_path, boot_id="boot-a")
    assert second.load() == []
    assert second.get("uid-1") == CLAIM
    assert oct((tmp_path / "uid-1.json").stat().st_mode & 0o777) == oct(0o600)


def test_records_from_another_boot_are_dropped(tmp_path: Path) -> None:
    Checkpoint(tmp_path, boot_id="boot-a").add(CLAIM)
    after_reboot = Checkpoint(tmp_path, boot_id="boot-b")
    assert after_reboot.load() == [CLAIM]
    assert after_reboot.get("uid-1") is None
    assert list(tmp_path.iterdir()) == []


def test_damaged_records_are_discarded(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    path = tmp_path / "uid-1.json"
    record = json.loads(path.read_text())
    record["claim"]["devices"][0]["device"] = "gpu-7"  # tampered: checksum no longer matches
    path.write_text(json.dumps(record))
    (tmp_path / "garbage.json").write_text("{not json")
    fresh = Checkpoint(tmp_path, boot_id="boot-a")
    fresh.load()
    assert fresh.get("uid-1") is None
    assert list(tmp_path.iterdir()) == []


def test_remove_is_idempotent(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    checkpoint.remove("uid-1")
    checkpoint.remove("uid-1")
    assert checkpoint.get("uid-1") is None
    assert list(checkpoint.claims()) == []
