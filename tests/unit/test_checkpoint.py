from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dra_cdi_driver.checkpoint import (
    Checkpoint,
    CheckpointError,
    ClaimLocks,
    LockTimeout,
    _checksum,
)
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice

UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
CLAIM = PreparedClaim(
    claim=ClaimRef("default", "c", UID),
    devices=(PreparedDevice(("gpu",), "node-1", "gpu-0", (f"v.com/gpu=gpu-0-{UID}",)),),
    cdi_spec={"cdiVersion": "0.3.0"},
)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    first = Checkpoint(tmp_path, boot_id="boot-a")
    first.open()
    first.add(CLAIM)
    second = Checkpoint(tmp_path, boot_id="boot-a")
    second.open()
    assert second.uids() == [UID]
    assert second.get(UID) == CLAIM
    assert oct((tmp_path / f"{UID}.json").stat().st_mode & 0o777) == oct(0o600)


def test_records_from_another_boot_are_dropped(tmp_path: Path) -> None:
    Checkpoint(tmp_path, boot_id="boot-a").add(CLAIM)
    after_reboot = Checkpoint(tmp_path, boot_id="boot-b")
    after_reboot.open()
    assert after_reboot.uids() == [UID]
    assert list(after_reboot.claims()) == []
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
    fresh.open()
    assert fresh.get(UID) is None
    assert list(tmp_path.iterdir()) == []


def test_remove_is_idempotent(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, boot_id="boot-a")
    checkpoint.add(CLAIM)
    assert checkpoint.remove(UID) is True
    assert checkpoint.remove(UID) is False
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
    fresh.open()
    fresh.remove_temporaries()
    assert [c.claim.uid for c in fresh.claims()] == [UID]  # reading for metrics discards nothing
    assert all(fresh.get(uid) is None for uid in fresh.uids() if uid != UID)
    assert fresh.get(UID) == CLAIM
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
    checkpoint.open()
    assert list(checkpoint.claims()) == []
    assert [checkpoint.get(uid) for uid in checkpoint.uids()] == [None, None]
    assert outside.read_text() == "secret"
    with pytest.raises(CheckpointError, match="outside"):
        checkpoint.add(CLAIM)  # the symlink resolves outside: refused, not written through
    assert outside.read_text() == "secret"


def test_what_another_instance_writes_or_removes_is_seen_at_once(tmp_path: Path) -> None:
    """The old and the new pod of a rolling update share the dir: nothing is remembered."""
    old, new = Checkpoint(tmp_path, "boot-a"), Checkpoint(tmp_path, "boot-a")
    old.add(CLAIM)
    assert new.get(UID) == CLAIM
    assert new.remove(UID) is True
    assert old.get(UID) is None
    # Prepared again with another device (the claim was deallocated and allocated anew):
    # the other instance answers with the new device, not what it saw before.
    moved = PreparedClaim(
        CLAIM.claim,
        (PreparedDevice(("gpu",), "node-1", "gpu-5", (f"v.com/gpu=gpu-5-{UID}",)),),
        CLAIM.cdi_spec,
    )
    new.add(moved)
    assert old.get(UID) == moved
    assert list(old.claims()) == [moved]


# --- the per-claim lock ---------------------------------------------------------------------

OTHER = "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e"


def _soon(seconds: float = 0.3) -> float:
    return time.monotonic() + seconds


def test_one_claim_at_a_time_other_claims_at_once(tmp_path: Path) -> None:
    locks = ClaimLocks(tmp_path)
    locks.open()
    with locks.hold(UID, _soon()):
        started = time.monotonic()
        with pytest.raises(LockTimeout), locks.hold(UID, _soon(0.2)):
            pass
        assert 0.15 < time.monotonic() - started < 1.0
        with locks.hold(OTHER, _soon()):  # another claim does not wait
            pass
    with locks.hold(UID, _soon()):  # free again
        pass
    assert list(tmp_path.iterdir()) == []  # nothing is kept while idle


def test_another_process_holding_the_claim_makes_us_wait_until_our_deadline(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from dra_cdi_driver.checkpoint import ClaimLocks\n"
            f"with ClaimLocks(Path({str(tmp_path)!r})).hold({UID!r}, time.monotonic() + 5):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        locks = ClaimLocks(tmp_path)
        started = time.monotonic()
        with pytest.raises(LockTimeout), locks.hold(UID, _soon(0.5)):
            pass
        assert 0.45 < time.monotonic() - started < 1.5
        with locks.hold(OTHER, _soon()):  # only that claim waits
            pass
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        with locks.hold(UID, _soon(5)):  # as soon as the other process lets go
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_waiter_whose_lock_file_was_removed_starts_over(tmp_path: Path) -> None:
    """Three instances (separate ClaimLocks, so only the flock links them): the first lets
    go and removes the file while the second waits on it; the second must then hold the
    lock on the file at the path, so that the third still waits."""
    first, second, third = ClaimLocks(tmp_path), ClaimLocks(tmp_path), ClaimLocks(tmp_path)
    release, second_holds, second_done = threading.Event(), threading.Event(), threading.Event()

    def hold_second() -> None:
        with second.hold(UID, _soon(5)):
            second_holds.set()
            second_done.wait(5)

    with first.hold(UID, _soon()):
        waiter = threading.Thread(target=hold_second)
        waiter.start()
        time.sleep(0.1)  # the second has opened the file and polls its flock
        assert not second_holds.is_set()
        release.set()
    assert second_holds.wait(5)
    with pytest.raises(LockTimeout), third.hold(UID, _soon(0.2)):
        pass
    second_done.set()
    waiter.join(5)
    with third.hold(UID, _soon()):
        pass


def test_the_lock_file_of_a_prepared_claim_stays_and_goes_with_it(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "checkpoint", "boot-a")
    checkpoint.open()
    locks = ClaimLocks(tmp_path / "locks", keep=checkpoint.has)
    locks.open()
    with locks.hold(UID, _soon()):
        checkpoint.add(CLAIM)
    assert [p.name for p in (tmp_path / "locks").iterdir()] == [f"{UID}.lock"]
    with locks.hold(UID, _soon()):  # the file is reused, and the lock is free again
        checkpoint.remove(UID)
    assert list((tmp_path / "locks").iterdir()) == []


def test_a_symlink_as_lock_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("secret")
    locks_dir = tmp_path / "locks"
    locks_dir.mkdir()
    (locks_dir / f"{UID}.lock").symlink_to(outside)
    with pytest.raises(OSError), ClaimLocks(locks_dir).hold(UID, _soon()):
        pass
    assert outside.read_text() == "secret"
