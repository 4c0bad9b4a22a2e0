"""What the CDI root and the checkpoint dir may hold before a (re)start: the records and
specs the driver wrote (this boot's and an earlier one's), damaged and forged records, and
whatever else a host may put there (foreign files, files with our prefix, temporaries,
symlinks out of the roots, FIFOs, directories where files should be).

Each state knows what the driver must make of it, decided here from the record format's
rules (written apart from the driver's reader): which claims are still prepared, and which
of them must have a spec file.
"""

from __future__ import annotations

import copy
import json
import os
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from dra_cdi_driver.checkpoint import FORMAT_VERSION, _checksum
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice
from tests.fuzz.claim_objects import json_values
from tests.fuzz.fence import FENCE_TOKEN, SPEC_PREFIX, Fence
from tests.fuzz.harness import DEVICES, KIND, NODE
from tests.fuzz.oracle import is_valid
from tests.fuzz.refs import hostile, labels, names, namespaces, uids

OTHER_BOOT = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Entry:
    """One thing planted in a root."""

    where: str  # "cdi" or "checkpoint"
    name: str
    kind: str  # "file", "dir", "symlink" or "fifo"
    data: bytes = b""  # a file's contents
    target: str = ""  # a symlink's target (FENCE_TOKEN: the fence's path)

    def plant(self, fence: Fence) -> None:
        path = (fence.cdi_root if self.where == "cdi" else fence.checkpoint_dir) / self.name
        if self.kind == "file":
            path.write_bytes(self.data)
        elif self.kind == "dir":
            path.mkdir()
            (path / "inside.json").write_bytes(self.data)
        elif self.kind == "symlink":
            path.symlink_to(fence.resolve(self.target))
        else:
            os.mkfifo(path)


@dataclass(frozen=True)
class DiskState:
    entries: tuple[Entry, ...]
    prepared: dict[str, Any]  # uid -> record["claim"] of the claims the driver must keep
    with_spec: frozenset[str]  # of those, the ones that must have a regular spec file
    rewritten: frozenset[str]  # of those, the ones whose spec the driver must write anew
    refused: frozenset[str]  # of those, the ones whose spec name links out of the CDI root
    uids: frozenset[str]  # every valid claim uid named in this state

    def plant(self, fence: Fence) -> None:
        for directory in (fence.cdi_root, fence.checkpoint_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for entry in self.entries:
            entry.plant(fence)


# --- records --------------------------------------------------------------------------------


@st.composite
def prepared_claims(draw: st.DrawFn) -> PreparedClaim:
    """A claim as the driver records it once prepared."""
    claim = ClaimRef(draw(namespaces), draw(names), draw(uids))
    devices = draw(st.lists(st.sampled_from(DEVICES), min_size=1, max_size=3, unique=True))
    prepared = tuple(
        PreparedDevice(
            request_names=(draw(labels),),
            pool=NODE,
            device=device,
            cdi_device_ids=(f"{KIND}={device}-{claim.uid}",),
            share_id=draw(st.one_of(st.none(), uids)),
        )
        for device in devices
    )
    spec = {
        "cdiVersion": "0.3.0",
        "kind": KIND,
        "devices": [
            {"name": f"{d}-{claim.uid}", "containerEdits": {"env": [f"GPU_DEVICE_{d[4:]}={d}"]}}
            for d in devices
        ],
    }
    return PreparedClaim(claim, prepared, spec)


def record(claim: Any, boot_id: Any, version: Any = FORMAT_VERSION) -> dict[str, Any]:
    body = {"version": version, "bootId": boot_id, "claim": claim}
    return {**body, "checksum": _checksum(body)}


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def loads_as_prepared(claim: Any) -> bool:
    """Whether a record's claim (checksum and boot good) is one the driver must load: the
    record format's types, and a claim reference the API server could have issued."""
    if not isinstance(claim, dict):
        return False
    ref = tuple(claim.get(k) for k in ("namespace", "name", "uid"))
    if not all(isinstance(v, str) for v in ref) or not is_valid(ref):  # type: ignore[arg-type]
        return False
    devices = claim.get("devices")
    if not isinstance(devices, list) or not all(_device_ok(d) for d in devices):
        return False
    return claim.get("cdiSpec") is None or isinstance(claim.get("cdiSpec"), dict)


def _device_ok(device: Any) -> bool:
    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    return (
        isinstance(device, dict)
        and strings(device.get("requestNames"))
        and isinstance(device.get("pool"), str)
        and isinstance(device.get("device"), str)
        and strings(device.get("cdiDeviceIds"))
        and (device.get("shareId") is None or isinstance(device.get("shareId"), str))
    )


# Wrong types a forger (root on the node) could write with a checksum that matches.
_FORGERIES: list[tuple[str, Any]] = [
    ("namespace", 5),
    ("uid", None),
    ("devices", {"gpu-0": {}}),
    ("devices", [1]),
    ("devices", "gpu-0"),
    ("cdiSpec", "spec"),
    ("cdiSpec", []),
    ("cdiSpec", 0),
    ("0.pool", 7),
    ("0.device", ["gpu-0"]),
    ("0.requestNames", "gpu"),
    ("0.requestNames", [1]),
    ("0.cdiDeviceIds", [None]),
    ("0.cdiDeviceIds", "id"),
    ("0.shareId", 5),
]


@st.composite
def forged(draw: st.DrawFn, claim: dict[str, Any]) -> dict[str, Any]:
    """`claim` with one field of a wrong type, or any field replaced by anything at all."""
    out = copy.deepcopy(claim)
    if draw(st.booleans()):
        key, value = draw(st.sampled_from(_FORGERIES))
        if key.startswith("0."):
            out["devices"][0][key[2:]] = value
        else:
            out[key] = value
        return out
    target = out if draw(st.booleans()) else draw(st.sampled_from(out["devices"]))
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(st.one_of(json_values, hostile))
    return out


# --- everything else --------------------------------------------------------------------------

_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="/\0")
_TARGETS = st.sampled_from(
    [
        f"{FENCE_TOKEN}/outside/sentinel",
        f"{FENCE_TOKEN}/outside/dir",
        "../../../../../../../outside/sentinel",
        "/nonexistent-fz-target",
        "inside.json",
    ]
)


