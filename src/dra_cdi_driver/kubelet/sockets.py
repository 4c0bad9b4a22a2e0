"""The sockets of this driver's instances on the node, and which of them are stale.

During a rolling update two pods of the driver serve side by side, each on sockets named
with its pod UID: `<registrar-dir>/<driver>-<uid>-reg.sock` and `<plugin-dir>/dra-<uid>.sock`
(the plain `<driver>-reg.sock` and `dra.sock` without one, as older versions named them).
At start, a socket of ours that nothing serves any more (its pod is gone) is removed; one
that another process serves is left alone, whatever its name.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import stat
from pathlib import Path

from dra_cdi_driver.logs import kv
from dra_cdi_driver.settings import POD_UID

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
_DRA = re.compile(rf"dra(-{POD_UID.pattern})?\.sock")


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def serves(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket `path`.

    Only a refused connection (nobody listens: the socket file of a process that is gone)
    or a missing file says no; anything else, a timeout included, counts as served.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError as err:
            return err.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    return True


def instance_sockets(registrar_dir: Path, plugin_dir: Path, driver_name: str) -> list[Path]:
    """The sockets of every instance of this driver, with a pod UID or without."""
    registration = re.compile(rf"{re.escape(driver_name)}(-{POD_UID.pattern})?-reg\.sock")
    found = []
    for directory, pattern in ((registrar_dir, registration), (plugin_dir, _DRA)):
        try:
            names = sorted(p.name for p in directory.iterdir())
        except FileNotFoundError:
            continue
        found += [directory / n for n in names if pattern.fullmatch(n)]
    return [path for path in found if is_socket(path)]


def sweep(registrar_dir: Path, plugin_dir: Path, driver_name: str) -> list[Path]:
    """Remove this driver's stale sockets; return those that another instance serves."""
    served = []
    for path in instance_sockets(registrar_dir, plugin_dir, driver_name):
        if serves(path):
            served.append(path)
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # its own instance removed it meanwhile
            continue
        log.info("removed stale socket", extra=kv(path=str(path)))
    if served:
        log.info(
            "another instance of the driver serves on this node (a rolling update?); "
            "its sockets stay",
            extra=kv(sockets=[str(p) for p in served]),
        )
    return served
