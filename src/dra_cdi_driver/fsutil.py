"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file, fsync and rename.

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
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove(path: Path) -> bool:
    """Remove `path` durably; returns False when it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def fsync_dir(directory: Path) -> None:
    """Persist a rename or unlink in `directory` (a no-op cost on tmpfs)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path, mode: int = 0o750) -> None:
    """Create `path` (and parents) and make sure it is not group- or world-writable."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    current = path.stat().st_mode & 0o777
    if current & 0o022:
        path.chmod(current & ~0o022)
