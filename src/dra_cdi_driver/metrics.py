"""Prometheus metrics, served at /metrics on the healthz port (kubelet/healthz.py).

One `Metrics` per process owns a registry of its own. The parts of the driver that count
something are handed it and call one method per event (`claim_done`, `slice_written`, ...);
nothing else of the driver imports prometheus_client. The gauges (prepared claims and
devices, devices by health) are read from the checkpoint and the inventory when scraped,
so they can never drift from what is on disk.

Names follow Prometheus' conventions: the `dra_cdi_driver_` prefix, base units (seconds),
`_total` for counters. Every labelled series exists from the start, at 0.
"""

from __future__ import annotations

import platform
import socket
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client
import urllib3
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from dra_cdi_driver import __version__

if TYPE_CHECKING:
    from dra_cdi_driver.checkpoint import Checkpoint
    from dra_cdi_driver.devices import Device, Inventory

# A counter's `_created` series doubles every scrape for nothing a dashboard uses.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

OPERATIONS = ("prepare", "unprepare")
RESULTS = ("success", "error", "timeout")
# The three states of the kubelet's DRA health API (dra_health_v1alpha1).
HEALTH_STATES = ("healthy", "unhealthy", "unknown")
SLICE_WRITES = ("create", "update", "delete")
PUBLISHER_ACTIVITIES = ("publish", "watch")
API_ERROR_KINDS = ("4xx", "5xx", "unreachable", "timeout")

# A checkpoint hit takes ~0.1 ms, a prepare with its API read a few ms, and an API server
# that does not answer holds a claim (and its call) up to the kubelet's 45 s deadline.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 45)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        claims = Counter(
            "dra_cdi_driver_claim_operations",
            "Claims prepared or unprepared, one per claim of each kubelet call, by result "
            "(timeout: the call's deadline came first)",
            ["operation", "result"],
            registry=registry,
        )
        claim_seconds = Histogram(
            "dra_cdi_driver_claim_operation_duration_seconds",
            "Time to prepare or unprepare one claim, by result",
            ["operation", "result"],
            buckets=BUCKETS,
            registry=registry,
        )
        call_seconds = Histogram(
            "dra_cdi_driver_kubelet_call_duration_seconds",
            "Time to answer one NodePrepareResources or NodeUnprepareResources call",
            ["operation"],
            buckets=BUCKETS,
            registry=registry,
        )
        slice_writes = Counter(
            "dra_cdi_driver_resourceslice_writes",
            "ResourceSlices of this node written by the publisher",
            ["operation"],
            registry=registry,
        )
        publisher_errors = Counter(
            "dra_cdi_driver_resourceslice_errors",
            "Failed attempts to publish or watch this node's ResourceSlices (each is retried)",
            ["activity"],
            registry=registry,
        )
        api_errors = Counter(
            "dra_cdi_driver_api_errors",
            "Failed requests to the Kubernetes API server, by kind: the HTTP status class, "
            "or unreachable, or timeout",
            ["kind"],
            registry=registry,
        )
        Info("dra_cdi_driver_build", "The driver's version and Python's", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        prometheus_client.ProcessCollector(registry=registry)

        # Bound once: every series is exported from the start, and the prepare path pays
        # for no label lookup.
        self._claims = {
            (op, result): (claims.labels(op, result), claim_seconds.labels(op, result))
            for op in OPERATIONS
            for result in RESULTS
        }
        self._calls = {op: call_seconds.labels(op) for op in OPERATIONS}
        self._slice_writes = {op: slice_writes.labels(op) for op in SLICE_WRITES}
        self._publisher_errors = {a: publisher_errors.labels(a) for a in PUBLISHER_ACTIVITIES}
        self._api_errors = {kind: api_errors.labels(kind) for kind in API_ERROR_KINDS}

    # --- events ------------------------------------------------------------------------

    def claim_done(self, operation: str, result: str, seconds: float) -> None:
        count, duration = self._claims[(operation, result)]
        count.inc()
        duration.observe(seconds)

    def call_done(self, operation: str, seconds: float) -> None:
        self._calls[operation].observe(seconds)

    def slice_written(self, operation: str) -> None:
        self._slice_writes[operation].inc()

    def publisher_failed(self, activity: str) -> None:
        self._publisher_errors[activity].inc()

    def api_failed(self, kind: str) -> None:
        self._api_errors[kind].inc()

    # --- state read when scraped -------------------------------------------------------

    def watch_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.registry.register(_CheckpointCollector(checkpoint))

    def watch_inventory(
        self, inventory: Inventory, health: Callable[[Device], str] | None = None
    ) -> None:
        """Devices by health; `health` maps a device to one of HEALTH_STATES (default: what
        the inventory knows of it; a device it has no health for yet is unknown)."""

        def known(device: Device) -> str:
            state = inventory.health_of(device.name)
            if state is None:
                return "unknown"
            return "healthy" if state.healthy else "unhealthy"

        self.registry.register(_DeviceCollector(inventory, health or known))

    # --- exposition --------------------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body and content type, in the format the scraper asked for."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _CheckpointCollector:
    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint

    def describe(self) -> list[Metric]:
        return list(self._families(0, 0))

    def collect(self) -> Iterator[Metric]:
        # From the disk: during a rolling update both pods report the node's claims.
        claims = list(self._checkpoint.claims())
        return self._families(len(claims), sum(len(c.devices) for c in claims))

    def _families(self, claims: int, devices: int) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dra_cdi_driver_prepared_claims",
            "Claims prepared on this node (the checkpoint's records)",
            value=claims,
        )
        yield GaugeMetricFamily(
            "dra_cdi_driver_prepared_devices",
            "Devices of the prepared claims (a device shared by two claims counts twice)",
            value=devices,
        )


class _DeviceCollector:
    def __init__(self, inventory: Inventory, health: Callable[[Device], str]) -> None:
        self._inventory = inventory
        self._health = health

    def describe(self) -> list[Metric]:
        return [self._family(Tally())]

    def collect(self) -> Iterator[Metric]:
        yield self._family(Tally(self._health(d) for d in self._inventory.devices()))

    def _family(self, counts: Tally[str]) -> Metric:
        family = GaugeMetricFamily(
            "dra_cdi_driver_devices",
            "Devices this node publishes, by health",
            labels=["health"],
        )
        for state in HEALTH_STATES:
            family.add_metric([state], counts.get(state, 0))
        return family


# --- the API client ----------------------------------------------------------------------


def api_error_kind(err: BaseException) -> str | None:
    """What kind of API failure `err` is, or None when it is not one."""
    if isinstance(err, ApiException):
        status = int(err.status or 0)  # 0: the client's own failure (TLS, a bad answer)
        return f"{status // 100}xx" if status >= 400 else "unreachable"
    if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
        err = err.reason
    if isinstance(err, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError, too
        return "unreachable"
    if isinstance(err, urllib3.exceptions.TimeoutError | TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(err, urllib3.exceptions.HTTPError | OSError):
        return "unreachable"
    return None


def count_api_errors(api: Any, metrics: Metrics) -> None:
    """Count every failed request of the kubernetes client `api` (claim reads and the
    publisher's calls alike) by kind. Its REST client's `request` is the one method every
    request passes through; older clients raise an HTTP error there, newer ones return it."""
    rest = api.rest_client
    request = rest.request

    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            response = request(*args, **kwargs)
        except Exception as err:
            kind = api_error_kind(err)
            if kind is not None:
                metrics.api_failed(kind)
            raise
        status = getattr(response, "status", None)
        if isinstance(status, int) and status >= 400:
            metrics.api_failed(f"{status // 100}xx")
        return response

    rest.request = counted
