"""Shared GPUs and partitions (issue #14): prepare of shares next to whole devices, and the
publishing of shareable and partitioned pools, in one run on one API server.

    .venv/bin/python -m bench.bench_sharing [--claims 500] [--configs 1x1,1x16,8x16]
                                            [--steady-s 10] [--no-reference]

1. Prepare + unprepare (bench/workload.py: the kubelet over gRPC against a driver process)
   for each claims-per-call x concurrency configuration, three drivers in turn:
   - exclusive: ours, `--mock-gpu-mode=whole`; claim i holds the whole gpu-<i mod 8> (the
     claims of bench/testbed.py, as bench.run_all has them);
   - shared: ours, `--mock-gpu-mode=shared`, on a node of its own; claim i holds a share of
     gpu-<i mod 8>: its result carries a `shareID` (a random UUID, as kube-scheduler makes
     them) and `consumedCapacity` {memory, compute} sized so that all the shares of a GPU
     fit in it together (80Gi and 100 compute each);
   - reference: the Go dra-example-driver (bench/reference.py), exclusive only (it cannot
     share), for scale; skipped with a note where it cannot be built.
2. ResourceSlices: from process start until the API server holds every slice of the pool,
   and the writes in a steady window, for 128 whole GPUs (the baseline), 128 shareable GPUs,
   8 partitioned GPUs and 128 partitioned GPUs (`--mock-gpu-mode=partitioned`: per GPU a
   counter set, the whole GPU, 2 halves and 4 quarters).

Writes bench/results/sharing-<time>.json. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from kubernetes import client
from kubernetes.utils import parse_quantity

import dra_cdi_driver
from bench import cluster, drivers, machine, publisher_scale, reference, workload
from bench.allocate import GROUP, REQUEST, VERSION, ClaimRef, allocation, claim_body
from bench.drivers import DriverKind
from bench.report import lookup, table
from bench.run_all import git_version, parse_configs
from bench.stats import ratio
from bench.testbed import DEVICES, NODE, WARMUP_CLAIMS, Testbed, testbed
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubelet.pb import kubelet_dra_v1_pb2, kubelet_dra_v1_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
SHARED_NODE = "bench-node-shared"
SHARED_NAMESPACE = "shared"
DEFAULT_CONFIGS = "1x1,1x16,8x16"
# What a mock GPU has to share out (devices/mock.py: SHARED_CAPACITY).
GPU_MEMORY_GI = 80
GPU_COMPUTE = 100

EXCLUSIVE, SHARED, REFERENCE = "exclusive", "shared", "reference"


@dataclass(frozen=True)
class ModeKind(DriverKind):
    """Our driver, started with `--mock-gpu-mode=<mode>`."""

    mode: str = "whole"

    def argv(
        self, root: Path, cdi_root: Path, kubeconfig: Path, node: str, devices: int
    ) -> list[str]:
        return [
            *super().argv(root, cdi_root, kubeconfig, node, devices),
            f"--mock-gpu-mode={self.mode}",
        ]


def ours(mode: str) -> ModeKind:
    base = drivers.ours()
    return ModeKind(base.key, f"{base.label}, {mode}", base.driver_name, mode=mode)


# --- shared claims -------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """What each of `count` claims takes of its GPU when they are spread evenly over `gpus`:
    the shares of one GPU fit in it together, as the scheduler would hand them out."""

    memory: str
    compute: str

    @staticmethod
    def sized(count: int, gpus: int) -> Share:
        per_gpu = math.ceil(count / gpus)
        return Share(
            memory=f"{max(1, GPU_MEMORY_GI // per_gpu)}Gi",
            compute=str(max(1, GPU_COMPUTE // per_gpu)),
        )


@dataclass
class SharedClaims:
    warmup: list[ClaimRef]
    claims: list[ClaimRef]
    share: Share
    share_ids: dict[str, str] = field(default_factory=dict)  # claim uid -> shareID
    kept_by_server: bool = False  # shareID and consumedCapacity read back as written


def shared_allocation(driver: str, node: str, device: str, share: Share) -> dict[str, Any]:
    """What kube-scheduler writes for a share of a shareable device (DRAConsumableCapacity):
    the result of bench/allocate.py plus a fresh shareID and the capacity the share took."""
    out = allocation(driver, node, device)
    out["devices"]["results"][0].update(
        shareID=str(uuid.uuid4()),
        consumedCapacity={"memory": share.memory, "compute": share.compute},
    )
    return out


def create_shared_claims(
    api: client.ApiClient, *, driver: str, node: str, gpus: int, count: int, workers: int = 8
) -> SharedClaims:
    """`count` claims in their own namespace, claim i a share of gpu-<i mod gpus> of `node`;
    the first WARMUP_CLAIMS are for warming up."""
    objects = client.CustomObjectsApi(api)
    share = Share.sized(count - WARMUP_CLAIMS, gpus)

    def make(i: int) -> tuple[ClaimRef, str]:
        name = f"share-{i:05d}"
        body = claim_body(SHARED_NAMESPACE, name, driver)
        # The request asks for its part of the GPU, as a pod's claim would.
        body["spec"]["devices"]["requests"][0]["exactly"]["capacity"] = {
            "requests": {"memory": share.memory, "compute": share.compute}
        }
        created: Any = objects.create_namespaced_custom_object(
            GROUP, VERSION, SHARED_NAMESPACE, "resourceclaims", body
        )
        result = shared_allocation(driver, node, f"gpu-{i % gpus}", share)
        created["status"] = {"allocation": result}
        objects.replace_namespaced_custom_object_status(
            GROUP, VERSION, SHARED_NAMESPACE, "resourceclaims", name, created
        )
        uid = str(created["metadata"]["uid"])
        return ClaimRef(SHARED_NAMESPACE, name, uid), result["devices"]["results"][0]["shareID"]

    with ThreadPoolExecutor(workers, thread_name_prefix="allocate") as pool:
        made = list(pool.map(make, range(count)))
    refs = [ref for ref, _ in made]
    out = SharedClaims(refs[:WARMUP_CLAIMS], refs[WARMUP_CLAIMS:], share)
    out.share_ids = {ref.uid: share_id for ref, share_id in made}
    # An API server without DRAConsumableCapacity drops both fields from the status.
    back: Any = objects.get_namespaced_custom_object(
        GROUP, VERSION, SHARED_NAMESPACE, "resourceclaims", refs[-1].name
    )
    kept = back["status"]["allocation"]["devices"]["results"][0]
    out.kept_by_server = kept.get("shareID") == out.share_ids[refs[-1].uid] and _same_quantities(
        kept.get("consumedCapacity") or {}, {"memory": share.memory, "compute": share.compute}
    )
    return out


def _same_quantities(got: dict[str, Any], wanted: dict[str, str]) -> bool:
    try:
        return got.keys() == wanted.keys() and all(
            parse_quantity(got[k]) == parse_quantity(v) for k, v in wanted.items()
        )
    except (ValueError, TypeError):
        return False


def check_share_answer(driver: drivers.DriverProcess, claim: ClaimRef, share_id: str) -> str:
    """Prepare one claim and read the answer as the kubelet would: its one device carries the
    claim's shareID and a CDI device of its own. Returns "" or what was wrong."""
    assert driver.info is not None
    wire = [kubelet_dra_v1_pb2.Claim(namespace=claim.namespace, name=claim.name, uid=claim.uid)]
    with grpc.insecure_channel(f"unix://{driver.info.endpoint}") as channel:
        stub = kubelet_dra_v1_pb2_grpc.DRAPluginStub(channel)
        answer = stub.NodePrepareResources(
            kubelet_dra_v1_pb2.NodePrepareResourcesRequest(claims=wire), timeout=45
        ).claims[claim.uid]
        stub.NodeUnprepareResources(
            kubelet_dra_v1_pb2.NodeUnprepareResourcesRequest(claims=wire), timeout=45
        )
    if answer.error:
        return str(answer.error)
    devices = list(answer.devices)
    if (
        len(devices) != 1
        or devices[0].share_id != share_id
        or not any(share_id in cdi for cdi in devices[0].cdi_device_ids)
    ):
        return f"unexpected answer: {answer}".replace("\n", " ")
    return ""


