"""The real driver process, restarted (after SIGKILL or SIGTERM) on any state of the CDI root
and the checkpoint dir, then asked by the kubelet to prepare and unprepare every claim the
state names, and the claims it had prepared before.

A restart costs about a second, so this runs a twentieth of the other tests' examples;
test_startup_sweep.py runs the same states in-process, many more of them.
"""

from __future__ import annotations

import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dra_cdi_driver.checkpoint import current_boot_id
from tests.fuzz.after_start import (
    check_prepare_answers,
    check_swept,
    check_unprepare_answers,
    claims_to_prepare,
    unremovable,
)
from tests.fuzz.claim_objects import Served, encode, well_formed
from tests.fuzz.disk_states import DiskState, disk_states
from tests.fuzz.harness import VERSIONS, FuzzDriver
from tests.fuzz.profiles import examples

pytestmark = pytest.mark.fuzz
BOOT_ID = current_boot_id()


@settings(max_examples=examples(0.05))
@given(
    before=st.lists(well_formed(), max_size=2, unique_by=(lambda c: c.uid, lambda c: c.ref[:2])),
    how=st.sampled_from([signal.SIGKILL, signal.SIGTERM]),
    state=disk_states(BOOT_ID),
    version=st.sampled_from(VERSIONS),
)
def test_a_restart_on_any_disk_state_keeps_every_invariant(
    fuzz_driver: FuzzDriver, before: list[Served], how: int, state: DiskState, version: str
) -> None:
    driver, fence = fuzz_driver, fuzz_driver.fence
    driver.reset()
    for claim in before:
        driver.api.add_raw_claim(claim.namespace, claim.name, encode(claim.body))
    answered = driver.call(version, "prepare", [c.ref for c in before]) if before else None
    driver.stop(how)
    state.plant(fence)
    driver.start()  # fails the test if the driver does not come up
    kept = frozenset(c.uid for c in before if c.requests)
    check_swept(fence, state, also=kept)

    refs = claims_to_prepare(state)
    driver.touched.update(uid for _, _, uid in refs)
    if refs:
        check_prepare_answers(driver.call(version, "prepare", refs), state, version)
    if answered is not None:  # answered from the checkpoint now, the API not asked
        driver.api.raw_claims.clear()
        again = driver.call(version, "prepare", [c.ref for c in before])
        assert again == answered

    everything = refs + [c.ref for c in before]
    stuck = {uid for _, _, uid in everything if unremovable(fence, uid)}
    check_unprepare_answers(driver.call(version, "unprepare", everything), fence, stuck)
    fence.assert_outside_unchanged()
    driver.reset()
