"""Start-up: from process start until the kubelet's GetInfo on the registration socket is
answered; until the first claim, sent right then, is prepared; until the process goes idle
(slices published, lazy imports done); and the resident memory once idle."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.drivers import DriverKind
from bench.testbed import Testbed


def once(bed: Testbed, kind: DriverKind) -> dict[str, float]:
    driver = bed.driver(kind)
    try:
        registration_s = driver.start()
        claim = bed.warmup[kind.key][:1]
        dra = driver.dra()
        try:
            errors = dra.prepare(claim)
            first_claim_s = time.perf_counter() - driver.started_at
            dra.unprepare(claim)
        finally:
            dra.close()
        idle_s = time.perf_counter() - driver.started_at + driver.wait_idle()
        return {
            "registration_s": registration_s,
            "first_claim_s": first_claim_s if not errors else float("nan"),
            "idle_s": idle_s,
            "cpu_s": driver.cpu_seconds(),
            "idle_rss_mib": driver.rss_mib(),
        }
    finally:
        driver.stop()
        driver.cleanup()


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Medians over the starts, and the registration times themselves."""

    def median(key: str, digits: int) -> float:
        return round(statistics.median(s[key] for s in samples), digits)

    return {
        "starts": len(samples),
        "registration_s": median("registration_s", 3),
        "registration_s_samples": [round(s["registration_s"], 3) for s in samples],
        "first_claim_s": median("first_claim_s", 3),
        "idle_s": median("idle_s", 2),
        "startup_cpu_s": median("cpu_s", 2),
        "idle_rss_mib": median("idle_rss_mib", 1),
    }