# --- prepare -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A driver in the prepare comparison, with the claims it prepares."""

    key: str  # EXCLUSIVE, SHARED, REFERENCE
    kind: DriverKind
    node: str
    claims: Sequence[ClaimRef]
    warmup: Sequence[ClaimRef]


def run_prepare(
    bed: Testbed, contenders: list[Contender], configs: list[workload.Config]
) -> list[dict[str, Any]]:
    entries = []
    for n, config in enumerate(configs):
        entry: dict[str, Any] = {"config": config.key, "label": config.label}
        # Exclusive and shared take turns going first: the machine's speed drifts.
        order = contenders if n % 2 == 0 else [contenders[1], contenders[0], *contenders[2:]]
        for c in order:
            driver = bed.driver(c.kind, node=c.node)
            driver.start()
            driver.wait_idle()
            server_pids = [p.pid for p in bed.server.procs]
            try:
                with machine.Load(machine.pids([driver.pid], server_pids)) as load:
                    figures = workload.run(driver, config, c.claims, c.warmup)
            finally:
                driver.stop()
                driver.cleanup()
            figures["load"] = load.figures
            entry[c.key] = figures
            prepare = figures["prepare"]
            say(
                f"  {config.description:32s} {c.key:9s} prepare "
                f"{prepare['per_call_ms']['p50']:8.2f} ms/call p50, "
                f"{prepare['claims_per_s']:7.1f} claims/s, {figures['cpu_ms_per_claim']:.2f} "
                f"ms CPU/claim, {prepare['errors'] + figures['unprepare']['errors']} errors"
            )
            for error in prepare["first_errors"]:
                say(f"    error: {error}")
        entries.append(entry)
    return entries


