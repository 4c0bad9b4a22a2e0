"""Reading a file of the host as untrusted input: a regular file, of bounded size, read once.

Nothing a file says is followed: no path named inside it is opened by this module.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Far more than any containerd or CRI-O config, or CDI spec, a person writes.
MAX_FILE_BYTES = 1024 * 1024


class HostFileError(OSError):
    """The file cannot be read as asked; the message says why, in plain words."""


def read_bytes(path: Path, *, follow_symlink: bool = True, limit: int = MAX_FILE_BYTES) -> bytes:
    """The contents of `path`. A symlink is refused unless `follow_symlink` (a config file
    that a person named is theirs to link; a file found by scanning a directory is not)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block us
    if not follow_symlink:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if not follow_symlink and path.is_symlink():
            raise HostFileError(f"{path} is a symlink, not followed") from None
        raise HostFileError(f"cannot open {path}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise HostFileError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise HostFileError(f"{path} is larger than {limit} bytes, not read")
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew while we read it
        raise HostFileError(f"{path} is larger than {limit} bytes, not read")
    return data


def read_text(path: Path, *, follow_symlink: bool = True, limit: int = MAX_FILE_BYTES) -> str:
    data = read_bytes(path, follow_symlink=follow_symlink, limit=limit)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise HostFileError(f"{path} is not UTF-8 text") from None
