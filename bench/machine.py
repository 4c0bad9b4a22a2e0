"""The machine the figures come from, and how busy it was with anything but the benchmark."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat


def describe() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gib": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "go": _go_version(),
        "load_avg_at_start": _read("/proc/loadavg").split()[:3],
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _go_version() -> str | None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip().removeprefix("go version ") or None


def _busy() -> float:
    """CPU seconds the machine has been busy since boot (all but idle and iowait)."""
    ticks = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    """CPU use over a measurement: the machine's, the benchmark's own processes', the rest."""

    pids: list[int]
    figures: dict[str, float | None] = field(default_factory=dict)
    _start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __enter__(self) -> Load:
        self._start = (_busy(), self._ours(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        busy0, ours0, wall0 = self._start
        busy, ours, wall = _busy() - busy0, self._ours() - ours0, time.perf_counter() - wall0
        if wall <= 0:
            return
        self.figures = {
            "machine_busy_cores": round(busy / wall, 2),
            "bench_cores": round(ours / wall, 2),  # drivers, API server, etcd, this process
            "other_cores": round(max(busy - ours, 0.0) / wall, 2),  # kernel threads included
        }

    def _ours(self) -> float:
        return sum(_cpu(pid) for pid in self.pids) + _self_cpu()


def _cpu(pid: int) -> float:
    try:
        return procstat.cpu_seconds(pid)
    except OSError:
        return 0.0


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def pids(*groups: Iterable[int | None]) -> list[int]:
    return [p for group in groups for p in group if p is not None]