# --- publishing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishCase:
    key: str
    mode: str
    gpus: int

    @property
    def label(self) -> str:
        return f"{self.gpus} GPUs, {self.mode}"

    def expected(self) -> tuple[int, int]:
        """(devices, counter sets) the mock source publishes: asked of the source itself."""
        source = MockSource(
            "n", self.gpus, Path("/nonexistent"), Path("/nonexistent"), mode=self.mode
        )
        return len(source.discover()), len(source.counter_sets())


PUBLISH_CASES = (
    PublishCase("whole-128", "whole", 128),
    PublishCase("shared-128", "shared", 128),
    PublishCase("partitioned-8", "partitioned", 8),
    PublishCase("partitioned-128", "partitioned", 128),
)


class PoolWatch(publisher_scale.SliceWatch):
    """SliceWatch, and what the pool's slices hold once it is there."""

    def shape(self) -> dict[str, int]:
        with self._lock:
            specs = [s["spec"] for s in self._slices.values()]
        devices = [d for spec in specs for d in spec.get("devices") or []]
        return {
            "device_slices": sum(1 for spec in specs if spec.get("devices")),
            "counter_set_slices": sum(1 for spec in specs if spec.get("sharedCounters")),
            "devices_seen": len(devices),
            "counter_sets_seen": sum(len(spec.get("sharedCounters") or []) for spec in specs),
            "shareable_devices": sum(1 for d in devices if d.get("allowMultipleAllocations")),
            "counter_consuming_devices": sum(1 for d in devices if d.get("consumesCounters")),
        }