def _junk_names(where: str) -> st.SearchStrategy[str]:
    prefix = SPEC_PREFIX if where == "cdi" else ""
    return st.one_of(
        st.sampled_from(["nvidia.yaml", "vendor.com_class-1.json", "README", "a.json"]),
        st.text(_NAME_CHARS, min_size=1, max_size=30),
        st.text(string.printable.replace("/", ""), min_size=1, max_size=20).map(
            lambda t: f"{prefix}{t}.json"
        ),
        uids.map(lambda u: f"{prefix}{u}.json"),  # an orphan: no record says it is prepared
        st.builds(
            lambda n, h: f".{n}.{h:08x}.tmp",  # what an interrupted write leaves
            st.sampled_from([f"{SPEC_PREFIX}x.json", "x.json"]),
            st.integers(0, 2**32 - 1),
        ),
    ).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)


@st.composite
def junk(draw: st.DrawFn, where: str, name: str | None = None) -> Entry:
    kind = draw(st.sampled_from(["file", "dir", "symlink", "fifo"]))
    return Entry(
        where,
        name if name is not None else draw(_junk_names(where)),
        kind,
        data=draw(st.binary(max_size=64)) if kind in ("file", "dir") else b"",
        target=draw(_TARGETS) if kind == "symlink" else "",
    )


_DAMAGE = [
    "truncated", "bytes", "not-an-object", "deep", "version", "checksum", "boot", "bad-uid",
    "renamed", "forged", "missing-key",
]  # fmt: skip


