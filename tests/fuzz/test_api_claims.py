"""ResourceClaims of any shape from the API server, prepared by one real driver process.

A well-formed claim must be prepared with exactly its devices; a hostile one (uid mismatch,
another node's pool, a device this node lacks, too many results or config entries, opaque
parameters too deep, too large or of any shape, not an object, not JSON) must fail with an
error of its own; a mutated one (fields deleted or replaced by anything) may go either way,
but only safely. A well-formed claim in the same call is always prepared.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.claim_objects import Served, encode, foreign_only, hostile, mutated, well_formed
from tests.fuzz.expect import Devices, assert_prepared
from tests.fuzz.harness import DEVICES, KIND, NODE, VERSIONS, FuzzDriver
from tests.fuzz.profiles import examples

pytestmark = pytest.mark.fuzz

# The catch-all's words: an exception the driver did not expect reached it.
INTERNAL = "internal error in the driver"
GOOD_NAMESPACE = "the-good-claims-namespace"  # longer than any generated label


@settings(max_examples=examples(1.0))
@given(
    claims=st.lists(
        st.one_of(hostile(), mutated(), well_formed(), foreign_only()),
        min_size=1,
        max_size=5,
        unique_by=(lambda c: c.uid, lambda c: (c.namespace, c.name)),
    ),
    good=well_formed(namespace=st.just(GOOD_NAMESPACE)),
    version=st.sampled_from(VERSIONS),
    position=st.integers(min_value=0),
)
def test_any_claim_is_prepared_or_refused_safely(
    fuzz_driver: FuzzDriver, claims: list[Served], good: Served, version: str, position: int
) -> None:
    driver = fuzz_driver
    driver.reset()
    assume(all(c.uid != good.uid for c in claims))
    claims.insert(position % (len(claims) + 1), good)
    for claim in claims:
        driver.api.add_raw_claim(claim.namespace, claim.name, encode(claim.body))
    call = [c.ref for c in claims]

    first = driver.call(version, "prepare", call)
    prepared: dict[str, Devices] = {}
    for claim in claims:
        answer = first.claims[claim.uid]
        assert INTERNAL not in answer.error, answer.error
        if claim.ok is True:
            assert_prepared(answer, claim.uid, claim.requests, version)
        elif claim.ok is False:
            assert answer.error != "", f"hostile claim {claim.ref} was prepared"
            assert f"uid {claim.uid}" in answer.error  # it names the claim
        elif answer.error == "":
            _check_answer_matches_spec(driver, claim.uid, answer)
        if answer.error == "" and answer.devices:
            prepared[claim.uid] = {}
    driver.assert_alive()
    driver.fence.assert_outside_unchanged()
    driver.fence.assert_state(prepared)

    again = driver.call(version, "prepare", call)  # the kubelet's retry: the same answers
    for claim in claims:
        if first.claims[claim.uid].error == "":
            assert again.claims[claim.uid] == first.claims[claim.uid]
        else:
            assert again.claims[claim.uid].error != ""
    driver.fence.assert_state(prepared)

    undone = driver.call(version, "unprepare", call)
    assert all(a.error == "" for a in undone.claims.values())
    driver.fence.assert_state(())
    driver.fence.assert_outside_unchanged()


def _check_answer_matches_spec(driver: FuzzDriver, uid: str, answer: object) -> None:
    """A claim that was prepared: its devices are this node's, and its spec defines each."""
    devices = {d.device_name for d in answer.devices}  # type: ignore[attr-defined]
    assert devices <= set(DEVICES)
    assert {d.pool_name for d in answer.devices} <= {NODE}  # type: ignore[attr-defined]
    if devices:
        spec = json.loads(driver.fence.spec_path(uid).read_text())
        assert spec["kind"] == KIND
        answered = {i.split("=", 1)[1] for d in answer.devices for i in d.cdi_device_ids[:1]}  # type: ignore[attr-defined]
        assert {d["name"] for d in spec["devices"]} == answered
