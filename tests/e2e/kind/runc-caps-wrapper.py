#!/usr/bin/env python3
"""A runc wrapper for hosts whose root lacks capabilities that Docker grants.

Docker gives a privileged container (every kind node) every capability it knows. Where
root's own capability bounding set lacks one of them (CAP_SYS_RESOURCE on some sandboxed
hosts), runc fails with "unable to apply caps: operation not permitted", and no kind node
can start. The kind provider's dockerd runs this as its default runtime only on such
hosts (tests/e2e/harness/engine.py detects it): before `create` or `run` it removes from
the bundle's config.json every capability missing from its own bounding set, and does the
same to the process file of `exec`; then it execs the real runc with the same arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

# Linux capability numbers (include/uapi/linux/capability.h).
CAPS = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
    "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip


def bounding_set() -> set[str]:
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return {f"CAP_{name}" for bit, name in enumerate(CAPS) if mask >> bit & 1}


def option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def strip_capabilities(process: dict[str, object], allowed: set[str]) -> None:
    caps = process.get("capabilities")
    if isinstance(caps, dict):
        for kind, names in caps.items():
            if isinstance(names, list):
                caps[kind] = [n for n in names if n in allowed]


def rewrite(path: str, allowed: set[str], inside_process: bool) -> None:
    with open(path) as f:
        doc = json.load(f)
    strip_capabilities(doc.get("process", {}) if inside_process else doc, allowed)
    tmp = f"{path}.caps-wrapper"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def real_runc() -> str:
    me = os.path.realpath(sys.argv[0])
    for directory in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(os.pathsep):
        found = shutil.which("runc", path=directory)
        if found and os.path.realpath(found) != me:
            return found
    sys.exit("runc-caps-wrapper: no runc on PATH")


def main() -> None:
    args = sys.argv[1:]
    command = next((a for a in args if a in ("create", "run", "exec")), None)
    allowed = bounding_set()
    if command in ("create", "run"):
        bundle = option(args, "--bundle", "-b") or os.getcwd()
        rewrite(os.path.join(bundle, "config.json"), allowed, inside_process=True)
    elif command == "exec":
        process = option(args, "--process", "-p")
        if process:
            rewrite(process, allowed, inside_process=False)
    runc = real_runc()
    os.execv(runc, [runc, *args])


if __name__ == "__main__":
    main()
