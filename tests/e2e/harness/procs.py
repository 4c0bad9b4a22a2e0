"""Start, stop and watch the host processes of a local cluster; clean up what they leave.

Every process gets its own session (so a signal reaches its children), its output goes to
``<logs>/<name>.log`` and its pid to ``<run>/<name>.pid``, so that a cluster left behind by
a killed test run can still be torn down from its directory alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

MNT_DETACH = 2
T = TypeVar("T")


class ProcessDied(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    pidfile: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Proc:
        if self.running():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.popen.pid}\n")
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        """Raise with the log tail when the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessDied(
                f"{self.name} exited with status {self.popen.returncode}; "
                f"last lines of {self.log}:\n{tail(self.log, 40)}"
            )

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait, then SIGKILL it. Returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Children that outlived the leader (same process group).
        _signal_group(self.popen.pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return self.popen.returncode

    def kill(self) -> int | None:
        return self.stop(timeout=0, sig=signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_pidfile(pidfile: Path, timeout: float = 10.0) -> None:
    """Stop a process known only by its pid file (teardown of a leftover cluster)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    # Only signal it when it still is one of ours: same session leader as the file says.
    try:
        if os.getsid(pid) != pid:
            return
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout: float,
    interval: float = 0.5,
    procs: Sequence[Proc] = (),
) -> T:
    """Poll probe() until it returns a truthy value; fail early when a watched process dies."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for p in procs:
            p.check()
        try:
            last = probe()
            if last:
                return last
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


def processes_mentioning(needle: str) -> list[int]:
    """Pids whose command line contains needle (e.g. the cluster dir): containerd shims."""
    out = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(d.name))
    return out


def kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root).rstrip("/")
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                points.append(mp)
    return sorted(set(points), key=lambda p: (p.count("/"), len(p)), reverse=True)


_libc = ctypes.CDLL(None, use_errno=True)


def unmount_all(root: Path) -> list[str]:
    """Lazily unmount everything under root, deepest first; return what is still mounted."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return []
        for mp in points:
            _libc.umount2(mp.encode(), MNT_DETACH)
    return mounts_under(root)


def cgroup_procs(cgroup_rel: str) -> list[int]:
    """All pids in a (v1) cgroup subtree, looked up in every mounted hierarchy."""
    pids: set[int] = set()
    for base in _cgroup_hierarchies():
        top = base / cgroup_rel.strip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split())
    return sorted(pids)


def remove_cgroups(cgroup_rel: str) -> list[str]:
    """rmdir a cgroup subtree (deepest first) in every hierarchy; return what remains."""
    left = []
    for base in _cgroup_hierarchies():
        top = base / cgroup_rel.strip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


def _cgroup_hierarchies() -> list[Path]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append(Path(parts[4]))
    return out


def env_with(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
