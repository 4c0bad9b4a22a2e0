"""What a driver that started on a planted disk state (disk_states.py) must have made of it,
and must answer for its claims: the same checks for the real process and the in-process
start-up sweep."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.fuzz.disk_states import DiskState
from tests.fuzz.fence import Fence
from tests.fuzz.oracle import Ref

INTERNAL = "internal error in the driver"


def check_swept(fence: Fence, state: DiskState, also: frozenset[str] = frozenset()) -> None:
    """Only this boot's good records are left, each with its spec; nothing else changed.
    `also`: claims prepared through the driver before the state was planted."""
    fence.assert_outside_unchanged()
    records = fence.record_uids()
    assert records == state.prepared.keys() | also, "the checkpoint kept the wrong records"
    assert fence.spec_uids() == state.with_spec | also, "the CDI root kept the wrong specs"
    assert fence.temporaries() == []
    for uid in state.rewritten:
        written = json.loads(fence.spec_path(uid).read_bytes())
        assert written == state.prepared[uid]["cdiSpec"], f"spec of {uid} is not the record's"


def claims_to_prepare(state: DiskState) -> list[Ref]:
    """What a kubelet asks for after the restart: the prepared claims, and every other
    uid the state names (which the API server does not know)."""
    prepared = [(c["namespace"], c["name"], uid) for uid, c in state.prepared.items()]
    return prepared + [
        ("default", "gone", uid) for uid in sorted(state.uids - state.prepared.keys())
    ]


def check_prepare_answers(response: Any, state: DiskState, version: str) -> None:
    for uid, answer in response.claims.items():
        assert INTERNAL not in answer.error, answer.error
        if uid in state.refused:  # its spec name links out of the root: nothing is written
            assert "refusing" in answer.error, answer.error
        elif uid in state.prepared:
            assert answer.error == "", answer.error
            assert _answered(answer, version) == _recorded(state.prepared[uid], version)
        else:
            assert answer.error != "", f"{uid}: prepared from a record the driver dropped"


def _answered(answer: Any, version: str) -> list[tuple[Any, ...]]:
    return sorted(
        (
            d.device_name,
            d.pool_name,
            tuple(d.request_names),
            tuple(d.cdi_device_ids),
            d.share_id if version == "v1" else "",
        )
        for d in answer.devices
    )


def _recorded(claim: dict[str, Any], version: str) -> list[tuple[Any, ...]]:
    return sorted(
        (
            d["device"],
            d["pool"],
            tuple(d["requestNames"]),
            tuple(d["cdiDeviceIds"]),
            (d.get("shareId") or "") if version == "v1" else "",
        )
        for d in claim["devices"]
    )


def unremovable(fence: Fence, uid: str) -> bool:
    """Whether the spec or the record of `uid` is something unprepare must refuse to remove:
    a directory, or a symlink that leads out of its root."""
    for path, root in (
        (fence.spec_path(uid), fence.cdi_root),
        (fence.record_path(uid), fence.checkpoint_dir),
    ):
        if path.is_symlink():
            if os.path.dirname(os.path.realpath(path)) != os.path.realpath(root):
                return True
        elif path.is_dir():
            return True
    return False


def check_unprepare_answers(response: Any, fence: Fence, stuck: set[str]) -> None:
    for uid, answer in response.claims.items():
        assert INTERNAL not in answer.error, answer.error
        if uid not in stuck:
            assert answer.error == "", answer.error
    assert fence.spec_uids() <= stuck and fence.record_uids() <= stuck
