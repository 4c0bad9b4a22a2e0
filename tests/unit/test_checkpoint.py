from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dra_cdi_driver.checkpoint import Checkpoint, CheckpointError, _checksum
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice

UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
CLAIM = PreparedClaim(
    claim=ClaimRef("default", "c", UID),
    devices=(PreparedDevice(("gpu",), "node-1", "gpu-0", (f"v.com/gpu=gpu-0-{UID}",)),),
    cdi_spec={"cdiVersion": "0.3.0"},
)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    first = Checkpoint(tmp_path, boot_id="boot-a")
    first.load()
    first.add(CLAIM)
    second = Checkpoint(tmp_path, boot_id="boot-a")
    assert second.load() == []
    assert second.get(UID) == CLAIM
    assert oct((tmp_path / f"{UID}.json").stat().st_mode & 0o777) == oct(0o600)


def test_records_from_another_boot_are_dropped(tmp_path: Path) -> None:
    Checkpoint(tmp_path, boot_id="boot-a").add(CLAIM)
    after_reboot = Checkpoint(tmp_path, boot_id="boot-b")
    assert after_reboot.load() == [CLAIM]
    assert after_reboot.get(UID) is None
    assert list(tmp_path.iterdir()) == []


def test_damaged_records_are_discarded(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    path = tmp_path / f"{UID}.json"
    record = json.loads(path.read_text())
    record["claim"]["devices"][0]["device"] = "gpu-7"  # tampered: checksum no longer matches
    path.write_text(json.dumps(record))
    (tmp_path / "garbage.json").write_text("{not json")
    fresh = Checkpoint(tmp_path, boot_id="boot-a")
    fresh.load()
    assert fresh.get(UID) is None
    assert list(tmp_path.iterdir()) == []


def test_remove_is_idempotent(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    checkpoint.remove(UID)
    checkpoint.remove(UID)
    assert checkpoint.get(UID) is None
    assert list(checkpoint.claims()) == []


def test_records_not_for_their_file_or_with_a_bad_claim_are_discarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    good = (tmp_path / f"{UID}.json").read_text()
    other = "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e"
    (tmp_path / f"{other}.json").write_text(good)  # a valid record, but for another uid
    (tmp_path / "not-a-uid.json").write_text(good)
    evil = PreparedClaim(ClaimRef("default", "c", "../../escape"), (), None)
    body = {"version": 1, "bootId": "boot-a", "claim": evil.to_json()}
    (tmp_path / "0b0b0b0b-0b0b-4c0c-8d0d-0e0e0e0e0e0e.json").write_text(
        json.dumps({**body, "checksum": _checksum(body)})
    )
    (tmp_path / ".a.json.0123abcd.tmp").write_text("half")  # a crash in the middle of a write

    fresh = Checkpoint(tmp_path, boot_id="boot-a")
    assert fresh.load() == []
    assert [c.claim.uid for c in fresh.claims()] == [UID]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{UID}.json"]
    discarded = [r for r in caplog.records if "discarding" in r.getMessage()]
    assert len(discarded) == 3  # one line per dropped record


def test_a_symlink_or_fifo_in_the_directory_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("secret")
    records = tmp_path / "checkpoint"
    records.mkdir()
    (records / f"{UID}.json").symlink_to(outside)
    os.mkfifo(records / "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e.json")  # reading would block

    checkpoint = Checkpoint(records, boot_id="boot-a")
    assert checkpoint.load() == []
    assert list(checkpoint.claims()) == []
    assert outside.read_text() == "secret"
    with pytest.raises(CheckpointError, match="outside"):
        checkpoint.add(CLAIM)  # the symlink resolves outside: refused, not written through
    assert outside.read_text() == "secret"
