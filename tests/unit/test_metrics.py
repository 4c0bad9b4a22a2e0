"""The metrics a user scrapes: what the driver counts, and when."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from dra_cdi_driver import __version__
from dra_cdi_driver.cdi import SpecStore
from dra_cdi_driver.checkpoint import Checkpoint, ClaimLocks
from dra_cdi_driver.devices import Device, Inventory
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.driver import Driver
from dra_cdi_driver.kubeapi.publisher import Publisher
from dra_cdi_driver.kubeapi.slice_api import SliceApiError
from dra_cdi_driver.metrics import Metrics, api_error_kind, count_api_errors
from dra_cdi_driver.model import ClaimError, ClaimRef, PreparedClaim, PreparedDevice
from tests.fakeapi import claim_object, result
from tests.unit.test_publisher import FakeSliceApi
from tests.unit.test_publisher import inventory as slice_inventory

DRIVER = "gpu.cdi.example.com"
NODE = "node-1"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _ref(n: int) -> ClaimRef:
    return ClaimRef("default", f"c{n}", _uid(n))


class Claims:
    """The API server: knows the claims in `objects`, by uid."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def add(self, n: int, device: str) -> ClaimRef:
        self.objects[_uid(n)] = claim_object(f"c{n}", _uid(n), [result(device)])
        return _ref(n)

    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        if claim.uid not in self.objects:
            raise ClaimError(claim, "ResourceClaim does not exist")
        return self.objects[claim.uid]


def _inventory(tmp_path: Path) -> Inventory:
    nowhere = tmp_path / "no-mock-files"
    inventory = Inventory(MockSource(NODE, 8, dev_dir=nowhere, lib_dir=nowhere, bin_dir=nowhere))
    inventory.refresh()
    return inventory


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    metrics = Metrics()
    checkpoint = Checkpoint(tmp_path / "checkpoint", "boot")
    inventory = _inventory(tmp_path)
    metrics.watch_checkpoint(checkpoint)
    metrics.watch_inventory(inventory)
    driver = Driver(
        driver_name=DRIVER,
        node_name=NODE,
        inventory=inventory,
        claims=Claims(),
        specs=SpecStore(tmp_path / "cdi", f"{DRIVER}/gpu"),
        checkpoint=checkpoint,
        locks=ClaimLocks(tmp_path / "locks"),
        metrics=metrics,
        workers=2,
    )
    driver.recover()
    yield driver
    driver.close()


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def _claims(metrics: Metrics, operation: str, outcome: str) -> tuple[float, float]:
    """The count of claims with that outcome, and of their duration observations."""
    labels = {"operation": operation, "result": outcome}
    return (
        _value(metrics, "dra_cdi_driver_claim_operations_total", **labels),
        _value(metrics, "dra_cdi_driver_claim_operation_duration_seconds_count", **labels),
    )


def test_every_series_exists_before_anything_happened() -> None:
    metrics = Metrics()
    for operation in ("prepare", "unprepare"):
        for outcome in ("success", "error", "timeout"):
            assert _claims(metrics, operation, outcome) == (0, 0)
    for kind in ("4xx", "5xx", "unreachable", "timeout"):
        assert _value(metrics, "dra_cdi_driver_api_errors_total", kind=kind) == 0
    assert _value(metrics, "dra_cdi_driver_build_info", version=__version__, python=_python()) == 1


def _python() -> str:
    import platform

    return platform.python_version()


def test_each_claim_counts_once_with_the_outcome_the_kubelet_got(driver: Driver) -> None:
    claims = driver.claims
    assert isinstance(claims, Claims)
    one, two = claims.add(1, "gpu-0"), claims.add(2, "gpu-1")
    driver.prepare([one, two, _ref(3)])  # two prepared, one the API server does not know
    driver.prepare([one])  # again: answered from the checkpoint, a success again
    other_pod = ClaimLocks(driver.locks.dir.path if driver.locks.dir else None)
    with other_pod.hold(_uid(2), time.monotonic() + 10):  # busy in the other pod
        outcome = driver.unprepare([two], deadline=time.monotonic() + 0.5)[_uid(2)]
        assert isinstance(outcome, ClaimError) and outcome.timed_out
    driver.unprepare([one, two])

    metrics = driver.metrics
    assert _claims(metrics, "prepare", "success") == (3, 3)
    assert _claims(metrics, "prepare", "error") == (1, 1)
    assert _claims(metrics, "unprepare", "timeout") == (1, 1)
    assert _claims(metrics, "unprepare", "success") == (2, 2)
    calls = "dra_cdi_driver_kubelet_call_duration_seconds_count"
    assert _value(metrics, calls, operation="prepare") == 2
    assert _value(metrics, calls, operation="unprepare") == 2
    waited = _value(
        metrics,
        "dra_cdi_driver_claim_operation_duration_seconds_sum",
        operation="unprepare",
        result="timeout",
    )
    assert 0.2 < waited < 2  # the time it waited for the other pod


def test_a_claim_still_running_at_the_deadline_counts_as_a_timeout(driver: Driver) -> None:
    claims = driver.claims
    assert isinstance(claims, Claims)
    one, two = claims.add(1, "gpu-0"), claims.add(2, "gpu-1")
    with ClaimLocks(driver.locks.dir.path if driver.locks.dir else None).hold(
        _uid(2), time.monotonic() + 10
    ):
        outcomes = driver.prepare([one, two], deadline=time.monotonic() + 0.5)
    assert isinstance(outcomes[_uid(1)], PreparedClaim)
    assert _claims(driver.metrics, "prepare", "success") == (1, 1)
    assert _claims(driver.metrics, "prepare", "timeout") == (1, 1)


