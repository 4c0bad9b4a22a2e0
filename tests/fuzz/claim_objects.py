"""ResourceClaims for the fake API server: well-formed ones with the answer they must get,
hostile ones that must fail, and mutated ones (anything may happen, but safely).
"""

from __future__ import annotations

import copy
import json
import re
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from dra_cdi_driver.config import API_VERSION, KIND, RESERVED_ENV_PREFIXES
from dra_cdi_driver.limits import MAX_CONFIG_ENTRIES, MAX_OPAQUE_DEPTH, MAX_RESULTS_PER_CLAIM
from tests.fakeapi import claim_object
from tests.fuzz.harness import DEVICES, DRIVER, NODE
from tests.fuzz.oracle import is_dns_label
from tests.fuzz.refs import labels, names, namespaces, uids

FOREIGN = "other.example.com"


@dataclass(frozen=True)
class Served:
    """A claim the fake API serves, and what preparing it must answer when well-formed."""

    namespace: str
    name: str
    uid: str
    body: Any  # what the API returns for it (a claim object, or anything at all)
    ok: bool | None  # prepare must succeed (True), fail (False), or either (None)
    requests: dict[tuple[str, str | None], list[str]]  # (device, shareID) -> request names

    @property
    def ref(self) -> tuple[str, str, str]:
        return (self.namespace, self.name, self.uid)

    @property
    def devices(self) -> set[str]:
        return {device for device, _ in self.requests}


requests = st.one_of(labels, st.tuples(labels, labels).map("/".join))
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


_ENV_FIRST = string.ascii_letters + "_"
env_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ENV_FIRST),
    st.text(_ENV_FIRST + string.digits, max_size=16),
).filter(lambda n: not n.startswith(RESERVED_ENV_PREFIXES))


gpu_configs = st.builds(
    lambda sharing, env: {
        "apiVersion": API_VERSION,
        "kind": KIND,
        **({"sharing": sharing} if sharing else {}),
        **({"env": env} if env is not None else {}),
    },
    st.one_of(
        st.none(),
        st.just({"strategy": "Exclusive"}),
        st.builds(
            lambda s: {"strategy": "TimeSlicing", **({"timeSlice": s} if s else {})},
            st.sampled_from([None, "Default", "Short", "Medium", "Long"]),
        ),
    ),
    st.one_of(
        st.none(),
        st.dictionaries(
            env_names,
            st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40),
            max_size=6,
        ),
    ),
)


