"""The node's directories the driver needs: the kubelet's registrar dir, the plugin dir and
the CDI root. Looked at, never created: `os.access` says whether the driver could write."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dra_cdi_driver.doctor.hostfiles import HostFileError, read_text
from dra_cdi_driver.doctor.report import Result

MOUNTINFO = Path("/proc/self/mountinfo")
MAX_MOUNTINFO_BYTES = 16 * 1024 * 1024  # a node with thousands of pod mounts
_OCTAL = re.compile(r"\\([0-7]{3})")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_registrar_dir(path: Path) -> Result:
    check = "registrar dir"
    if not path.exists():
        return Result.fail(
            check,
            f"{path} does not exist: kubeletDir (--kubelet-dir) is not this kubelet's root "
            "dir, or no kubelet runs here",
            "set --kubelet-dir (the chart's kubeletDir) to the kubelet's --root-dir "
            "(usually /var/lib/kubelet), or --registrar-dir to its plugins_registry",
        )
    if not path.is_dir():
        return Result.fail(check, f"{path} is not a directory", "point --registrar-dir at one")
    if not _writable(path):
        return Result.fail(
            check,
            f"{path} is not writable here: the driver cannot put its registration socket there",
            "run the driver as root (the chart does)",
        )
    return Result.ok(check, f"{path} exists, writable")


def _unusable(check: str, path: Path, flag: str) -> Result | None:
    """Why the driver could not use `path` as a dir it writes to (creating it when missing);
    None when it can."""
    if path.exists():
        if not path.is_dir():
            return Result.fail(check, f"{path} is not a directory", f"point {flag} at one")
        if not _writable(path):
            return Result.fail(check, f"{path} is not writable here", "run the driver as root")
        return None
    parent = _nearest_existing(path.parent)
    if not parent.is_dir() or not _writable(parent):
        return Result.fail(
            check,
            f"{path} does not exist and cannot be created ({parent} is not writable here)",
            f"create {path}, or point {flag} at a writable dir",
        )
    return None


def _state(path: Path) -> str:
    return "exists, writable" if path.exists() else "does not exist yet (the driver creates it)"


def check_plugin_dir(path: Path) -> Result:
    check = "plugin dir"
    return _unusable(check, path, "--plugin-dir") or Result.ok(check, f"{path} {_state(path)}")


def check_cdi_root(path: Path, mountinfo: Path = MOUNTINFO) -> Result:
    check = "cdi root"
    problem = _unusable(check, path, "--cdi-root")
    if problem:
        return problem
    try:
        # Where the root is, or will be once created: resolved, as the kernel sees it.
        where_on = os.path.realpath(_nearest_existing(path))
        fstype = filesystem_of(where_on, read_text(mountinfo, limit=MAX_MOUNTINFO_BYTES))
    except HostFileError:
        fstype = None
    if fstype == "tmpfs":
        where = "a tmpfs: a reboot empties it, and the kubelet then prepares claims again"
    elif fstype:
        where = f"on {fstype}, not a tmpfs: specs outlive a reboot; the driver removes stale ones"
    else:
        where = "filesystem unknown"
    return Result.ok(check, f"{path} {_state(path)}; {where}")


def filesystem_of(target: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount the absolute, resolved path `target` is on, from the
    text of /proc/self/mountinfo; None when no mount matches."""
    found, longest = None, -1
    for line in mountinfo.splitlines():
        # "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <type> ..."
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount_point = _OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[4])
        inside = mount_point == "/" or target == mount_point or target.startswith(mount_point + "/")
        # The longest mount point wins; of equals, the last mounted (it hides the others).
        if inside and len(mount_point) >= longest:
            found, longest = tail[0], len(mount_point)
    return found
