"""What the atheris harnesses share: seeds, JSON input, and the libFuzzer command line.

Run a harness as a module, with libFuzzer's flags:

    python -m tests.fuzz.atheris.fuzz_allocation -runs=20000
    python -m tests.fuzz.atheris.fuzz_allocation -max_total_time=3600 .fuzz/corpus/allocation
    python -m tests.fuzz.atheris.fuzz_allocation .fuzz/crashes/crash-<sha1>   # re-run a finding

Its seeds are written to .fuzz/seeds/<name> and read after the corpus dirs given (new inputs
go to the first of those), or alone without any. Inputs that are JSON are mostly mutated as
JSON values (a field dropped, renamed, retyped, a value from elsewhere), so that the parsers
see well-formed documents with wrong contents, not only broken syntax. An exception the
harness does not expect is a finding: libFuzzer prints it, writes the input as
`<artifact_prefix>crash-<sha1>` (default: .fuzz/crashes/) and exits non-zero.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import atheris

ARTIFACTS = Path(".fuzz/crashes")
SEEDS = Path(".fuzz/seeds")

# Values a mutation puts in place of another: types and edge cases the parsers must refuse.
ODD: list[Any] = [None, True, False, 0, -1, 2**64, 1.5, -0.0, 1e308, "", "\0", "\ud800", "é"]
ODD += [" " * 5000, [], {}, [[]], {"": {}}]
_POOL: list[Any] = []  # values seen in earlier inputs, for splicing one into another


def json_input(data: bytes) -> tuple[bool, Any]:
    """(True, the JSON value) when `data` is JSON the harness itself can decode."""
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):
        return False, None


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in `value`, without recursion."""
    out: list[tuple[Any, Any]] = []
    pending = [value]
    while pending and len(out) < 2000:
        node = pending.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            out.append((node, key))
            if isinstance(node[key], dict | list):
                pending.append(node[key])
    return out


def _new_value(rng: random.Random, old: Any, slots: list[tuple[Any, Any]]) -> Any:
    roll = rng.randrange(6)
    if roll == 0 and isinstance(old, str):  # the string, byte-mutated
        return atheris.Mutate(old.encode(), len(old) + 16).decode(errors="surrogateescape")
    if roll == 1 and isinstance(old, int | float) and not isinstance(old, bool):
        return rng.choice([old + 1, old - 1, -old, old * 1024, str(old)])
    if roll == 2 and slots:
        container, key = rng.choice(slots)
        return copy.deepcopy(container[key])
    if roll == 3 and _POOL:
        return copy.deepcopy(rng.choice(_POOL))
    if roll == 4:
        return rng.choice([[old], {"a": old}, [old, old]])
    return copy.deepcopy(rng.choice(ODD))


def mutate_json(value: Any, rng: random.Random) -> Any:
    """`value` with one to three structural changes."""
    holder = [value]
    for _ in range(rng.randint(1, 3)):
        slots = _slots(holder)
        container, key = rng.choice(slots)
        roll = rng.randrange(4)
        if roll == 0 and container is not holder:
            del container[key]
        elif roll == 1 and isinstance(container, dict):  # rename: a key from elsewhere, or odd
            strings = [k for c, k in slots if isinstance(k, str)] + ["", "X", "\ud800"]
            container[rng.choice(strings)] = container.pop(key)
        elif roll == 2 and isinstance(container, list) and container is not holder:
            container.insert(key, _new_value(rng, container[key], slots))
        else:
            container[key] = _new_value(rng, container[key], slots)
    return holder[0]


def _mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    ok, value = json_input(data)
    if ok and rng.random() < 0.8:
        try:  # deepcopy and dumps recurse; dumps refuses ints of more than 4300 digits
            container, key = rng.choice(_slots([value]))
            if len(_POOL) < 512:
                _POOL.append(copy.deepcopy(container[key]))
            else:
                _POOL[rng.randrange(len(_POOL))] = copy.deepcopy(container[key])
            out = dumps(mutate_json(value, rng))
        except (ValueError, RecursionError):
            out = b""
        if out and len(out) <= max_size:
            return out
    return bytes(atheris.Mutate(data, max_size))


def scratch_dir(name: str) -> Path:
    """An empty dir of this process for files the harness writes. libFuzzer ends the process
    without atexit handlers, so the dirs of processes that are gone are removed here."""
    for old in Path(tempfile.gettempdir()).glob(f"atheris-{name}-*"):
        try:
            os.kill(int(old.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, OSError):
            continue
    path = Path(tempfile.gettempdir()) / f"atheris-{name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def run(name: str, test_one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """Fuzz `test_one_input` with the command line's libFuzzer flags and corpus dirs; given
    files instead (a crash-<sha1>), run just those."""
    argv = list(sys.argv)
    if not any(a.startswith("-artifact_prefix=") for a in argv[1:]):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        argv.append(f"-artifact_prefix={ARTIFACTS}/")
    if all(Path(a).is_dir() for a in argv[1:] if not a.startswith("-")):
        corpus = SEEDS / name  # rewritten in place, never removed: another run may read it
        corpus.mkdir(parents=True, exist_ok=True)
        names = set()
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(seed)
            names.add(f"seed-{i}")
        for stale in corpus.iterdir():
            if stale.name not in names:
                stale.unlink(missing_ok=True)
        argv.append(str(corpus))
    atheris.Setup(argv, test_one_input, custom_mutator=_mutator)
    atheris.Fuzz()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
