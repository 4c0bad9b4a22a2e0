from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.kubeapi import client as kube
from dra_cdi_driver.kubeapi.claims import AllocationResult, ApiClaimReader, parse_allocation
from dra_cdi_driver.model import ClaimError, ClaimRef
from tests.fakeapi import FakeApi, claim_object, result, serve, write_kubeconfig

DRIVER = "gpu.cdi.example.com"
UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_UID = "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e"
REF = ClaimRef("ns", "c", UID)


def test_keeps_only_our_results_and_config() -> None:
    obj = claim_object(
        "c",
        UID,
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
    with pytest.raises(ClaimError, match=rf"UID mismatch.*{OTHER_UID}"):
        parse_allocation(claim_object("c", OTHER_UID, [], namespace="ns"), REF, DRIVER)


def test_not_allocated() -> None:
    with pytest.raises(ClaimError, match=rf"claim ns/c \(uid {UID}\): not allocated"):
        parse_allocation(claim_object("c", UID, None, namespace="ns"), REF, DRIVER)


def test_malformed_result() -> None:
    obj = claim_object("c", UID, [{"driver": DRIVER, "request": "a", "pool": "p"}], namespace="ns")
    with pytest.raises(
        ClaimError, match=r"malformed status.allocation.devices.results\[0\].device"
    ):
        parse_allocation(obj, REF, DRIVER)


def _with(results: Any = None, config: Any = None, **status: Any) -> dict[str, Any]:
    obj = claim_object("c", UID, [result("gpu-0")], namespace="ns")
    devices = obj["status"]["allocation"]["devices"]
    if results is not None:
        devices["results"] = results
    if config is not None:
        devices["config"] = config
    obj["status"].update(status)
    return obj


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (_with(results=[result(f"gpu-{i}") for i in range(33)]), "results: 33 entries, more"),
        (_with(results={"a": 1}), "results: not a list"),
        (_with(results=[result("../../x")]), "results[0].device: missing, or not a valid name"),
        (_with(results=[result("gpu-0", "a\nb")]), "results[0].request: missing, or not a"),
        (_with(results=[result("gpu-0", "a/b/c")]), "results[0].request"),
        (_with(results=[{**result("gpu-0"), "pool": "x" * 300}]), "results[0].pool"),
        (_with(results=[{**result("gpu-0"), "shareID": "../x"}]), "results[0].shareID: not a"),
        (_with(results=[{**result("gpu-0"), "adminAccess": "yes"}]), "adminAccess: not a bool"),
        (_with(config=[{"source": "FromClaim", "opaque": []}]), "config[0].opaque: not an object"),
        (_with(config=[{}] * 33), "config: 33 entries, more than the API allows (32)"),
        (
            _with(config=[{"source": "Evil", "opaque": {"driver": DRIVER, "parameters": {}}}]),
            "config[0].source: not FromClass or FromClaim",
        ),
        (
            _with(
                config=[{"source": "FromClaim", "requests": ["../x"], "opaque": {"driver": DRIVER}}]
            ),
            "config[0].requests[0]: not a valid request name",
        ),
        (_with(allocation={"devices": "x"}), "devices: not an object"),
    ],
)
def test_every_used_field_is_checked_before_use(obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(ClaimError) as caught:
        parse_allocation(obj, REF, DRIVER)
    assert caught.value.problem.startswith("malformed status.allocation.devices.")
    assert problem in caught.value.problem


def test_foreign_results_are_not_ours_to_judge() -> None:
    foreign = {"driver": "other.example.com", "device": "../../whatever", "request": "?"}
    allocation = parse_allocation(_with(results=[result("gpu-0"), foreign, "junk"]), REF, DRIVER)
    assert [r.device for r in allocation.results] == ["gpu-0"]


def test_a_uid_that_is_not_one_is_not_echoed() -> None:
    with pytest.raises(ClaimError, match="uid that is not a UUID for ns/c") as caught:
        parse_allocation(claim_object("c", "x\n" * 1000, [], namespace="ns"), REF, DRIVER)
    assert "\n" not in str(caught.value)


def test_a_claim_nested_too_deeply_to_decode_is_a_clear_error(tmp_path: Path) -> None:
    """Found by tests/fuzz: 10 KiB of opaque parameters nest ~5,000 levels deep, and the
    kubernetes client's JSON decoder gave up with a RecursionError ("internal error")."""
    api = FakeApi()
    nested = '{"k":[' * 2500 + "0" + "]}" * 2500
    body = json.dumps(claim_object("c", UID, [result("gpu-0")], namespace="ns"))
    api.add_raw_claim(
        "ns", "c", body.replace('"spec": {', f'"spec": {{"deep": {nested}, ', 1).encode()
    )
    with serve(api) as url:
        client = kube.api_client(write_kubeconfig(tmp_path / "kubeconfig", url))
        with pytest.raises(ClaimError) as caught:
            ApiClaimReader(client).read(REF, timeout=10)
    assert "nested too deeply to decode" in caught.value.problem
    assert "at most 16 levels" in caught.value.problem


@pytest.mark.parametrize("body", [b"{", b"<html>", b"\xff\xfe{}"])
def test_an_answer_that_is_not_json_is_a_clear_error(tmp_path: Path, body: bytes) -> None:
    """Found by tests/fuzz: the client's JSONDecodeError or UnicodeDecodeError reached the
    catch-all and the kubelet was told "internal error in the driver"."""
    api = FakeApi()
    api.add_raw_claim("ns", "c", body)
    with serve(api) as url:
        client = kube.api_client(write_kubeconfig(tmp_path / "kubeconfig", url))
        with pytest.raises(ClaimError) as caught:
            ApiClaimReader(client).read(REF, timeout=10)
    assert "the API server's answer is not JSON" in caught.value.problem


@pytest.mark.parametrize("allocation", [[{"devices": {}}], "allocated", 1, True])
def test_an_allocation_that_is_not_an_object_is_malformed(allocation: Any) -> None:
    """Found by tests/fuzz: `allocation.get` raised AttributeError, which reached the
    catch-all as "internal error in the driver"."""
    obj = claim_object("c", UID, None, namespace="ns")
    obj["status"]["allocation"] = allocation
    with pytest.raises(ClaimError, match=r"malformed status\.allocation: not an object"):
        parse_allocation(obj, REF, DRIVER)
