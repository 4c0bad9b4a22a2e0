"""Claim references from the kubelet socket: only what the API server issues is acted on."""

from __future__ import annotations

import pytest

from dra_cdi_driver.model import ClaimError, ClaimRef
from dra_cdi_driver.validation import check_claim_ref

UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("default", "c"), ("kube-system", "pod-1-gpu-x7k2p"), ("a" * 63, "a.b-c." + "d" * 240)],
)
def test_what_the_api_server_issues_is_accepted(namespace: str, name: str) -> None:
    check_claim_ref(ClaimRef(namespace, name, UID))


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        (ClaimRef("default", "c", "../../../etc/x"), "uid"),
        (ClaimRef("default", "c", ""), "uid"),
        (ClaimRef("default", "c", UID.upper()), "uid"),
        (ClaimRef("default", "c", UID + "/.."), "uid"),
        (ClaimRef("default", "c", UID + "\n"), "uid"),
        (ClaimRef("../x", "c", UID), "namespace"),
        (ClaimRef("", "c", UID), "namespace"),
        (ClaimRef("a" * 64, "c", UID), "namespace"),
        (ClaimRef("Default", "c", UID), "namespace"),
        (ClaimRef("default", "a/b", UID), "name"),
        (ClaimRef("default", "", UID), "name"),
        (ClaimRef("default", "x" * 254, UID), "name"),
        (ClaimRef("default", "-c", UID), "name"),
    ],
)
def test_anything_else_is_a_claim_error_naming_the_field(ref: ClaimRef, field: str) -> None:
    with pytest.raises(ClaimError) as caught:
        check_claim_ref(ref)
    assert caught.value.claim == ref
    assert caught.value.problem.startswith("malformed request: ")
    assert f"{field}: not a" in caught.value.problem
    fields = ("uid", "namespace", "name")
    assert all(f"{f}: " not in caught.value.problem for f in fields if f != field)


def test_a_hostile_reference_is_quoted_and_cut_short_when_printed() -> None:
    ref = ClaimRef("ns\nlevel=error msg=forged", "x" * 10_000, "../../etc")
    text = str(ref)
    assert "\n" not in text
    assert len(text) < 250
    assert "'ns\\nlevel=error msg=forged'" in text and "'../../etc'" in text
    assert str(ClaimRef("default", "c", UID)) == f"default/c (uid {UID})"