@st.composite
def damaged_record(draw: st.DrawFn, boot_id: str) -> tuple[Entry, str | None]:
    """A record the driver must drop, and the uid it is filed under (when valid)."""
    good = draw(prepared_claims()).to_json()
    uid = good["uid"]
    name = f"{uid}.json"
    how = draw(st.sampled_from(_DAMAGE))
    data: bytes
    if how == "truncated":
        whole = encode(record(good, boot_id))
        data = whole[: draw(st.integers(0, len(whole) - 1))]
    elif how == "bytes":
        data = draw(st.binary(max_size=200))
    elif how == "not-an-object":
        data = encode(draw(st.one_of(st.lists(json_values, max_size=3), st.text(), st.none())))
    elif how == "deep":
        depth = draw(st.integers(500, 100_000))
        data = b'{"version":' + b"[" * depth + b"]" * depth + b"}"
    elif how == "version":
        data = encode(record(good, boot_id, draw(json_values.filter(lambda v: v != 1))))
    elif how == "checksum":
        data = encode({**record(good, boot_id), "checksum": draw(st.text(max_size=70))})
    elif how == "boot":
        data = encode(record(good, draw(st.one_of(st.just(OTHER_BOOT), json_values))))
    elif how == "bad-uid":
        good["uid"] = draw(hostile.filter(lambda u: not is_valid(("a", "a", u))))
        data = encode(record(good, boot_id))
    elif how == "renamed":  # a good record, filed under another claim's uid
        data = encode(record(good, boot_id))
        uid = draw(uids.filter(lambda u: u != good["uid"]))
        name = f"{uid}.json"
    elif how == "forged":
        claim = draw(forged(good).filter(lambda c: not loads_as_prepared(c)))
        data = encode(record(claim, boot_id))
    else:
        body = record(good, boot_id)
        del body[draw(st.sampled_from(sorted(body)))]
        data = encode(body)
    return Entry("checkpoint", name, "file", data), uid


@st.composite
def disk_states(draw: st.DrawFn, boot_id: str) -> DiskState:
    planted: dict[tuple[str, str], Entry] = {}
    prepared: dict[str, Any] = {}
    with_spec: set[str] = set()
    rewritten: set[str] = set()
    refused: set[str] = set()
    named: set[str] = set()

    def add(entry: Entry) -> bool:
        return planted.setdefault((entry.where, entry.name), entry) is entry

    # Records the driver wrote: this boot's stay prepared, an earlier boot's go.
    for claim in draw(st.lists(prepared_claims(), max_size=3, unique_by=lambda c: c.claim.uid)):
        uid, this_boot = claim.claim.uid, draw(st.booleans())
        body = claim.to_json()
        if this_boot and draw(st.booleans()):  # a forged one, with a checksum that matches
            body = draw(forged(body))
        data = encode(record(body, boot_id if this_boot else OTHER_BOOT))
        add(Entry("checkpoint", f"{uid}.json", "file", data))
        named.add(uid)
        spec = draw(st.sampled_from(["none", "written", "junk"]))
        slot: Entry | None = None
        if spec == "written":
            slot = Entry("cdi", f"{SPEC_PREFIX}{uid}.json", "file", encode(body.get("cdiSpec")))
        elif spec == "junk":
            slot = draw(junk("cdi", f"{SPEC_PREFIX}{uid}.json"))
        if slot is not None:
            add(slot)
        if not (this_boot and loads_as_prepared(body) and body["uid"] == uid):
            continue
        prepared[uid] = body
        dangling = slot is not None and slot.kind == "symlink" and slot.target == "inside.json"
        if slot is not None and slot.kind == "symlink" and not dangling:
            refused.add(uid)
        if (slot is None or dangling) and body.get("cdiSpec") is not None:
            rewritten.add(uid)
        if uid in rewritten or (slot is not None and slot.kind == "file"):
            with_spec.add(uid)
    for _ in range(draw(st.integers(0, 3))):
        entry, filed_as = draw(damaged_record(boot_id))
        if add(entry) and filed_as is not None:
            named.add(filed_as)
    for where in ("cdi", "checkpoint"):
        for entry in draw(st.lists(junk(where), max_size=4)):
            add(entry)
    for entry in planted.values():  # the orphans' uids, to prepare and unprepare after
        stem = entry.name.removesuffix(".json").removeprefix(SPEC_PREFIX)
        if is_valid(("a", "a", stem)):
            named.add(stem)
    order = draw(st.permutations(list(planted.values())))
    return DiskState(
        tuple(order),
        prepared,
        frozenset(with_spec),
        frozenset(rewritten),
        frozenset(refused),
        frozenset(named),
    )
