"""ResourceSlice publishing of a real driver process: time from process start until the API
server holds every slice of its pool, and API writes per minute once nothing changes.

The writes are counted from a watch on the driver's slices, started before the driver: every
create, update or delete of one of its slices is one event (an update that changes nothing
is not a write the server stores and is not seen; bench/bench_publisher.py counts calls).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from kubernetes import client, watch

from bench import cluster
from bench.bench_publisher import complete
from bench.drivers import DriverKind
from bench.testbed import Testbed

GROUP = "resource.k8s.io"
SETTLE_S = 2.0


class SliceWatch:
    """Follows the slices of one driver on one node; notes when the pool is complete."""

    def __init__(self, api: client.ApiClient, driver: str, node: str, devices: int) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._selector = f"spec.driver={driver},spec.nodeName={node}"
        self._devices = devices
        self._lock = threading.Lock()
        self._slices: dict[str, Any] = {}
        self.events = 0
        self.complete_at: float | None = None
        self.failure: str | None = None

    def start(self, timeout_s: int) -> None:
        listed: Any = self._objects.list_cluster_custom_object(
            GROUP, "v1", "resourceslices", field_selector=self._selector
        )
        version = listed["metadata"]["resourceVersion"]
        thread = threading.Thread(target=self._run, args=(version, timeout_s), daemon=True)
        thread.start()

    def _run(self, version: str, timeout_s: int) -> None:
        try:
            for event in watch.Watch().stream(
                self._objects.list_cluster_custom_object,
                GROUP,
                "v1",
                "resourceslices",
                field_selector=self._selector,
                resource_version=version,
                timeout_seconds=timeout_s,
            ):
                self._handle(event["type"], event["object"])
        except Exception as err:  # the API server went away at the end of the run
            self.failure = repr(err)

    def _handle(self, kind: str, obj: Any) -> None:
        now = time.perf_counter()
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        with self._lock:
            self.events += 1
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self._slices.pop(name, None)
            else:
                self._slices[name] = obj
            if self.complete_at is None and complete(list(self._slices.values()), self._devices):
                self.complete_at = now

    def count(self) -> int:
        with self._lock:
            return self.events

    def slices(self) -> int:
        with self._lock:
            return len(self._slices)


def measure(
    bed: Testbed, kind: DriverKind, devices: int, steady_s: float, timeout_s: float = 30.0
) -> dict[str, Any]:
    """Start a driver with `devices` devices on a node of its own; time its publishing."""
    node = f"pub-{kind.key}-{devices}"
    admin = bed.server.client()
    cluster.ensure_node(admin, node)
    slices = SliceWatch(admin, kind.driver_name, node, devices)
    slices.start(timeout_s=int(timeout_s + SETTLE_S + steady_s + 30))
    driver = bed.driver(kind, node=node, devices=devices)
    driver.start()
    try:
        deadline = driver.started_at + timeout_s
        while slices.complete_at is None and time.perf_counter() < deadline:
            driver.proc.check()
            time.sleep(0.005)
        if slices.complete_at is None:
            return {
                "devices": devices,
                "published_s": None,
                "slices": slices.slices(),
                "problem": _problem(driver.log_tail(200)) or f"not complete after {timeout_s} s",
            }
        published_s = slices.complete_at - driver.started_at
        time.sleep(SETTLE_S)
        before = slices.count()
        time.sleep(steady_s)
        writes = slices.count() - before
        return {
            "devices": devices,
            "published_s": round(published_s, 3),
            "slices": slices.slices(),
            "writes_at_start": before,
            "steady_window_s": steady_s,
            "steady_writes": writes,
            "steady_writes_per_min": round(writes * 60 / steady_s, 1),
            "rss_mib": round(driver.rss_mib(), 1),
        }
    finally:
        driver.stop()
        driver.cleanup()


def _problem(log: str) -> str | None:
    """The driver's own account of why its slices are not there, from its log."""
    for line in reversed(log.splitlines()):
        m = re.search(r"(Too many: \d+: must have at most \d+ items)", line)
        if m:
            return f"the API server rejected its slice: spec.devices: {m.group(1)}"
    return None
