"""The gate to the driver's directories: plain names only, nothing resolves outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dra_cdi_driver.fsutil import RootDir, UnsafePathError


@pytest.fixture
def root(tmp_path: Path) -> RootDir:
    (tmp_path / "root").mkdir()
    return RootDir(tmp_path / "root")


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x.json", "a/b.json", "/etc/passwd", ".hidden.json", "-rf", "a\nb"]
)
def test_only_plain_names_are_taken(root: RootDir, name: str) -> None:
    for touch in (
        lambda: root.write(name, b"x"),
        lambda: root.read(name, 10),
        lambda: root.remove(name),
        lambda: root.exists(name),
    ):
        with pytest.raises(UnsafePathError, match="not a plain name"):
            touch()
    assert sorted(p.name for p in root.path.parent.iterdir()) == ["root"]


def test_a_symlink_pointing_outside_is_refused_and_its_target_untouched(
    root: RootDir, tmp_path: Path
) -> None:
    target = tmp_path / "target.json"
    target.write_text("keep")
    (root.path / "link.json").symlink_to(target)
    for touch in (
        lambda: root.write("link.json", b"new"),
        lambda: root.read("link.json", 100),
        lambda: root.remove("link.json"),
    ):
        with pytest.raises(UnsafePathError, match=f"resolves to {target}, outside"):
            touch()
    assert target.read_text() == "keep"
    assert (root.path / "link.json").is_symlink()


def test_read_follows_no_symlink_and_never_blocks_on_a_fifo(root: RootDir) -> None:
    (root.path / "real.json").write_text("{}")
    (root.path / "alias.json").symlink_to(root.path / "real.json")  # inside, still refused
    os.mkfifo(root.path / "fifo.json")
    with pytest.raises(UnsafePathError, match="is a symlink"):
        root.read("alias.json", 100)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        root.read("fifo.json", 100)
    assert root.read("real.json", 100) == b"{}"


def test_read_stops_at_its_limit(root: RootDir) -> None:
    root.write("big.json", b"x" * 101)
    assert root.read("big.json", 101) == b"x" * 101
    with pytest.raises(ValueError, match="larger than 100 bytes"):
        root.read("big.json", 100)


def test_write_replaces_atomically_and_leaves_no_temporary(root: RootDir) -> None:
    root.write("a.json", b"old")
    path = root.write("a.json", b"new", mode=0o600, fsync=True)
    assert path.read_bytes() == b"new"
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert root.names() == ["a.json"]


def test_a_failed_write_removes_its_temporary(root: RootDir) -> None:
    (root.path / "dir.json").mkdir()  # rename of a file over a directory fails
    with pytest.raises(IsADirectoryError):
        root.write("dir.json", b"x")
    assert root.names() == ["dir.json"]


def test_remove_temporaries_removes_only_what_write_leaves(root: RootDir) -> None:
    for name in (".a.json.0123abcd.tmp", ".b.json.ffffffff.tmp", "keep.tmp", ".x.tmp"):
        (root.path / name).write_text("")
    assert root.remove_temporaries() == 2
    assert root.names() == [".x.tmp", "keep.tmp"]


def test_ensure_creates_the_directory_not_group_or_world_writable(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    RootDir(loose).ensure()
    RootDir(tmp_path / "new" / "dir").ensure()
    assert loose.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new" / "dir").stat().st_mode & 0o022 == 0


def test_remove_temporaries_leaves_a_directory_of_such_a_name(root: RootDir) -> None:
    """Found by tests/fuzz: a directory named like a temporary raised IsADirectoryError out
    of the start-up sweep, and the driver could not start."""
    (root.path / ".x.json.0123abcd.tmp").mkdir()
    (root.path / ".y.json.0123abcd.tmp").write_text("half a spec")
    assert root.remove_temporaries() == 1
    assert [p.name for p in root.path.iterdir()] == [".x.json.0123abcd.tmp"]