def measure_publish(
    bed: Testbed, case: PublishCase, steady_s: float, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Like publisher_scale.measure, for a mock mode whose device count is not its GPU count:
    start the driver on a node of its own, time until every slice of its pool is there."""
    devices, counter_sets = case.expected()
    node = f"pub-{case.key}"
    admin = bed.server.client()
    cluster.ensure_node(admin, node)
    kind = ours(case.mode)
    pool = PoolWatch(admin, kind.driver_name, node, devices)
    pool.start(timeout_s=int(timeout_s + publisher_scale.SETTLE_S + steady_s + 30))
    driver = bed.driver(kind, node=node, devices=case.gpus)
    base = {
        "case": case.key,
        "mode": case.mode,
        "gpus": case.gpus,
        "devices": devices,
        "counter_sets": counter_sets,
    }
    driver.start()
    try:
        deadline = driver.started_at + timeout_s
        while pool.complete_at is None and time.perf_counter() < deadline:
            driver.proc.check()
            time.sleep(0.005)
        if pool.complete_at is None:
            return {
                **base,
                "published_s": None,
                "slices": pool.slices(),
                **pool.shape(),
                "problem": f"not complete after {timeout_s:.0f} s; driver log:\n"
                + driver.log_tail(15),
            }
        published_s = pool.complete_at - driver.started_at
        time.sleep(publisher_scale.SETTLE_S)
        before = pool.count()
        time.sleep(steady_s)
        writes = pool.count() - before
        return {
            **base,
            "published_s": round(published_s, 3),
            "slices": pool.slices(),
            **pool.shape(),
            "writes_at_start": before,
            "steady_window_s": steady_s,
            "steady_writes": writes,
            "steady_writes_per_min": round(writes * 60 / steady_s, 1),
            "rss_mib": round(driver.rss_mib(), 1),
        }
    finally:
        driver.stop()
        driver.cleanup()


# --- report --------------------------------------------------------------------------------

PREPARE_COLS = [
    "prepare.per_call_ms.p50",
    "prepare.per_call_ms.p95",
    "prepare.per_call_ms.p99",
    "prepare.claims_per_s",
    "unprepare.claims_per_s",
    "cpu_ms_per_claim",
    "peak_rss_mib",
    "errors",
    "load.other_cores",
]


def render(results: dict[str, Any]) -> str:
    rows: list[list[object]] = []
    for entry in results["prepare"]:
        for n, key in enumerate((EXCLUSIVE, SHARED, REFERENCE)):
            if key in entry:
                figures = {**entry[key], "errors": _errors(entry[key])}
                rows.append([entry["label"] if n == 0 else "", key, *_cols(figures)])
        if EXCLUSIVE in entry and SHARED in entry:
            ratios: list[object] = [
                ratio(lookup(entry[SHARED], c), lookup(entry[EXCLUSIVE], c))
                for c in PREPARE_COLS[:7]
            ]
            rows.append(["", "shared/exclusive", *ratios, None, None])
    share = results["settings"]["share"]
    parts = [
        table(
            f"NodePrepareResources / NodeUnprepareResources ({results['settings']['claims']:,} "
            f"claims each; a share = {share['memory']} memory + {share['compute']} compute)",
            [
                "claims/call x concurrency",
                "driver",
                "prepare ms/call p50",
                "p95",
                "p99",
                "prepare claims/s",
                "unprepare claims/s",
                "CPU ms/claim",
                "peak RSS MiB",
                "errors",
                "other load (cores)",
            ],
            rows,
        )
    ]
    rows = []
    for e in results["publisher"]:
        published = e["published_s"]
        rows.append(
            [
                e["case"],
                e["mode"],
                e["gpus"],
                f"{e['devices_seen']}/{e['devices']}",
                e["counter_sets_seen"],
                f"{e['slices']} ({e['device_slices']} + {e['counter_set_slices']})",
                e["shareable_devices"],
                e["counter_consuming_devices"],
                published,
                e.get("steady_writes_per_min"),
                e.get("rss_mib"),
            ]
        )
    parts.append(
        table(
            "ResourceSlices: process start -> all slices present; writes in "
            f"{results['settings']['steady_window_s']:.0f} s of steady state",
            [
                "case",
                "mode",
                "GPUs",
                "devices",
                "counter sets",
                "slices (devices + counters)",
                "shareable",
                "consuming counters",
                "published s",
                "writes/min",
                "RSS MiB",
            ],
            rows,
        )
    )
    problems = [f"  {e['case']}: {e['problem']}" for e in results["publisher"] if e.get("problem")]
    if problems:
        parts.append("Not published:\n" + "\n".join(problems))
    if results["notes"]:
        parts.append("Notes:\n" + "\n".join(f"  - {n}" for n in results["notes"]))
    return "\n\n".join(parts)


def _errors(figures: dict[str, Any]) -> int:
    return int(figures["prepare"]["errors"]) + int(figures["unprepare"]["errors"])


def _cols(figures: dict[str, Any]) -> list[object]:
    return [lookup(figures, c) for c in PREPARE_COLS]


def say(text: str) -> None:
    print(text, flush=True)


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--claims", type=int, default=500, help="claims per driver")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="claims/call x concurrency")
    parser.add_argument("--steady-s", type=float, default=10.0, help="publisher steady window")
    parser.add_argument("--no-reference", action="store_true", help="skip the Go driver")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    missing = cluster.missing_binaries()
    if missing:
        sys.exit(f"not cached: {', '.join(missing)} (run tests/e2e/local/setup.sh)")
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    described = machine.describe()
    notes: list[str] = []
    exclusive = ours("whole")
    kinds: list[DriverKind] = [exclusive]
    versions = {"ours": f"dra-cdi-driver {dra_cdi_driver.__version__} ({git_version()})"}
    if not args.no_reference:
        try:
            kinds.append(drivers.theirs(reference.ensure_built(), reference.version()))
            versions["reference"] = f"{reference.MODULE} {reference.version()}"
        except reference.ReferenceUnavailable as err:
            notes.append(f"reference driver not measured: {err}")
            say(f"reference driver unavailable, measuring ours only: {err}")
    configs = parse_configs(args.configs)
    say(
        f"{described['cpus']} CPUs ({described['cpu_model']}), load average "
        + " ".join(described["load_avg_at_start"])
    )
    with testbed(kinds, args.claims) as bed:
        versions["kubernetes"] = bed.version
        admin = bed.server.client()
        cluster.ensure_node(admin, SHARED_NODE)
        cluster.ensure_namespace(admin, SHARED_NAMESPACE)
        shared = create_shared_claims(
            admin,
            driver=exclusive.driver_name,
            node=SHARED_NODE,
            gpus=DEVICES,
            count=args.claims + WARMUP_CLAIMS,
        )
        if not shared.kept_by_server:
            notes.append(
                "the API server did not keep shareID/consumedCapacity in the claims' status "
                "(DRAConsumableCapacity off?): the shared rows prepare whole devices"
            )
        say(
            f"kube-apiserver {bed.version} + etcd up, {args.claims:,} claims per driver "
            f"allocated in {time.monotonic() - started:.0f} s; shares of "
            f"{shared.share.memory} + {shared.share.compute} compute, kept by the server: "
            f"{shared.kept_by_server}"
        )
        contenders = [
            Contender(EXCLUSIVE, exclusive, NODE, bed.claims["ours"], bed.warmup["ours"]),
            Contender(SHARED, ours("shared"), SHARED_NODE, shared.claims, shared.warmup),
        ]
        if len(kinds) > 1:
            theirs = kinds[1]
            contenders.append(
                Contender(REFERENCE, theirs, NODE, bed.claims[theirs.key], bed.warmup[theirs.key])
            )

        check = bed.driver(ours("shared"), node=SHARED_NODE)
        check.start()
        try:
            problem = check_share_answer(
                check, shared.warmup[0], shared.share_ids[shared.warmup[0].uid]
            )
        finally:
            check.stop()
            check.cleanup()
        if problem:
            notes.append(f"a shared claim's prepare answer is not as expected: {problem}")
        say(f"shared prepare answer carries the shareID: {not problem}")

        say("prepare / unprepare:")
        prepare_figures = run_prepare(bed, contenders, configs)
        say("publisher:")
        publisher_figures = []
        for case in PUBLISH_CASES:
            figures = measure_publish(bed, case, args.steady_s)
            publisher_figures.append(figures)
            say(
                f"  {case.label:20s} "
                + (
                    f"published after {figures['published_s']} s: {figures['devices_seen']} "
                    f"devices, {figures['slices']} slice(s), {figures['steady_writes']} writes in "
                    f"{args.steady_s:.0f} s"
                    if figures["published_s"] is not None
                    else f"not published: {figures['problem']}"
                )
            )
    notes.append(
        "partitioned: the mock publishes 7 devices per GPU (the whole GPU, 2 halves, "
        "4 quarters) and one counter set; no flag changes that"
    )
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python -m bench.bench_sharing", *sys.argv[1:]]),
        "machine": described,
        "versions": versions,
        "settings": {
            "claims": args.claims,
            "warmup_claims": WARMUP_CLAIMS,
            "gpus_per_node": DEVICES,
            "configs": [c.key for c in configs],
            "share": {"memory": shared.share.memory, "compute": shared.share.compute},
            "share_fields_kept_by_server": shared.kept_by_server,
            "steady_window_s": args.steady_s,
            "request": REQUEST,
        },
        "prepare": prepare_figures,
        "publisher": publisher_figures,
        "notes": notes,
    }
    results["elapsed_s"] = round(time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sharing-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(render(results))
    say("")
    say(f"wrote {path} in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
