"""Every benchmark in one run, ours and the reference Go driver side by side.

    .venv/bin/python -m bench.run_all            # ~5 min on 2 cores (+2 min the first time:
                                                 # building the reference driver)
    .venv/bin/python -m bench.run_all --quick    # 200 claims, short windows: a smoke run

One API server (etcd + kube-apiserver from the e2e cache, tests/e2e/local/setup.sh) serves
both drivers. Each measurement starts a fresh driver process, ours then theirs:

1. start-up: process start -> GetInfo answered; -> a first claim prepared; -> idle; idle RSS;
2. prepare: NodePrepareResources of 1,000 allocated claims, then NodeUnprepareResources,
   for each claims-per-call x concurrency configuration: latency per call and per claim,
   claims/s, driver CPU seconds, peak RSS;
3. publisher: process start -> all ResourceSlices present, for 8, 128 and 1,024 devices,
   and API writes per minute in steady state.

Writes bench/results/bench-<time>.json and .png (and latest.json, latest.png) and prints
tables with ours/theirs ratios. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dra_cdi_driver
from bench import chart, drivers, machine, publisher_scale, reference, report, startup, workload
from bench.drivers import DriverKind
from bench.testbed import DEVICES, NODE, Testbed, testbed

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = "1x1,8x1,100x1,1x16,8x16,100x16"


def parse_configs(text: str) -> list[workload.Config]:
    configs = []
    for item in text.split(","):
        batch, _, concurrency = item.strip().partition("x")
        configs.append(workload.Config(int(batch), int(concurrency)))
    return configs


def say(text: str) -> None:
    print(text, flush=True)


def run_startup(bed: Testbed, kinds: list[DriverKind], starts: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {k.key: [] for k in kinds}
    for _ in range(starts):
        for kind in kinds:
            samples[kind.key].append(startup.once(bed, kind))
    out = {key: startup.summarize(s) for key, s in samples.items()}
    for key, figures in out.items():
        say(
            f"  {key:6s} GetInfo answered after {figures['registration_s']} s, first claim "
            f"prepared after {figures['first_claim_s']} s (medians)"
        )
    return out


def run_prepare(
    bed: Testbed, kinds: list[DriverKind], configs: list[workload.Config]
) -> list[dict[str, Any]]:
    entries = []
    for config in configs:
        entry: dict[str, Any] = {
            "config": config.key,
            "label": config.label,
            "batch": config.batch,
            "concurrency": config.concurrency,
        }
        for kind in kinds:
            driver = bed.driver(kind)
            driver.start()
            driver.wait_idle()
            server_pids = [p.pid for p in bed.server.procs]
            try:
                with machine.Load(machine.pids([driver.pid], server_pids)) as load:
                    figures = workload.run(
                        driver, config, bed.claims[kind.key], bed.warmup[kind.key]
                    )
            finally:
                driver.stop()
                driver.cleanup()
            figures["load"] = load.figures
            entry[kind.key] = figures
            say(
                f"  {config.description:32s} {kind.key:6s} prepare "
                f"{figures['prepare']['per_claim_ms']['p50']:8.2f} ms/claim p50, "
                f"{figures['prepare']['claims_per_s']:7.1f} claims/s"
            )
        entries.append(entry)
    return entries


def run_publisher(
    bed: Testbed, kinds: list[DriverKind], device_counts: list[int], steady_s: float
) -> list[dict[str, Any]]:
    entries = []
    for devices in device_counts:
        entry: dict[str, Any] = {"devices": devices}
        for kind in kinds:
            entry[kind.key] = figures = publisher_scale.measure(bed, kind, devices, steady_s)
            published = figures["published_s"]
            say(
                f"  {devices:5d} devices {kind.key:6s} "
                + (
                    f"published after {published} s, {figures['steady_writes']} writes "
                    f"in {steady_s:.0f} s of steady state"
                    if published is not None
                    else f"not published: {figures['problem']}"
                )
            )
        entries.append(entry)
    return entries


def git_version() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def write(results: dict[str, Any], out: Path, stamp: str, chart_too: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    shutil.copyfile(json_path, out / "latest.json")
    written.append(json_path)
    if chart_too:
        png = out / f"bench-{stamp}.png"
        if chart.write(results, png):
            shutil.copyfile(png, out / "latest.png")
            written.append(png)
        else:
            say("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000, help="claims per configuration")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="claims/call x concurrency")
    parser.add_argument("--starts", type=int, default=3, help="start-up measurements per driver")
    parser.add_argument("--devices", default="8,128,1024", help="publisher device counts")
    parser.add_argument("--steady-s", type=float, default=20.0, help="steady-state window")
    parser.add_argument("--ours-only", action="store_true", help="skip the reference driver")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="200 claims, short windows")
    args = parser.parse_args()
    if args.quick:
        args.claims, args.starts, args.steady_s = 200, 1, 5.0

    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    described = machine.describe()
    kinds = [drivers.ours()]
    versions = {"ours": f"dra-cdi-driver {dra_cdi_driver.__version__} ({git_version()})"}
    if not args.ours_only:
        try:
            kinds.append(drivers.theirs(reference.ensure_built(), reference.version()))
            versions["theirs"] = f"{reference.MODULE} {reference.version()}"
        except reference.ReferenceUnavailable as err:
            say(f"reference driver unavailable, measuring ours only: {err}")
    configs = parse_configs(args.configs)
    load = " ".join(described["load_avg_at_start"])
    say(f"{described['cpus']} CPUs ({described['cpu_model']}), load average {load}")
    with testbed(kinds, args.claims) as bed:
        versions["kubernetes"] = bed.version
        say(
            f"kube-apiserver {bed.version} + etcd up, {args.claims:,} claims per driver allocated "
            f"in {bed.setup_s:.0f} s"
        )
        say("start-up:")
        startup_figures = run_startup(bed, kinds, args.starts)
        say("prepare / unprepare:")
        prepare_figures = run_prepare(bed, kinds, configs)
        say("publisher:")
        publisher_figures = run_publisher(
            bed, kinds, [int(n) for n in args.devices.split(",")], args.steady_s
        )
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python -m bench.run_all", *sys.argv[1:]]),
        "machine": described,
        "versions": versions,
        "drivers": {k.key: {"label": k.label, "driver_name": k.driver_name} for k in kinds},
        "settings": {
            "claims": args.claims,
            "devices_per_node": DEVICES,
            "node": NODE,
            "configs": [c.key for c in configs],
            "startup_runs": args.starts,
            "steady_window_s": args.steady_s,
            "cdi_root": "tmpfs (/dev/shm)" if bed.tmpfs else "disk",
            "kubelet_dirs": "disk (/tmp)",
            "reference_client_qps": "unlimited (--kube-api-qps/--kube-api-burst 100000)",
        },
        "startup": startup_figures,
        "prepare": prepare_figures,
        "publisher": publisher_figures,
    }
    results["ratios"] = report.ratios(results)
    results["elapsed_s"] = round(time.monotonic() - started)
    written = write(results, args.out, stamp, not args.no_chart)
    say("")
    say(report.render(results))
    say("")
    say(f"wrote {', '.join(str(p) for p in written)} in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
