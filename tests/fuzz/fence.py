"""A fenced tree of dirs for one driver, and what the fuzz tests check on disk.

The tree (under a short /tmp dir, for the 105-byte socket limit):

    <fence>/                      everything the driver may NOT touch, snapshotted...
      kubeconfig  outside/{sentinel, dir/inner}  fzvictim*   (and fzvictim* at every level)
      a/b/c/d/e/k/                the kubelet dir, six levels down so that a `../` chain of
        driver.log                up to 8 steps from either root still lands in the fence
        plugins_registry/<driver>-reg.sock
        plugins/<driver>/         ...except the two roots: the plugin dir
          checkpoint/ dra.sock
        cdi/                      and the CDI root

Planted symlinks point into <fence>/outside, so their targets are in the snapshot as well.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.fuzz.oracle import canonical_uid
from tests.integration.conftest import DRIVER

SPEC_PREFIX = f"{DRIVER}_gpu-"
FENCE_TOKEN = "@FENCE@"  # in a generated string: the fence's absolute path
VICTIM = "fzvictim"  # every file a path traversal would aim at is named so
_DEPTH = ("a", "b", "c", "d", "e", "k")
# The names RootDir.write gives its temporary files: "." + a plain name + 8 hex + ".tmp".
_TEMPORARY = re.compile(r"\.[A-Za-z0-9_][A-Za-z0-9_.-]*\.[0-9a-f]{8}\.tmp")


class Fence:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.baseline: dict[str, tuple[Any, ...]] = {}

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Fence({self.path})"

    @classmethod
    def create(cls) -> Fence:
        fence = cls(Path(tempfile.mkdtemp(prefix="dra-fz-", dir="/tmp")))
        fence.root.mkdir(parents=True)
        _plant_sentinels(fence.path, fence.root)
        return fence

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    @property
    def root(self) -> Path:
        """The kubelet dir."""
        return self.path.joinpath(*_DEPTH)

    @property
    def cdi_root(self) -> Path:
        return self.root / "cdi"

    @property
    def plugin_dir(self) -> Path:
        return self.root / "plugins" / DRIVER

    @property
    def checkpoint_dir(self) -> Path:
        return self.plugin_dir / "checkpoint"

    @property
    def log_path(self) -> Path:
        return self.root / "driver.log"

    def spec_path(self, uid: str) -> Path:
        return self.cdi_root / f"{SPEC_PREFIX}{uid}.json"

    def record_path(self, uid: str) -> Path:
        return self.checkpoint_dir / f"{uid}.json"

    def resolve(self, text: str) -> str:
        return text.replace(FENCE_TOKEN, str(self.path))

    # --- what is in the two roots ------------------------------------------------------

    def spec_uids(self) -> set[str]:
        """Claims with a spec: regular files named `<prefix><uid>.json`."""
        return _regular_uids(self.cdi_root, SPEC_PREFIX)

    def record_uids(self) -> set[str]:
        return _regular_uids(self.checkpoint_dir, "")

    def temporaries(self) -> list[str]:
        """Files left by an interrupted write (dirs of such a name are not the driver's)."""
        return [
            p.name
            for d in (self.cdi_root, self.checkpoint_dir)
            for p in entries(d)
            if _TEMPORARY.fullmatch(p.name) and not (p.is_dir() and not p.is_symlink())
        ]

    def wipe_roots(self) -> bool:
        """Remove everything in the two roots but the sockets; whether there was anything."""
        found = [e for d in (self.cdi_root, self.checkpoint_dir) for e in entries(d)]
        for entry in found:
            _remove(entry)
        return bool(found)

    # --- everything else ---------------------------------------------------------------

    def outside(self) -> dict[str, tuple[Any, ...]]:
        """Everything under the fence but the two roots and the driver's log."""
        skip = {self.cdi_root, self.plugin_dir, self.log_path}
        return {str(p.relative_to(self.path)): _describe(p) for p in _walk(self.path, skip)}

    def take_baseline(self) -> None:
        self.baseline = self.outside()

    def assert_outside_unchanged(self) -> None:
        now = self.outside()
        changed = sorted(
            k for k in now.keys() | self.baseline.keys() if now.get(k) != self.baseline.get(k)
        )
        assert changed == [], f"files outside the two roots changed: {changed}"

    def assert_state(self, prepared: Iterable[str]) -> None:
        """The CDI root holds exactly the specs of `prepared`, one record each, no leftovers."""
        expected = set(prepared)
        assert self.spec_uids() == expected, "the CDI root does not match the prepared claims"
        assert self.record_uids() == expected, "the checkpoint does not match the prepared claims"
        assert self.temporaries() == []


def assert_nothing_escaped() -> None:
    """A traversal that escaped a fence would have landed next to it, or at /."""
    escaped = [p for d in (Path("/tmp"), Path("/")) for p in d.glob(f"{VICTIM}*")]
    assert escaped == [], f"files written outside the fence: {escaped}"


def _plant_sentinels(fence: Path, root: Path) -> None:
    outside = fence / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "sentinel").write_text("sentinel: must never change\n")
    (outside / "dir" / "inner").write_text("inner sentinel\n")
    level = fence
    for part in (*_DEPTH, "plugins", ""):
        level.mkdir(parents=True, exist_ok=True)
        for name in (VICTIM, f"{VICTIM}.json"):
            (level / name).write_text(f"victim at {level}\n")
        level = level / part


def entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _regular_uids(directory: Path, prefix: str) -> set[str]:
    uids = set()
    for path in entries(directory):
        name = path.name
        regular = path.is_file() and not path.is_symlink()
        if regular and name.startswith(prefix) and name.endswith(".json"):
            uid = name[len(prefix) : -len(".json")]
            if canonical_uid(uid):
                uids.add(uid)
    return uids


def _remove(path: Path) -> None:
    if path.is_socket():
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _walk(top: Path, skip: set[Path]) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if base / d not in skip]
        for name in dirnames + filenames:
            if base / name not in skip:
                yield base / name


def _describe(path: Path) -> tuple[Any, ...]:
    """What would show a change: kind, mode and, for a file, contents and mtime."""
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ("symlink", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return ("file", mode, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    if stat.S_ISDIR(st.st_mode):
        return ("dir", mode)  # its mtime moves when the registration socket is re-created
    if stat.S_ISSOCK(st.st_mode):
        return ("socket",)
    return ("other", stat.S_IFMT(st.st_mode), mode)
