"""Claim references (namespace, name, uid) of any shape: valid ones, near misses, and
hostile ones (path traversal, NUL, newlines, unicode look-alikes, very long, empty)."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from tests.fuzz.fence import FENCE_TOKEN, VICTIM
from tests.fuzz.oracle import Ref

# Built from characters, not from_regex: the regex strategy costs more than a gRPC call.
_ALNUM = string.ascii_lowercase + string.digits
labels = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_ALNUM),
    st.text(_ALNUM + "-", max_size=12),
    st.sampled_from(["", *_ALNUM]),
).map(lambda label: label if label[-1] != "-" else label + "0")
namespaces = st.one_of(labels, st.just("n" * 63), st.just("kube-system"))
names = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.just(".".join(["n" * 63] * 3 + ["n" * 61])),  # 253 characters, the longest
)
uids = st.uuids().map(str)

_TARGETS = st.sampled_from([VICTIM, f"{VICTIM}.json", "outside/sentinel", "outside/dir"])
_traversals = st.builds(
    lambda n, target: "../" * n + target, st.integers(min_value=1, max_value=8), _TARGETS
)


def _around_uid(uid: str) -> st.SearchStrategy[str]:
    """Near misses of a valid uid: what a lax check would let through."""
    return st.sampled_from(
        [
            uid.upper(),
            "{" + uid + "}",
            uid.replace("-", ""),
            "urn:uuid:" + uid,
            uid + "\n",
            " " + uid,
            uid + "\0",
            uid[:8] + "\0" + uid[9:],
            uid + "/../../" + VICTIM,
            uid[:-1],
            uid + "0",
            uid.replace("-", "\u2010"),  # a unicode hyphen
            uid.translate(
                str.maketrans(
                    "0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
                )
            ),
        ]
    )


hostile = st.one_of(
    st.just(""),
    st.sampled_from([".", "..", "/", "//", "-", "a..b", "-a", "a-", "A", "a_b", "a/b", "a b"]),
    _traversals,
    _TARGETS.map(lambda t: f"{FENCE_TOKEN}/{t}"),
    st.just("/" + VICTIM),
    st.text(max_size=24),
    st.text(st.characters(codec="utf-8"), max_size=24),
    st.text(st.characters(min_codepoint=0, max_codepoint=31), min_size=1, max_size=8),
    st.sampled_from(
        ["default\nlevel=error msg=forged", "d\u0435fault", "\ufeffdefault", "\U0001f600"]
    ),
    st.integers(min_value=64, max_value=70_000).map(lambda n: "a" * n),
    st.integers(min_value=254, max_value=300).map(lambda n: "a" * n),
    uids.flatmap(_around_uid),
)


@st.composite
def refs(draw: st.DrawFn) -> Ref:
    """Any reference: each field valid or hostile, independently."""
    return (
        draw(st.one_of(namespaces, hostile)),
        draw(st.one_of(names, hostile)),
        draw(st.one_of(uids, hostile)),
    )


def resolve(ref: Ref, fence: str) -> Ref:
    """A generated reference with the fence's path put in for its token."""
    namespace, name, uid = ref
    return (
        namespace.replace(FENCE_TOKEN, fence),
        name.replace(FENCE_TOKEN, fence),
        uid.replace(FENCE_TOKEN, fence),
    )
