"""Profile our driver's prepare path against the real API server, the way the bench drives it.

    .venv/bin/python -m bench.profile_prepare [--claims 1000] [--batch 1] [--concurrency 16]

1. cProfile in every thread that serves the kubelet (bench/profiled_driver.py), armed after
   start-up and warm-up, over one prepare + unprepare configuration: the top functions by
   own time and by cumulative time, per claim. cProfile measures wall time: at concurrency
   1 that is each step's cost; at higher concurrency it includes waiting for the GIL.
2. py-spy (when installed: `pip install py-spy`), sampling only the thread that holds the
   GIL: where the interpreter's time goes without cProfile's overhead.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import drivers, workload
from bench.testbed import Testbed, testbed

REPO = Path(__file__).resolve().parent.parent


def warm_up(bed: Testbed, driver: drivers.DriverProcess, config: workload.Config) -> None:
    """Open the connections and discover the API version, as bench.run_all does."""
    dra = driver.dra()
    try:
        warm = workload.batches(bed.warmup[driver.kind.key], 1)
        workload.run_phase(dra.prepare, warm, config.concurrency, driver.cpu_seconds)
        workload.run_phase(dra.unprepare, warm, config.concurrency, driver.cpu_seconds)
    finally:
        dra.close()


def measured(bed: Testbed, driver: drivers.DriverProcess, config: workload.Config) -> str:
    dra = driver.dra()
    try:
        work = workload.batches(bed.claims[driver.kind.key], config.batch)
        prepare = workload.run_phase(dra.prepare, work, config.concurrency, driver.cpu_seconds)
        unprepare = workload.run_phase(dra.unprepare, work, config.concurrency, driver.cpu_seconds)
    finally:
        dra.close()
    p, u = prepare.figures(), unprepare.figures()
    return (
        f"prepare {p['claims_per_s']} claims/s, p50 {p['per_claim_ms']['p50']} ms/claim, "
        f"{1000 * prepare.cpu_s / prepare.claims:.2f} ms CPU/claim; "
        f"unprepare {u['claims_per_s']} claims/s, "
        f"{1000 * unprepare.cpu_s / unprepare.claims:.2f} ms CPU/claim"
    )


def cprofile(bed: Testbed, config: workload.Config, top: int) -> None:
    out = bed.root / "prepare.pstats"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    kind = drivers.ours(command=(sys.executable, "-m", "bench.profiled_driver", str(out)))
    driver = bed.driver(kind)
    driver.start()
    driver.wait_idle()
    warm_up(bed, driver, config)
    os.kill(driver.pid, signal.SIGUSR1)
    time.sleep(0.2)
    print(f"cProfile ({config.description}; figures inflated by the profiler): ", end="")
    print(measured(bed, driver, config))
    driver.stop()
    claims = len(bed.claims[kind.key])
    stats = pstats.Stats(str(out))
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        print(f"\ntop {top} by {title} (µs per claim = time / {claims} claims):")
        print(f"{'own µs':>8} {'cum µs':>8} {'calls':>8}  function")
        for (path, line, name), row in _top(stats, key, top):
            _, ncalls, tottime, cumtime, _ = row
            where = _short(path)
            print(
                f"{tottime * 1e6 / claims:8.1f} {cumtime * 1e6 / claims:8.1f} {ncalls:8d}  "
                f"{where}:{line}({name})"
            )


def _top(
    stats: pstats.Stats, key: str, top: int
) -> list[tuple[tuple[str, int, str], tuple[int, int, float, float, object]]]:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    index = 2 if key == "tottime" else 3
    rows = [item for item in raw.items() if not _idle(item[0])]
    rows.sort(key=lambda item: float(item[1][index]), reverse=True)  # type: ignore[arg-type]
    return rows[:top]


def _idle(function: tuple[str, int, str]) -> bool:
    """A pool worker waiting for work: wall time, not cost."""
    path, _, name = function
    return "SimpleQueue" in name or (
        path.endswith("concurrent/futures/thread.py") and name == "_worker"
    )


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def py_spy(bed: Testbed, config: workload.Config, top: int) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("\npy-spy is not installed (pip install py-spy): skipped")
        return
    driver = bed.driver(drivers.ours())
    driver.start()
    driver.wait_idle()
    warm_up(bed, driver, config)
    raw = bed.root / "py-spy.txt"
    sampler = subprocess.Popen(
        [spy, "record", "--gil", "-r", "1000", "-f", "raw", "-o", str(raw), "-p", str(driver.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    print(f"\npy-spy, GIL holder only ({config.description}): {measured(bed, driver, config)}")
    sampler.send_signal(signal.SIGINT)
    sampler.wait(timeout=30)
    driver.stop()
    inclusive, total = _collapse(raw)
    print(f"top {top} frames by share of GIL-holding samples ({total} samples):")
    for frame, count in inclusive.most_common(top):
        print(f"{100 * count / total:5.1f}%  {frame}")


def _collapse(raw: Path) -> tuple[Counter[str], int]:
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = {_frame(f) for f in stack.split(";")[1:]}
        for frame in frames:
            inclusive[frame] += int(count)
    for frame in list(inclusive):
        if frame.startswith(("Thread._bootstrap", "Thread.run ")):  # in every stack
            del inclusive[frame]
    return inclusive, max(total, 1)


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({_short(where.rstrip(')'))})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--no-py-spy", action="store_true")
    args = parser.parse_args()
    config = workload.Config(args.batch, args.concurrency)
    with testbed([drivers.ours()], args.claims) as bed:
        if not args.no_cprofile:
            cprofile(bed, config, args.top)
        if not args.no_py_spy:
            py_spy(bed, config, args.top)


if __name__ == "__main__":
    main()
