"""Runs `dra-cdi-driver` with a cProfile profiler in every thread it starts, armed on SIGUSR1
(so start-up is left out), and writes the merged statistics when the driver exits.

    python -m bench.profiled_driver OUT.pstats [driver flags...]

cProfile alone sees only the thread that enabled it; prepare runs in gRPC worker threads.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from dra_cdi_driver import cli

# The gRPC server's workers (kubelet/plugin.py) and the driver's prepare pool (driver.py).
PROFILED_THREADS = ("dra-grpc", "prepare")
_profiles: list[cProfile.Profile] = []
_armed = threading.Event()
_lock = threading.Lock()


def _hook(frame: FrameType, event: str, arg: Any) -> None:
    """Python-level hook of every new thread until armed; then the thread's own cProfile
    takes over (enable() replaces this hook for the calling thread). Only the threads that
    serve the kubelet's calls are profiled, not the publisher's."""
    if not _armed.is_set():
        return
    if not threading.current_thread().name.startswith(PROFILED_THREADS):
        sys.setprofile(None)  # this thread only
        return
    profile = cProfile.Profile()
    with _lock:
        _profiles.append(profile)
    profile.enable()


def _arm(signum: int, frame: FrameType | None) -> None:
    _armed.set()


def _dump(out: Path) -> None:
    with _lock:
        profiles = list(_profiles)
    if not profiles:
        print("profiled_driver: no thread was profiled", file=sys.stderr)
        return
    for profile in profiles:
        profile.create_stats()
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(str(out))


def main() -> int:
    out = Path(sys.argv[1])
    signal.signal(signal.SIGUSR1, _arm)
    threading.setprofile(_hook)
    atexit.register(_dump, out)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
