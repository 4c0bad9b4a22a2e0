"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

How much to fsync follows from what a crash can lose. A crash of the driver
process loses nothing the kernel already has: write + rename is enough. Only a
kernel crash or power loss drops unsynced data, and that is a reboot, after
which the checkpoint is discarded anyway (new boot id) and the CDI root, a
tmpfs, is empty. So CDI specs are never fsynced (they can be rebuilt from the
checkpoint), and a checkpoint record gets one fsync of its contents before the
rename, so that no filesystem can ever show a renamed but empty record.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, fsync: bool = False) -> None:
    """Write `data` to `path` through a temporary file and a rename.

    The temporary name starts with a dot and does not end in `.json`, so a CDI
    runtime scanning the directory never picks up a half-written spec.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
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


def remove(path: Path) -> bool:
    """Remove `path`; returns False when it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def ensure_private_dir(path: Path, mode: int = 0o750) -> None:
    """Create `path` (and parents) and make sure it is not group- or world-writable."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    current = path.stat().st_mode & 0o777
    if current & 0o022:
        path.chmod(current & ~0o022)
