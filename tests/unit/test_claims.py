from __future__ import annotations

import pytest

from dra_cdi_driver.claims import AllocationResult, parse_allocation
from dra_cdi_driver.model import ClaimError, ClaimRef
from tests.fakeapi import claim_object, result

DRIVER = "gpu.cdi.example.com"
REF = ClaimRef("ns", "c", "uid-1")


def test_keeps_only_our_results_and_config() -> None:
    obj = claim_object(
        "c",
        "uid-1",
        [result("gpu-0", "a/sub"), result("x", "b", driver="other.example.com")],
        namespace="ns",
        config=[
            {"source": "FromClass", "opaque": {"driver": "other.example.com", "parameters": {}}},
            {
                "source": "FromClaim",
                "requests": ["a"],
                "opaque": {"driver": DRIVER, "parameters": {"k": 1}},
            },
        ],
    )
    allocation = parse_allocation(obj, REF, DRIVER)
    assert allocation.results == (AllocationResult("a/sub", DRIVER, "node-1", "gpu-0"),)
    [entry] = allocation.config
    assert (entry.index, entry.source, entry.requests, entry.parameters) == (
        1,
        "FromClaim",
        ("a",),
        {"k": 1},
    )


def test_uid_mismatch() -> None:
    with pytest.raises(ClaimError, match=r"UID mismatch.*uid-2"):
        parse_allocation(claim_object("c", "uid-2", [], namespace="ns"), REF, DRIVER)


def test_not_allocated() -> None:
    with pytest.raises(ClaimError, match=r"claim ns/c \(uid uid-1\): not allocated"):
        parse_allocation(claim_object("c", "uid-1", None, namespace="ns"), REF, DRIVER)


def test_malformed_result() -> None:
    obj = claim_object(
        "c", "uid-1", [{"driver": DRIVER, "request": "a", "pool": "p"}], namespace="ns"
    )
    with pytest.raises(ClaimError, match=r"malformed.*'device'"):
        parse_allocation(obj, REF, DRIVER)