@st.composite
def results(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1..8 results of ours (devices of this node) among some of other drivers."""
    ours = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "request": requests,
                    "driver": st.just(DRIVER),
                    "pool": st.just(NODE),
                    "device": st.sampled_from(DEVICES),
                },
                optional={"adminAccess": st.booleans(), "shareID": uids},
            ),
            min_size=1,
            max_size=8,
        )
    )
    theirs = draw(
        st.lists(
            st.fixed_dictionaries(
                {"request": requests, "driver": st.just(FOREIGN), "pool": labels, "device": labels}
            ),
            max_size=3,
        )
    )
    mixed = ours + theirs
    order = draw(st.permutations(range(len(mixed))))
    return [mixed[i] for i in order]


@st.composite
def configs(draw: st.DrawFn, request_names: list[str]) -> list[dict[str, Any]]:
    scope = st.lists(st.sampled_from(request_names), max_size=2) if request_names else st.just([])
    ours = st.fixed_dictionaries(
        {
            "source": st.sampled_from(["FromClass", "FromClaim"]),
            "requests": scope,
            "opaque": st.fixed_dictionaries({"driver": st.just(DRIVER), "parameters": gpu_configs}),
        }
    )
    theirs = st.fixed_dictionaries(
        {
            "source": st.sampled_from(["FromClass", "FromClaim"]),
            "requests": st.just([]),
            "opaque": st.fixed_dictionaries(
                {"driver": st.just(FOREIGN), "parameters": json_values}
            ),
        }
    )
    return draw(st.lists(st.one_of(ours, theirs), max_size=4))


def expected_requests(
    claim_results: list[dict[str, Any]],
) -> dict[tuple[str, str | None], list[str]]:
    """What the kubelet must get back: per (device, shareID), the parent request names."""
    out: dict[tuple[str, str | None], list[str]] = {}
    for r in claim_results:
        if r["driver"] != DRIVER:
            continue
        names = out.setdefault((r["device"], r.get("shareID")), [])
        parent = r["request"].split("/", 1)[0]
        if parent not in names:
            names.append(parent)
    return out


@st.composite
def well_formed(draw: st.DrawFn, namespace: st.SearchStrategy[str] = namespaces) -> Served:
    ns, name, uid = draw(namespace), draw(names), draw(uids)
    claim_results = draw(results())
    request_names = sorted({r["request"] for r in claim_results if r["driver"] == DRIVER})
    body = claim_object(name, uid, claim_results, namespace=ns, config=draw(configs(request_names)))
    return Served(ns, name, uid, body, True, expected_requests(claim_results))


@st.composite
def foreign_only(draw: st.DrawFn) -> Served:
    """Allocated, but nothing of ours: success with no device, and no spec."""
    ns, name, uid = draw(namespaces), draw(names), draw(uids)
    theirs = [{"request": "r", "driver": FOREIGN, "pool": "p", "device": "d"}]
    return Served(ns, name, uid, claim_object(name, uid, theirs, namespace=ns), True, {})


def deep(depth: int) -> str:
    """A stand-in for a document nested `depth` levels deep; `encode` writes it out as text
    (a real one would take json.dumps, deepcopy and hypothesis past the recursion limit)."""
    return f"@DEEP:{depth}@"


_DEEP = re.compile(r'"@DEEP:(\d+)@"')


def _deep_text(match: re.Match[str]) -> str:
    depth = int(match[1])  # levels of objects and lists, alternating, around a 0
    pairs, odd = divmod(depth, 2)
    return '{"k":[' * pairs + '{"k":' * odd + "0" + "}" * odd + "]}" * pairs


def encode(body: Any) -> bytes:
    """The bytes the fake API sends for `body` (bytes as they are)."""
    if isinstance(body, bytes):
        return body
    return _DEEP.sub(_deep_text, json.dumps(body)).encode()


_BAD_UIDS = st.one_of(
    uids, st.just(None), st.just(""), json_values.filter(lambda v: not isinstance(v, str))
)


@st.composite
def hostile(draw: st.DrawFn) -> Served:
    """A claim that must fail, each with the reason the driver must find."""
    good = draw(well_formed())
    body = copy.deepcopy(good.body)
    devices = body["status"]["allocation"]["devices"]
    ours = [r for r in devices["results"] if r["driver"] == DRIVER]
    kind = draw(
        st.sampled_from(
            [
                "uid-mismatch",
                "no-metadata",
                "unallocated",
                "foreign-pool",
                "unknown-device",
                "too-many-results",
                "too-many-configs",
                "deep-config",
                "huge-config",
                "config-of-any-shape",
                "bad-request-name",
                "not-an-object",
                "not-json",
            ]
        )
    )
    if kind == "uid-mismatch":
        body["metadata"]["uid"] = draw(_BAD_UIDS.filter(lambda u: u != good.uid))
    elif kind == "no-metadata":
        body["metadata"] = draw(st.sampled_from([None, [], "metadata", {}]))
    elif kind == "unallocated":
        body["status"] = draw(st.sampled_from([{}, {"allocation": None}, {"allocation": {}}, None]))
    elif kind == "foreign-pool":
        draw(st.sampled_from(ours))["pool"] = draw(labels.filter(lambda p: p != NODE))
    elif kind == "unknown-device":
        draw(st.sampled_from(ours))["device"] = draw(labels.filter(lambda d: d not in DEVICES))
    elif kind == "too-many-results":
        extra = MAX_RESULTS_PER_CLAIM + 1 - len(devices["results"])
        devices["results"] += [copy.deepcopy(ours[0]) for _ in range(max(0, extra))]
    elif kind == "too-many-configs":
        entry = {
            "source": "FromClaim",
            "requests": [],
            "opaque": {"driver": FOREIGN, "parameters": {}},
        }
        devices["config"] = [entry] * (MAX_CONFIG_ENTRIES + 1)
    elif kind == "bad-request-name":
        draw(st.sampled_from(ours))["request"] = draw(
            st.one_of(st.text(max_size=10), json_values).filter(
                lambda r: not (isinstance(r, str) and _plain_request(r))
            )
        )
    elif kind == "not-an-object":
        body = draw(st.one_of(st.lists(json_values, max_size=3), json_scalars))
    elif kind == "not-json":
        body = draw(st.sampled_from([b"", b"{", b"\xff\xfe{}", b"<html>", encode(good.body)[:-1]]))
    else:
        parameters: Any
        if kind == "deep-config":
            parameters = deep(draw(st.integers(MAX_OPAQUE_DEPTH + 1, 5000)))
        elif kind == "huge-config":
            parameters = {
                **draw(gpu_configs),
                "env": {"BIG": "x" * draw(st.integers(11_000, 200_000))},
            }
        else:
            parameters = draw(json_values.filter(lambda v: not _looks_like_gpu_config(v)))
        devices.setdefault("config", []).append(
            {
                "source": "FromClaim",
                "requests": [],
                "opaque": {"driver": DRIVER, "parameters": parameters},
            }
        )
    return Served(good.namespace, good.name, good.uid, body, False, {})


def _plain_request(value: str) -> bool:
    parts = value.split("/")
    return 1 <= len(parts) <= 2 and all(is_dns_label(p) for p in parts)


def _looks_like_gpu_config(value: Any) -> bool:
    return isinstance(value, dict) and value.get("apiVersion") == API_VERSION


# --- mutations: wrong types anywhere, missing fields ----------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*path, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Served:
    """A well-formed claim with 1-3 of its fields deleted or replaced by anything."""
    good = draw(st.one_of(well_formed(), foreign_only()))
    body = copy.deepcopy(good.body)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(["delete", "replace", "wrap", "nest"]))
        if how == "delete":
            del parent[path[-1]]
        elif how == "replace":
            parent[path[-1]] = draw(json_values)
        elif how == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        else:
            parent[path[-1]] = deep(draw(st.integers(2, 5000)))
    return Served(good.namespace, good.name, good.uid, body, None, {})