def test_prepared_claims_and_devices_are_what_is_on_disk_now(
    driver: Driver, tmp_path: Path
) -> None:
    claims = driver.claims
    assert isinstance(claims, Claims)
    driver.prepare([claims.add(1, "gpu-0")])
    # The other pod of a rolling update prepared a claim of two devices meanwhile.
    other = Checkpoint(tmp_path / "checkpoint", "boot")
    devices = tuple(
        PreparedDevice(("gpu",), NODE, name, (f"{DRIVER}/gpu={name}-{_uid(7)}",))
        for name in ("gpu-5", "gpu-6")
    )
    other.add(PreparedClaim(_ref(7), devices, {"cdiVersion": "0.3.0"}))
    metrics = driver.metrics
    assert _value(metrics, "dra_cdi_driver_prepared_claims") == 2
    assert _value(metrics, "dra_cdi_driver_prepared_devices") == 3
    driver.unprepare([_ref(1), _ref(7)])
    assert _value(metrics, "dra_cdi_driver_prepared_claims") == 0
    assert _value(metrics, "dra_cdi_driver_prepared_devices") == 0


def test_devices_by_health_count_the_inventory_and_take_a_health_model(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path)
    plain = Metrics()
    plain.watch_inventory(inventory)
    assert _value(plain, "dra_cdi_driver_devices", health="healthy") == 8
    assert _value(plain, "dra_cdi_driver_devices", health="unhealthy") == 0
    assert _value(plain, "dra_cdi_driver_devices", health="unknown") == 0

    def health(device: Device) -> str:  # what a source with a health model will pass
        return {"gpu-0": "unhealthy", "gpu-1": "unknown"}.get(device.name, "healthy")

    modelled = Metrics()
    modelled.watch_inventory(inventory, health)
    assert _value(modelled, "dra_cdi_driver_devices", health="healthy") == 6
    assert _value(modelled, "dra_cdi_driver_devices", health="unhealthy") == 1
    assert _value(modelled, "dra_cdi_driver_devices", health="unknown") == 1


class _Response:
    def __init__(self, status: int) -> None:
        self.status = status


class _Rest:
    def __init__(self) -> None:
        self.next: list[Any] = []

    def request(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.next.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class _Api:
    def __init__(self) -> None:
        self.rest_client = _Rest()


def test_api_errors_are_counted_by_kind_whichever_layer_reports_them() -> None:
    metrics = Metrics()
    api = _Api()
    count_api_errors(api, metrics)
    pool: Any = None
    api.rest_client.next = [
        _Response(200),
        _Response(404),  # newer clients return an HTTP error...
        ApiException(status=503),  # ...older ones raise it
        ApiException(status=0, reason="SSL"),
        urllib3.exceptions.ReadTimeoutError(pool, "/apis", "read timed out"),
        urllib3.exceptions.MaxRetryError(
            pool, "/apis", urllib3.exceptions.NewConnectionError(pool, "refused")
        ),
        ValueError("not an API error"),
    ]
    for _ in range(7):
        with contextlib.suppress(Exception):
            api.rest_client.request("GET", "https://api/apis")
    counts = {
        kind: _value(metrics, "dra_cdi_driver_api_errors_total", kind=kind)
        for kind in ("4xx", "5xx", "unreachable", "timeout")
    }
    assert counts == {"4xx": 1, "5xx": 1, "unreachable": 2, "timeout": 1}
    assert api_error_kind(ConnectionRefusedError()) == "unreachable"
    assert api_error_kind(KeyError("x")) is None


def test_the_publisher_counts_its_writes_and_failed_attempts() -> None:
    metrics = Metrics()
    api = FakeSliceApi()
    publisher = Publisher(api, slice_inventory(4), max_backoff_s=0.05, metrics=metrics)
    publisher.sync_once()
    writes = "dra_cdi_driver_resourceslice_writes_total"
    assert _value(metrics, writes, operation="create") == 1
    publisher.sync_once()  # in sync: no write
    assert _value(metrics, writes, operation="create") == 1
    [name] = api.ours()
    stray = api.ours()[name]
    stray["metadata"]["name"] = "stray"
    api.put(stray, "ADDED")
    publisher.sync_once()  # a new generation over the pool, and the stray one deleted
    assert _value(metrics, writes, operation="update") == 1
    assert _value(metrics, writes, operation="delete") == 1

    api.fail["list"] = [SliceApiError("HTTP 500", 500), SliceApiError("HTTP 500", 500), None]
    assert publisher._sync_with_retry() is not None
    assert _value(metrics, "dra_cdi_driver_resourceslice_errors_total", activity="publish") == 2
    assert _value(metrics, "dra_cdi_driver_resourceslice_errors_total", activity="watch") == 0


def test_render_speaks_the_text_format_or_openmetrics_as_asked() -> None:
    metrics = Metrics()
    metrics.claim_done("prepare", "success", 0.004)
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["dra_cdi_driver_claim_operations"].type == "counter"
    assert families["dra_cdi_driver_claim_operation_duration_seconds"].type == "histogram"
    assert "_created" not in body.decode()
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
