"""The one gate to the directories the driver owns: the CDI root and the plugin dir.

Every create, read, replace and remove of a file there goes through a `RootDir`.
It takes a plain file name, never a path, and refuses any name whose file would
resolve outside the directory (a symlink planted there included). Names built
from claim uids are checked before they get here (`validation.py`); this is
the second line of defence, for whatever slips past the first.

Writes are crash-safe: a reader sees the old file or the new one, never half of
one. How much to fsync follows from what a crash can lose. A crash of the driver
process loses nothing the kernel already has: write + rename is enough. Only a
kernel crash or power loss drops unsynced data, and that is a reboot, after
which the checkpoint is discarded anyway (new boot id) and the CDI root, a
tmpfs, is empty. So CDI specs are never fsynced (they can be rebuilt from the
checkpoint), and a checkpoint record gets one fsync of its contents before the
rename, so that no filesystem can ever show a renamed but empty record.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

# One path component of letters, digits, '_', '-' and '.', starting with neither '.'
# nor '-': no separator, no '..', no hidden or temporary name, nothing a shell or a
# glob would read differently. 255 bytes is the longest name Linux filesystems take.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
# What `RootDir.write` names its temporary files; a crash can leave one behind.
_TEMPORARY = re.compile(r"\.[A-Za-z0-9_][A-Za-z0-9_.-]*\.[0-9a-f]{8}\.tmp")


class UnsafePathError(OSError):
    """A name is not a plain file name, or its file resolves outside the directory."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)

    def __str__(self) -> str:
        return str(self.strerror)


class RootDir:
    """A directory the driver owns; the only way to touch the files in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        """The path of file `name` in this directory, once it is known to stay inside."""
        if not _PLAIN_NAME.fullmatch(name):
            raise UnsafePathError(
                f"refusing file name {name[:80]!r} in {self.path}: not a plain name"
            )
        path = self.path / name
        # A plain name is one component: only a symlink there can lead outside. One lstat
        # instead of resolving both paths component by component on every call.
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:  # missing, or the directory unusable: the operation itself says so
            is_link = False
        if is_link:
            real = os.path.realpath(path)
            if os.path.dirname(real) != os.path.realpath(self.path):
                raise UnsafePathError(
                    f"refusing {path}: it resolves to {real}, outside {self.path}"
                )
        return path

    def ensure(self, mode: int = 0o750) -> None:
        """Create the directory (and parents); make sure it is not group- or world-writable."""
        self.path.mkdir(parents=True, exist_ok=True, mode=mode)
        current = self.path.stat().st_mode & 0o777
        if current & 0o022:
            self.path.chmod(current & ~0o022)

    def write(self, name: str, data: bytes, mode: int = 0o644, *, fsync: bool = False) -> Path:
        """Write `data` to file `name` through a temporary file and a rename.

        The temporary name starts with a dot and does not end in `.json`, so a CDI
        runtime scanning the directory never picks up a half-written spec. O_EXCL
        never follows a symlink, and the rename replaces whatever the name was.
        """
        path = self.file(name)
        tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def read(self, name: str, max_bytes: int) -> bytes:
        """The contents of regular file `name`, at most `max_bytes` long.

        Never follows a symlink and never blocks on a FIFO or a device.
        """
        path = self.file(name)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePathError(f"refusing {path}: it is a symlink") from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePathError(f"refusing {path}: not a regular file")
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"{path} is larger than {max_bytes} bytes")
        return data

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def remove(self, name: str) -> bool:
        """Remove file `name` (a symlink itself, never its target); False when absent."""
        try:
            self.file(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_temporaries(self) -> int:
        """Remove the temporary files a crash in the middle of `write` left; their count."""
        removed = 0
        for name in self.names(suffix=".tmp"):
            if _TEMPORARY.fullmatch(name):
                try:
                    (self.path / name).unlink(missing_ok=True)
                except OSError:  # a directory of that name, say: not what write leaves
                    continue
                removed += 1
        return removed

    def names(self, prefix: str = "", suffix: str = "") -> list[str]:
        """The names of the entries here with that prefix and suffix, sorted."""
        try:
            entries = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if n.startswith(prefix) and n.endswith(suffix))
