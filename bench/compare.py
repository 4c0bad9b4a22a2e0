"""Before/after for a change to our driver: the driver of a git ref (default HEAD) against the
working tree, alternating run by run on one API server, medians over the runs.

    .venv/bin/python -m bench.compare [--ref HEAD] [--configs 1x1,1x16,8x16,100x16]
                                      [--runs 3] [--claims 1000]

Run-to-run noise on a small VM is about +-10 % of throughput: trust a difference only when
it holds in every run (the per-run figures are printed too). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench import drivers, workload
from bench.run_all import parse_configs
from bench.testbed import testbed

REPO = Path(__file__).resolve().parent.parent


def export(ref: str, into: Path) -> Path:
    """src/ of `ref`, unpacked under `into` (no worktree: nothing is left in .git)."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def variant(src: Path) -> drivers.DriverKind:
    """Our driver run from `src` (PYTHONPATH comes before the editable install's path)."""
    return drivers.DriverKind(
        drivers.OURS,
        "dra-cdi-driver (before)",
        "gpu.cdi.example.com",
        command=(sys.executable, "-m", "dra_cdi_driver"),
        env=(("PYTHONPATH", str(src)),),
    )


def figures(run: dict[str, Any]) -> tuple[float, float, float]:
    prepare = run["prepare"]
    return (
        prepare["claims_per_s"],
        prepare["per_claim_ms"]["p50"],
        1000 * prepare["cpu_s"] / prepare["claims"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the 'before' git ref")
    parser.add_argument("--configs", default="1x1,1x16,8x16,100x16")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--claims", type=int, default=1000)
    args = parser.parse_args()
    configs = parse_configs(args.configs)
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dra-bench-before-") as tmp:
        kinds = {
            f"before ({args.ref})": variant(export(args.ref, Path(tmp))),
            "after": drivers.ours(),
        }
        with testbed([drivers.ours()], args.claims) as bed:
            for run in range(args.runs):
                for config in configs:
                    for name, kind in kinds.items():
                        driver = bed.driver(kind)
                        driver.start()
                        driver.wait_idle()
                        try:
                            out = workload.run(
                                driver, config, bed.claims[kind.key], bed.warmup[kind.key]
                            )
                        finally:
                            driver.stop()
                            driver.cleanup()
                        results.setdefault((config.label, name), []).append(figures(out))
                print(f"run {run + 1}/{args.runs} done", flush=True)
    print(f"\nprepare, {args.claims:,} claims, median of {args.runs} runs (each run in brackets)")
    for (label, name), runs in results.items():
        rate, p50, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
        each = ", ".join(f"{r[0]:.0f}" for r in runs)
        print(
            f"{label:9s} {name:16s} {rate:7.1f} claims/s [{each}]  p50 {p50:7.2f} ms/claim  "
            f"driver CPU {cpu:.2f} ms/claim"
        )


if __name__ == "__main__":
    main()
