"""What the kubelet must be answered, given what the fuzz test knows of each claim."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dra_cdi_driver.limits import MAX_CLAIMS_PER_CALL
from tests.fuzz.harness import KIND, NODE, Ref

Devices = Mapping[tuple[str, str | None], list[str]]  # (device, shareID) -> request names


def assert_prepared(answer: Any, uid: str, devices: Devices, version: str) -> None:
    """A successful answer that names exactly `devices`, each with its CDI id."""
    assert answer.error == "", answer.error
    got = []
    for device in answer.devices:
        share_id = (device.share_id or None) if version == "v1" else None
        got.append((device.device_name, share_id, tuple(device.request_names)))
        assert device.pool_name == NODE
        # <device>[-<share id>]-<claim uid>: no two claims or shares define the same name
        cdi_id = device.cdi_device_ids[0]
        assert cdi_id.startswith(f"{KIND}={device.device_name}-") and cdi_id.endswith(uid)
    # v1beta1 has no share ID: a device shared twice is two entries that look alike.
    want = [
        (device, share_id if version == "v1" else None, tuple(requests))
        for (device, share_id), requests in devices.items()
    ]
    assert sorted(got, key=repr) == sorted(want, key=repr), f"claim {uid}: got {got}, want {want}"


def too_many(refs: Sequence[Ref]) -> bool:
    return len(refs) > MAX_CLAIMS_PER_CALL


def check_refused_call(response: Any, refs: Sequence[Ref]) -> None:
    for answer in response.claims.values():
        assert f"more than the {MAX_CLAIMS_PER_CALL}" in answer.error, answer.error


def outcomes_by_uid(refs: Sequence[Ref], ok: Mapping[Ref, bool]) -> dict[str, bool | None]:
    """Per uid: True or False when every reference of it must end so, else None."""
    seen: dict[str, set[bool]] = {}
    for ref in refs:
        seen.setdefault(ref[2], set()).add(ok[ref])
    return {uid: next(iter(s)) if len(s) == 1 else None for uid, s in seen.items()}


def check_malformed(answer: Any, ref: Ref) -> None:
    """The error the driver gives a reference the API server would never have issued."""
    assert "malformed request" in answer.error, answer.error
    assert "\n" not in answer.error  # hostile text is quoted, never passed on raw


def fresh_uid(n: int) -> str:
    return str(uuid.UUID(int=n % (1 << 128)))
