"""The start-up sweep (Driver.recover) on any state of the CDI root and the checkpoint dir,
then the kubelet's prepare and unprepare of every claim the state names.

In-process, on real files, so that thousands of states run in seconds; test_restart.py
starts the real process on the same states, fewer of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dra_cdi_driver.cdi import SpecStore
from dra_cdi_driver.checkpoint import Checkpoint, current_boot_id
from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.driver import Driver
from dra_cdi_driver.kubelet.dra_service import VERSIONS as PB
from dra_cdi_driver.kubelet.dra_service import DraService
from dra_cdi_driver.model import ClaimError, ClaimRef
from tests.fuzz.after_start import (
    check_prepare_answers,
    check_swept,
    check_unprepare_answers,
    claims_to_prepare,
    unremovable,
)
from tests.fuzz.disk_states import DiskState, disk_states
from tests.fuzz.fence import Fence, assert_nothing_escaped
from tests.fuzz.harness import DRIVER, KIND, NODE, VERSIONS
from tests.fuzz.oracle import Ref
from tests.fuzz.profiles import examples

pytestmark = pytest.mark.fuzz
BOOT_ID = current_boot_id()


class _NoClaims:
    """The API server knows none of the claims: unprepare must never need it."""

    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        raise ClaimError(claim, "ResourceClaim does not exist (no API in this test)")


class _Context:
    def time_remaining(self) -> float | None:
        return None


@pytest.fixture(scope="module")
def fence() -> Iterator[Fence]:
    fence = Fence.create()
    fence.take_baseline()
    try:
        yield fence
    finally:
        fence.remove()
    assert_nothing_escaped()


def _driver(fence: Fence) -> Driver:
    nowhere = fence.path / "no-mock-files"  # the mock GPUs without host files
    inventory = Inventory(MockSource(NODE, 8, dev_dir=nowhere, lib_dir=nowhere, bin_dir=nowhere))
    inventory.refresh()
    return Driver(
        driver_name=DRIVER,
        node_name=NODE,
        inventory=inventory,
        claims=_NoClaims(),
        specs=SpecStore(fence.cdi_root, KIND),
        checkpoint=Checkpoint(fence.checkpoint_dir, BOOT_ID),
        workers=2,
    )


def _request(version: str, kind: str, refs: list[Ref]) -> Any:
    pb = PB[version]
    claims = [pb.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in refs]
    return getattr(pb, f"Node{kind}ResourcesRequest")(claims=claims)


@settings(max_examples=examples(2.5))
@given(state=disk_states(BOOT_ID), version=st.sampled_from(VERSIONS))
def test_any_disk_state_is_swept_safely(fence: Fence, state: DiskState, version: str) -> None:
    fence.wipe_roots()
    state.plant(fence)
    driver = _driver(fence)
    try:
        driver.recover()  # must not raise, whatever the host holds
        check_swept(fence, state)

        service = DraService(PB[version], driver)
        refs = claims_to_prepare(state)
        prepared = service.NodePrepareResources(_request(version, "Prepare", refs), _Context())
        assert set(prepared.claims) == {uid for _, _, uid in refs}
        check_prepare_answers(prepared, state, version)

        stuck = {uid for _, _, uid in refs if unremovable(fence, uid)}
        undone = service.NodeUnprepareResources(_request(version, "Unprepare", refs), _Context())
        assert set(undone.claims) == {uid for _, _, uid in refs}
        check_unprepare_answers(undone, fence, stuck)
        fence.assert_outside_unchanged()
    finally:
        driver.close()
