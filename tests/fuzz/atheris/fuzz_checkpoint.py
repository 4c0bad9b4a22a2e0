"""Fuzz `Checkpoint.get`: the bytes of one claim's record file, read back as at start-up
and on every Prepare.

The input is written as the record of claim UID in a scratch dir. An input that is a JSON
object without "checksum" gets the right one added (anyone who can write the dir can compute
it), so that mutations reach the checks behind it. Allowed outcomes: None, the file removed;
or the claim UID's record, which goes into the kubelet's answer (v1 protobuf) and whose CDI
spec can be rewritten (as the start-up sweep does). A record on disk is untrusted: any
exception, or a record taken that cannot be used, is a finding.
"""

from __future__ import annotations

import logging
from typing import Any

import atheris

from tests.fuzz.atheris.common import dumps, json_input, run, scratch_dir

with atheris.instrument_imports(include=["dra_cdi_driver"]):
    from dra_cdi_driver.cdi import SpecStore
    from dra_cdi_driver.checkpoint import Checkpoint, _checksum
    from dra_cdi_driver.kubelet.pb import kubelet_dra_v1_pb2 as pb

logging.disable(logging.CRITICAL)  # every record dropped is logged as an error
UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
BOOT = "boot-a"
DIR = scratch_dir("checkpoint")
CHECKPOINT = Checkpoint(DIR, BOOT)
SPECS = SpecStore(DIR / "cdi", "gpu.cdi.example.com/gpu")
SPECS.root.mkdir()


def record(claim: Any, checksum: bool = False, **fields: Any) -> dict[str, Any]:
    body = {"version": 1, "bootId": BOOT, "claim": claim, **fields}
    return {**body, "checksum": _checksum(body)} if checksum else body


DEVICE: dict[str, Any] = {"requestNames": ["gpu"], "pool": "node-1", "device": "gpu-0"}
DEVICE |= {"cdiDeviceIds": [f"gpu.cdi.example.com/gpu=gpu-0-{UID}"], "shareId": None}
CLAIM: dict[str, Any] = {"namespace": "default", "name": "c", "uid": UID, "devices": [DEVICE]}
CLAIM["cdiSpec"] = {"cdiVersion": "0.3.0", "kind": "gpu.cdi.example.com/gpu", "devices": []}
SEEDS = [
    dumps(record(CLAIM)),
    dumps(record(CLAIM, checksum=True)),
    dumps({**record(CLAIM, checksum=True), "bootId": "boot-b"}),  # checksum mismatch
    dumps(record({**CLAIM, "devices": [], "cdiSpec": None}, bootId="boot-b")),
    dumps(record({**CLAIM, "uid": "0a0a0a0a-0b0b-4c0c-8d0d-0e0e0e0e0e0e"})),
    dumps(record({**CLAIM, "devices": [{**DEVICE, "pool": 7}]}, version=2)),
    dumps(record(CLAIM))[:40],
    b'{"version":' + b"[" * 1500 + b"]" * 1500 + b"}",  # deeper than json.loads recurses
]


def test_one_input(data: bytes) -> None:
    ok, value = json_input(data)
    if ok and isinstance(value, dict) and "checksum" not in value:
        body = {k: value.get(k) for k in ("version", "bootId", "claim")}
        data = dumps({**value, "checksum": _checksum(body)})
    (DIR / f"{UID}.json").write_bytes(data)
    prepared = CHECKPOINT.get(UID)
    if prepared is None:
        assert not CHECKPOINT.has(UID), "a record that is not taken stays"
        return
    assert prepared.claim.uid == UID
    answer = pb.NodePrepareResourcesResponse()
    for device in prepared.devices:
        answer.claims[UID].devices.add(
            request_names=device.request_names,
            pool_name=device.pool,
            device_name=device.device,
            cdi_device_ids=device.cdi_device_ids,
            share_id=device.share_id or "",
        )
    answer.SerializeToString()
    if prepared.cdi_spec is not None:
        SPECS.write(UID, prepared.cdi_spec)


if __name__ == "__main__":
    run("checkpoint", test_one_input, SEEDS)
