"""The kubelet's workload: NodePrepareResources for every claim, in calls of `batch` claims,
`concurrency` calls at a time; then NodeUnprepareResources for them the same way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.allocate import ClaimRef
from bench.drivers import DriverProcess
from bench.stats import summary

Call = Callable[[Sequence[ClaimRef]], list[str]]


@dataclass(frozen=True)
class Config:
    batch: int  # claims per call
    concurrency: int  # calls in flight

    @property
    def key(self) -> str:
        return f"{self.batch}x{self.concurrency}"

    @property
    def label(self) -> str:
        return f"{self.batch} x {self.concurrency}"

    @property
    def description(self) -> str:
        claims = "claim" if self.batch == 1 else "claims"
        return f"{self.batch} {claims}/call, concurrency {self.concurrency}"


@dataclass
class Phase:
    """The calls of one kind (prepare or unprepare) over all claims."""

    call_ms: list[float] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)  # a call's latency / its claims
    wall_s: float = 0.0
    cpu_s: float = 0.0
    claims: int = 0
    errors: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "calls": len(self.call_ms),
            "claims": self.claims,
            "per_call_ms": summary(self.call_ms),
            "per_claim_ms": summary(self.claim_ms),
            "claims_per_s": round(self.claims / self.wall_s, 1) if self.wall_s else None,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
        }


def batches(claims: Sequence[ClaimRef], size: int) -> list[Sequence[ClaimRef]]:
    return [claims[i : i + size] for i in range(0, len(claims), size)]


def run_phase(
    call: Call, work: list[Sequence[ClaimRef]], concurrency: int, cpu: Callable[[], float]
) -> Phase:
    """Run every batch through `call`, `concurrency` at a time; time each call."""
    phase = Phase(claims=sum(len(b) for b in work))
    pending: Iterator[Sequence[ClaimRef]] = iter(work)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                batch = next(pending, None)
            if batch is None:
                return
            started = time.perf_counter()
            errors = call(batch)
            ms = (time.perf_counter() - started) * 1000
            with lock:
                phase.call_ms.append(ms)
                phase.claim_ms.append(ms / len(batch))
                phase.errors.extend(errors)

    cpu_before = cpu()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="kubelet") as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    phase.wall_s = time.perf_counter() - started
    phase.cpu_s = cpu() - cpu_before
    return phase


def run(
    driver: DriverProcess,
    config: Config,
    claims: Sequence[ClaimRef],
    warmup: Sequence[ClaimRef],
) -> dict[str, Any]:
    """Warm up (connections, API discovery), then prepare and unprepare every claim."""
    dra = driver.dra()
    try:
        warm = batches(warmup, 1)
        run_phase(dra.prepare, warm, config.concurrency, driver.cpu_seconds)
        run_phase(dra.unprepare, warm, config.concurrency, driver.cpu_seconds)
        work = batches(claims, config.batch)
        prepare = run_phase(dra.prepare, work, config.concurrency, driver.cpu_seconds)
        unprepare = run_phase(dra.unprepare, work, config.concurrency, driver.cpu_seconds)
    finally:
        dra.close()
    cpu_s = prepare.cpu_s + unprepare.cpu_s
    return {
        "prepare": prepare.figures(),
        "unprepare": unprepare.figures(),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_claim": round(cpu_s * 1000 / len(claims), 3),
        "peak_rss_mib": round(driver.peak_rss_mib(), 1),
    }
