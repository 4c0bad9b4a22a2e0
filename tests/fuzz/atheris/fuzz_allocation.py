"""Fuzz `claims.parse_allocation`: a ResourceClaim, as JSON from the API server, to the
allocation results and opaque config entries that are this driver's.

Input bytes that are not a JSON object are skipped (the API client hands over objects
only). Allowed outcomes: an Allocation that keeps only this driver's results, within the
API's limits, or a ClaimError. Any other exception is a finding.
"""

from __future__ import annotations

from typing import Any

import atheris

from tests.fuzz.atheris.common import dumps, json_input, run

with atheris.instrument_imports(include=["dra_cdi_driver"]):
    from dra_cdi_driver.kubeapi.claims import parse_allocation
    from dra_cdi_driver.limits import MAX_CONFIG_ENTRIES, MAX_RESULTS_PER_CLAIM
    from dra_cdi_driver.model import ClaimError, ClaimRef

DRIVER = "gpu.cdi.example.com"
UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
CLAIM = ClaimRef("ns", "c", UID)
SHARE = "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e"


def claim(results: Any, config: Any = None, uid: str = UID) -> dict[str, Any]:
    devices = {"results": results, "config": config or []}
    return {
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "ns", "uid": uid},
        "status": {"allocation": {"devices": devices, "nodeSelector": {}}},
    }


def result(device: str, request: str = "gpu", driver: str = DRIVER, **more: Any) -> Any:
    return {"request": request, "driver": driver, "pool": "node-1", "device": device, **more}


PARAMETERS = {"apiVersion": f"{DRIVER}/v1alpha1", "kind": "GpuConfig", "env": {"A": "1"}}
SEEDS = [
    claim([result("gpu-0", "a/sub"), result("x", "b", driver="other.example.com")]),
    claim(
        [result("gpu-1", shareID=SHARE, adminAccess=True, consumedCapacity={"memory": "4Gi"})],
        [
            {"source": "FromClass", "opaque": {"driver": "other.example.com", "parameters": {}}},
            {"source": "FromClaim", "requests": ["a"], "opaque": {"driver": DRIVER}},
            {"source": "FromClass", "opaque": {"driver": DRIVER, "parameters": PARAMETERS}},
        ],
    ),
    claim([result("gpu-0")], uid=SHARE),
    claim([{"driver": DRIVER, "request": "a", "pool": "p"}]),
    claim([result("../../x")], [{"source": "Other", "opaque": {"driver": DRIVER}}]),
    claim({"a": 1}, [{"opaque": []}]),
    {"metadata": {"uid": UID}, "status": {"allocation": []}},
]


def test_one_input(data: bytes) -> None:
    ok, obj = json_input(data)
    if not ok or not isinstance(obj, dict):
        return
    try:
        allocation = parse_allocation(obj, CLAIM, DRIVER)
    except ClaimError:
        return
    assert len(allocation.results) <= MAX_RESULTS_PER_CLAIM
    assert len(allocation.config) <= MAX_CONFIG_ENTRIES
    assert all(r.driver == DRIVER for r in allocation.results)


if __name__ == "__main__":
    run("allocation", test_one_input, [dumps(s) for s in SEEDS])
