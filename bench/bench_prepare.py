"""Prepare latency of one claim with one device, and the driver's idle memory.

    .venv/bin/python -m bench.bench_prepare [--claims 500]

Starts a real driver process, plays the kubelet over the DRA v1 gRPC socket and
serves the ResourceClaims from a loopback HTTP API (tests/fakeapi.py). Each
iteration prepares a new claim (so the claim is read from the API, the spec and
checkpoint written) and then unprepares it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.fakeapi import FakeApi, claim_object, result, serve, write_kubeconfig
from tests.integration.conftest import DriverProcess


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=500)
    args = parser.parse_args()

    api = FakeApi()
    with serve(api) as url, tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp)
        driver = DriverProcess(root=root, kubeconfig=write_kubeconfig(root / "kc", url))
        driver.start()
        assert driver.proc is not None
        time.sleep(1.0)
        idle_rss = rss_kib(driver.proc.pid)
        dra = driver.dra("v1")
        prepare_ms: list[float] = []
        unprepare_ms: list[float] = []
        for i in range(args.claims):
            uid = f"00000000-0000-4000-8000-{i:012d}"
            api.add_claim(claim_object(f"bench-{i}", uid, [result(f"gpu-{i % 8}")]))
            started = time.perf_counter()
            answer = dra.prepare(("default", f"bench-{i}", uid)).claims[uid]
            prepare_ms.append((time.perf_counter() - started) * 1000)
            if answer.error:
                raise SystemExit(f"prepare failed: {answer.error}")
            started = time.perf_counter()
            dra.unprepare(("default", f"bench-{i}", uid))
            unprepare_ms.append((time.perf_counter() - started) * 1000)
        busy_rss = rss_kib(driver.proc.pid)
        dra.close()
        driver.stop()

    figures = {
        "claims": args.claims,
        "prepare_ms": {p: round(percentile(prepare_ms, p), 2) for p in (50, 95, 99)},
        "prepare_mean_ms": round(statistics.mean(prepare_ms), 2),
        "unprepare_ms": {p: round(percentile(unprepare_ms, p), 2) for p in (50, 95, 99)},
        "idle_rss_mib": round(idle_rss / 1024, 1),
        "rss_after_run_mib": round(busy_rss / 1024, 1),
        "api": "loopback HTTP (tests/fakeapi.py)",
        "cpu": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() + " cores",
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
