"""Writes our devices' status into each prepared ResourceClaim (DRAResourceClaimDeviceStatus).

After a claim is prepared, `status.devices[]` gets an entry per device of ours: a `Ready`
condition (False, reason Unhealthy, while the device is unhealthy) and `data` with the
device's uuid, model and CDI device ids. The write is a server-side apply of the status
subresource as our own field manager (`<driver>/<node>`), so it touches nothing of the
scheduler's or of other drivers'; after unprepare the same apply with no devices takes our
entries back.

It is off the critical path: prepare and unprepare only queue the claim, and one
background thread writes. A failed write is retried with backoff and logged once per
distinct error; it never fails a prepare. Each write is computed from what is true when it
is made (the checkpoint's record, the device's health), so the queue holds claims, not
writes, and a burst of changes to one claim costs one write.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.checkpoint import Checkpoint
from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.health import DeviceHealth
from dra_cdi_driver.kubeapi.client import (
    REQUEST_TIMEOUT_S,
    RESOURCE_GROUP,
    NoApiError,
    ResourceApiVersion,
)
from dra_cdi_driver.kubeapi.slices import rfc3339
from dra_cdi_driver.logs import kv
from dra_cdi_driver.model import ClaimRef, PreparedClaim, PreparedDevice

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
MAX_BACKOFF_S = 60.0
READY = "Ready"


def field_manager(driver_name: str, node_name: str) -> str:
    # A field manager name is at most 128 characters; node and driver names fit.
    return f"{driver_name}/{node_name}"[:128]


def device_status(
    driver_name: str,
    device: PreparedDevice,
    health: DeviceHealth | None,
    attributes: dict[str, Any],
    ready_since: float,
) -> dict[str, Any]:
    """One `status.devices[]` entry of ours."""
    healthy = health is None or health.healthy
    # Ready since prepare, or since the device recovered; not ready since it failed.
    since = ready_since if health is None else health.since
    if healthy:
        since = max(ready_since, since)
    condition = {
        "type": READY,
        "status": "True" if healthy else "False",
        "reason": "Prepared" if healthy else "Unhealthy",
        "message": "prepared for the claim's pods"
        if healthy
        else f"the device is unhealthy: {health.reason if health else ''}",
        "lastTransitionTime": rfc3339(since),
    }
    data: dict[str, Any] = {"cdiDeviceIDs": list(device.cdi_device_ids)}
    for key, names in (("uuid", ("uuid",)), ("model", ("productName", "model"))):
        value = next((attributes[n] for n in names if isinstance(attributes.get(n), str)), None)
        if value is not None:
            data[key] = value
    entry: dict[str, Any] = {
        "driver": driver_name,
        "pool": device.pool,
        "device": device.device,
        "conditions": [condition],
        "data": data,
    }
    if device.share_id is not None:
        entry["shareID"] = device.share_id
    return entry


class ClaimStatusWriter:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        driver_name: str,
        node_name: str,
        inventory: Inventory,
        checkpoint: Checkpoint,
    ) -> None:
        self.driver_name = driver_name
        self.node_name = node_name
        self.manager = field_manager(driver_name, node_name)
        self._objects = client.CustomObjectsApi(api)
        self._version = ResourceApiVersion(api)
        self._inventory = inventory
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due: list[tuple[float, str]] = []  # (when, uid): a heap
        self._claims: dict[str, ClaimRef] = {}  # queued claims by uid
        self._failures: dict[str, int] = {}
        self._ready_since: dict[str, float] = {}
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        inventory.subscribe_health(self._health_changed)

    # -- what the driver calls (never blocks on the API) --

    def prepared(self, claim: PreparedClaim) -> None:
        if claim.devices:
            with self._lock:
                self._ready_since.setdefault(claim.claim.uid, time.time())
            self._queue(claim.claim)

    def unprepared(self, claim: ClaimRef) -> None:
        with self._lock:
            self._ready_since.pop(claim.uid, None)
        self._queue(claim)

    def _health_changed(self, changed: dict[str, DeviceHealth]) -> None:
        for prepared in self._checkpoint.claims():
            if any(d.device in changed for d in prepared.devices):
                self._queue(prepared.claim)

    def _queue(self, claim: ClaimRef, delay: float = 0.0) -> None:
        with self._wake:
            self._claims[claim.uid] = claim
            heapq.heappush(self._due, (time.monotonic() + delay, claim.uid))
            self._wake.notify()

    # -- the worker --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="claim-status", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _next(self) -> ClaimRef | None:
        with self._wake:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    _, uid = heapq.heappop(self._due)
                    claim = self._claims.pop(uid, None)
                    if claim is not None:  # else: written already by an earlier entry
                        return claim
                    continue
                self._wake.wait(self._due[0][0] - now if self._due else None)
        return None

    def _run(self) -> None:
        while (claim := self._next()) is not None:
            try:
                self.write(claim)
            except Exception as err:
                self._failed(claim, err)
            else:
                self._ok(claim)

    def write(self, claim: ClaimRef) -> None:
        """Apply our status entries of `claim` as they should be now (none when it is not
        prepared here). Raises on failure; a claim that is gone or was replaced is done."""
        prepared = self._checkpoint.get(claim.uid)
        devices = []
        if prepared is not None:
            with self._lock:
                ready_since = self._ready_since.setdefault(claim.uid, time.time())
            for device in prepared.devices:
                known = self._inventory.get(device.device)
                devices.append(
                    device_status(
                        self.driver_name,
                        device,
                        self._inventory.health_of(device.device),
                        dict(known.attributes) if known else {},
                        ready_since,
                    )
                )
        version = self._version.get()
        body: dict[str, Any] = {
            "apiVersion": f"{RESOURCE_GROUP}/{version}",
            "kind": "ResourceClaim",
            # The uid makes the apply fail (409) on a new claim that took the name.
            "metadata": {"name": claim.name, "namespace": claim.namespace, "uid": claim.uid},
            "status": {"devices": devices},
        }
        try:
            self._objects.patch_namespaced_custom_object_status(
                RESOURCE_GROUP,
                version,
                claim.namespace,
                "resourceclaims",
                claim.name,
                body,
                field_manager=self.manager,
                force=True,
                _content_type=APPLY_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as err:
            if err.status in (404, 409):
                return  # gone, or the name is another claim's now: ours is gone
            raise
        log.debug(
            "wrote claim device status",
            extra=kv(claim=str(claim), devices=len(devices), manager=self.manager),
        )

    def _failed(self, claim: ClaimRef, err: BaseException) -> None:
        message = _describe(err, claim)
        with self._lock:
            failures = self._failures[claim.uid] = self._failures.get(claim.uid, 0) + 1
            first = message != self._last_error
            self._last_error = message
        delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (failures - 1))
        if first:
            log.warning(
                "writing a claim's device status failed; retrying (prepare is not affected)",
                extra=kv(claim=str(claim), error=message, retry_in_s=delay),
            )
        # After unprepare: a few tries to take our entries back, then the claim is let be.
        if self._checkpoint.has(claim.uid) or failures < 5:
            self._queue(claim, delay)

    def _ok(self, claim: ClaimRef) -> None:
        with self._lock:
            self._failures.pop(claim.uid, None)
            recovered, self._last_error = self._last_error, None
        if recovered is not None:
            log.info("writing claims' device status works again", extra=kv(claim=str(claim)))


def _describe(err: BaseException, claim: ClaimRef) -> str:
    if isinstance(err, ApiException):
        if err.status == 403:
            return (
                "forbidden: the driver's service account needs `patch` on resourceclaims/status "
                f"({RESOURCE_GROUP}), and the claim must be allocated on this node"
            )
        return f"HTTP {err.status} {err.reason}"
    if isinstance(err, NoApiError):
        return str(err)
    if isinstance(err, urllib3.exceptions.HTTPError | OSError):
        return f"cannot reach the API server: {type(err).__name__}"
    return f"{type(err).__name__}: {err}"
