"""Any sequence of NodePrepare/NodeUnprepareResources calls, with claim references of any
shape, against one real driver process over gRPC (v1 and v1beta1).

A model of what is prepared runs alongside: a valid reference to a claim the API serves
must be prepared, whatever else is in the call; anything else must fail, touch nothing,
and leave every other claim as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakeapi import FakeApi
from tests.fuzz.claim_objects import Served, encode, foreign_only, well_formed
from tests.fuzz.expect import (
    Devices,
    assert_prepared,
    check_malformed,
    check_refused_call,
    fresh_uid,
    outcomes_by_uid,
    too_many,
)
from tests.fuzz.harness import VERSIONS, FuzzDriver, Ref
from tests.fuzz.oracle import is_valid
from tests.fuzz.profiles import examples
from tests.fuzz.refs import hostile, names, namespaces, refs, resolve, uids

pytestmark = pytest.mark.fuzz


def serve_all(api: FakeApi, served: list[Served]) -> None:
    for claim in served:
        api.add_raw_claim(claim.namespace, claim.name, encode(claim.body))


@st.composite
def batches(draw: st.DrawFn, served: list[Served]) -> list[Ref]:
    """The claims of one call: 0-8 of any kind with duplicates, or, now and then, a call at
    and beyond the per-call limit."""
    kinds: list[st.SearchStrategy[Ref]] = [refs()]
    if served:
        known = st.sampled_from([c.ref for c in served])
        kinds += [
            known,
            st.tuples(known, uids).map(lambda t: (t[0][0], t[0][1], t[1])),  # another uid
            st.tuples(known, namespaces, names).map(lambda t: (t[1], t[2], t[0][2])),
            st.tuples(known, hostile).map(lambda t: (t[0][0], t[1], t[0][2])),
        ]
    one = st.one_of(*kinds)
    if draw(st.integers(0, 24)) == 0:
        size = draw(st.sampled_from([511, 512, 513, 700]))
        head = draw(st.lists(one, max_size=4))
        return head + [_filler(i, head) for i in range(size - len(head))]
    claims: list[Ref] = draw(st.lists(one, max_size=8))
    repeat: bool = draw(st.booleans())
    if claims and repeat:  # the same claims again, in the same call
        claims += draw(st.lists(st.sampled_from(claims), min_size=1, max_size=3))
    return claims


def _filler(i: int, head: list[Ref]) -> Ref:
    """Cheap claims to fill a large call: refused before any API read, or repeats of short
    ones (gRPC itself refuses a message over 4 MiB, long before the driver sees it)."""
    short = [r for r in head if sum(map(len, r)) < 512]
    if i % 3 == 0:
        return ("default", f"c{i}", f"not-a-uid-{i}")
    if i % 3 == 1 or not short:
        return ("Default", f"c{i}", fresh_uid(i))
    return short[i % len(short)]


@settings(max_examples=examples(1.0))
@given(data=st.data())
def test_any_calls_keep_every_invariant(fuzz_driver: FuzzDriver, data: st.DataObject) -> None:
    driver = fuzz_driver
    driver.reset()
    served = data.draw(
        st.lists(
            st.one_of(well_formed(), foreign_only()),
            max_size=4,
            unique_by=(lambda c: c.uid, lambda c: (c.namespace, c.name)),
        ),
        label="served",
    )
    serve_all(driver.api, served)
    by_name = {(c.namespace, c.name): c for c in served}
    prepared: dict[str, Devices] = {}  # uid -> devices, of the claims with a spec

    for _ in range(data.draw(st.integers(1, 5), label="calls")):
        op = data.draw(st.sampled_from(["prepare", "unprepare"]), label="op")
        version = data.draw(st.sampled_from(VERSIONS), label="version")
        call = [
            resolve(r, str(driver.fence.path)) for r in data.draw(batches(served), label="claims")
        ]
        response = driver.call(version, op, call)
        if too_many(call):
            check_refused_call(response, call)
        elif op == "prepare":
            _check_prepare(response, call, by_name, prepared, version)
        else:
            _check_unprepare(response, call, prepared)
        driver.fence.assert_outside_unchanged()
        driver.fence.assert_state(prepared)
    driver.reset()


def _check_prepare(
    response: Any,
    call: list[Ref],
    by_name: dict[tuple[str, str], Served],
    prepared: dict[str, Devices],
    version: str,
) -> None:
    def served(ref: Ref) -> Served | None:
        claim = by_name.get((ref[0], ref[1]))
        return claim if claim is not None and claim.uid == ref[2] else None

    ok = {r: is_valid(r) and (r[2] in prepared or served(r) is not None) for r in call}
    for uid, must in outcomes_by_uid(call, ok).items():
        answer = response.claims[uid]
        if must is True:
            devices = prepared.get(uid)
            if devices is None:  # not prepared before: read from the API now
                devices = next(c for r in call if (c := served(r)) and c.uid == uid).requests
            assert_prepared(answer, uid, devices, version)
        elif must is False:
            assert answer.error != "", f"claim {uid!r} was prepared"
            bad = [r for r in call if r[2] == uid and not is_valid(r)]
            if len(bad) == len([r for r in call if r[2] == uid]):
                check_malformed(answer, bad[0])
    for ref in call:
        claim = served(ref)
        if ok[ref] and claim is not None and claim.requests:
            prepared.setdefault(ref[2], claim.requests)


def _check_unprepare(response: Any, call: list[Ref], prepared: dict[str, Devices]) -> None:
    ok = {r: is_valid(r) for r in call}
    for uid, must in outcomes_by_uid(call, ok).items():
        answer = response.claims[uid]
        if must is True:
            assert answer.error == "", answer.error
        elif must is False:
            check_malformed(answer, next(r for r in call if r[2] == uid))
    for ref in call:
        if ok[ref]:
            prepared.pop(ref[2], None)
