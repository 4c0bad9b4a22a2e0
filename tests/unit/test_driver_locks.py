"""The driver's use of the per-claim lock: what a claim gets when the lock cannot be had."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dra_cdi_driver.cdi import SpecStore
from dra_cdi_driver.checkpoint import Checkpoint, ClaimLocks
from dra_cdi_driver.driver import Driver
from dra_cdi_driver.model import ClaimError, ClaimRef, PreparedClaim
from tests.unit.test_metrics import Claims, _inventory, _uid


def _driver(tmp_path: Path, locks: Path, claims: Claims | None = None) -> tuple[Driver, Claims]:
    claims = claims if claims is not None else Claims()
    driver = Driver(
        driver_name="gpu.cdi.example.com",
        node_name="node-1",
        inventory=_inventory(tmp_path),
        claims=claims,
        specs=SpecStore(tmp_path / "cdi", "gpu.cdi.example.com/gpu"),
        checkpoint=Checkpoint(tmp_path / "checkpoint", "boot"),
        locks=ClaimLocks(locks),
        workers=2,
    )
    driver.recover()
    return driver, claims


def test_a_lock_file_that_is_a_planted_symlink_fails_the_claim_not_the_driver(
    tmp_path: Path,
) -> None:
    driver, claims = _driver(tmp_path, tmp_path / "locks")
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / "locks" / f"{_uid(1)}.lock").symlink_to(victim)
    try:
        outcome = driver.prepare([claims.add(1, "gpu-0")])[_uid(1)]
        assert isinstance(outcome, ClaimError)
        assert "cannot take the claim's lock" in outcome.problem
        assert "internal error" not in outcome.problem
        assert victim.read_text() == "x"
        other = driver.prepare([claims.add(2, "gpu-1")])[_uid(2)]
        assert isinstance(other, PreparedClaim)  # the other claims go on
    finally:
        driver.close()


def test_an_error_inside_the_locked_steps_is_reported_as_itself(tmp_path: Path) -> None:
    """A failure while the lock is held (here: the CDI root is a file) keeps its own message."""
    driver, claims = _driver(tmp_path, tmp_path / "locks")
    try:
        (tmp_path / "cdi").rmdir()
        (tmp_path / "cdi").write_text("not a dir")
        outcome = driver.prepare([claims.add(1, "gpu-0")])[_uid(1)]
        assert isinstance(outcome, ClaimError) and "cannot write CDI spec" in outcome.problem
        (tmp_path / "cdi").unlink()
        (tmp_path / "cdi").mkdir()
        ref = claims.add(1, "gpu-0")
        assert isinstance(driver.prepare([ref])[_uid(1)], PreparedClaim)
        assert driver.unprepare([ref], deadline=time.monotonic() + 5)[_uid(1)] is None
        assert list((tmp_path / "locks").iterdir()) == []
    finally:
        driver.close()


class SlowClaims(Claims):
    """An API server whose answer comes back after the time given for it."""

    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        time.sleep(timeout + 0.05)
        return super().read(claim, timeout)


def test_a_claim_read_after_the_deadline_writes_nothing(tmp_path: Path) -> None:
    """The kubelet is told the claim timed out: no record and no spec may appear behind its
    back (nothing would unprepare them). Its retry prepares the claim afresh."""
    driver, claims = _driver(tmp_path, tmp_path / "locks", SlowClaims())
    try:
        ref = claims.add(1, "gpu-0")
        outcome = driver.prepare([ref], deadline=time.monotonic() + 0.5)[_uid(1)]
        assert isinstance(outcome, ClaimError) and outcome.timed_out
        assert list((tmp_path / "cdi").iterdir()) == []
        assert list((tmp_path / "checkpoint").iterdir()) == []
    finally:
        driver.close()
