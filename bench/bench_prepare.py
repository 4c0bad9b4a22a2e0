"""Prepare + unprepare of one configuration: latency per call and per claim, claims/s, CPU and
memory of the driver; ours, and with --reference the Go reference driver right after.

    .venv/bin/python -m bench.bench_prepare [--claims 1000] [--batch 1] [--concurrency 1]
                                            [--reference] [--fake-api]

Plays the kubelet over the DRA v1 gRPC socket of a real driver process. The claims are
allocated in a real kube-apiserver (from the e2e cache, tests/e2e/local/setup.sh); without
that cache, or with --fake-api, ours reads them from a loopback HTTP fake (tests/fakeapi.py),
which answers far faster than an API server. bench/run_all.py runs every configuration.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import cluster, drivers, reference, workload
from bench.allocate import ClaimRef
from bench.testbed import WARMUP_CLAIMS, testbed
from tests.fakeapi import FakeApi, claim_object, result, serve, write_kubeconfig


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    keep = ("per_call_ms", "per_claim_ms", "claims_per_s", "cpu_s", "errors")
    return {
        **{phase: {k: figures[phase][k] for k in keep} for phase in ("prepare", "unprepare")},
        "cpu_ms_per_claim": figures["cpu_ms_per_claim"],
        "peak_rss_mib": figures["peak_rss_mib"],
    }


def real_api(config: workload.Config, claims: int, with_reference: bool) -> None:
    kinds = [drivers.ours()]
    if with_reference:
        kinds.append(drivers.theirs(reference.ensure_built(), reference.version()))
    with testbed(kinds, claims) as bed:
        print(f"kube-apiserver {bed.version}, {config.description}, {claims:,} claims")
        for kind in kinds:
            driver = bed.driver(kind)
            startup_s = driver.start()
            driver.wait_idle()
            try:
                figures = workload.run(driver, config, bed.claims[kind.key], bed.warmup[kind.key])
            finally:
                driver.stop()
                driver.cleanup()
            print(f"{kind.label} (GetInfo after {startup_s:.3f} s):")
            print(json.dumps(summary(figures), indent=2))


def fake_api(config: workload.Config, claims: int) -> None:
    api = FakeApi()
    refs = []
    for i in range(claims + WARMUP_CLAIMS):
        ref = ClaimRef("default", f"bench-{i}", f"00000000-0000-4000-8000-{i:012d}")
        api.add_claim(claim_object(ref.name, ref.uid, [result(f"gpu-{i % 8}")]))
        refs.append(ref)
    with serve(api) as url, tempfile.TemporaryDirectory(prefix="dra-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        kubeconfig = write_kubeconfig(root / "kubeconfig", url)
        driver = drivers.DriverProcess(drivers.ours(), root / "driver", kubeconfig, "node-1")
        startup_s = driver.start()
        driver.wait_idle()
        try:
            figures = workload.run(driver, config, refs[WARMUP_CLAIMS:], refs[:WARMUP_CLAIMS])
        finally:
            driver.stop()
    print(f"loopback fake API (tests/fakeapi.py), {config.description}, {claims:,} claims")
    print(f"dra-cdi-driver (GetInfo after {startup_s:.3f} s):")
    print(json.dumps(summary(figures), indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="claims per call")
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight")
    parser.add_argument("--reference", action="store_true", help="also the Go reference")
    parser.add_argument("--fake-api", action="store_true", help="no API server: a fast fake")
    args = parser.parse_args()
    config = workload.Config(args.batch, args.concurrency)
    missing = cluster.missing_binaries()
    if args.fake_api or missing:
        if missing:
            print(f"not cached: {', '.join(missing)} (tests/e2e/local/setup.sh): using the fake")
        fake_api(config, args.claims)
    else:
        real_api(config, args.claims, args.reference)


if __name__ == "__main__":
    main()
