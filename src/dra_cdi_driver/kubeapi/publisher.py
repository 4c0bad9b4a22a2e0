"""Keeps this node's ResourceSlices published: one pool per (driver, node), repaired on drift.

Two background threads:

* the reconciler compares the slices the server holds with the slices the device
  inventory calls for, and writes a new pool generation only when they differ
  (steady state costs no writes). It runs at start, when the inventory changes, when the
  watch reports a change to one of our slices, and every `resync_s` as a safety net;
* the watcher watches the slices of this driver and node (field selectors spec.driver
  and spec.nodeName) and wakes the reconciler, so that a deleted slice (the kubelet wipes
  a node's slices when it starts), an edited one or a stray one is put right at once.

An unhealthy device is published with a taint `<driver>/unhealthy` (value: the reason,
effect NoSchedule, or NoExecute where asked for), so that the scheduler hands it to no new
claim; the taint goes when the device recovers.

API errors are retried with exponential backoff and logged once per distinct error.
Nothing here raises into the caller after `start()`: prepare and unprepare never depend
on publishing. On stop (SIGTERM) the slices stay; `delete_node_slices` removes them.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from dra_cdi_driver.devices import Device, Inventory
from dra_cdi_driver.devices.base import Taint
from dra_cdi_driver.kubeapi.slice_api import KubeSliceApi, SliceApi, SliceApiError
from dra_cdi_driver.kubeapi.slices import (
    CONSUMABLE_CAPACITY,
    DEVICE_TAINTS,
    PARTITIONABLE,
    Slice,
    SliceError,
    build_slices,
    comparable,
    dropped_by_server,
    generation_of,
    publishable,
    taint_value,
)
from dra_cdi_driver.logs import kv
from dra_cdi_driver.metrics import Metrics

log = logging.getLogger(__name__)

RESYNC_S = 600.0  # full comparison even without events: a safety net, not the mechanism
WATCH_TIMEOUT_S = 240  # the server ends a watch after this; we resume from the last rv
SETTLE_S = 0.05  # let a burst of watch events (one per slice written) make one sync
TAINT_EFFECTS = ("NoSchedule", "NoExecute")
UNHEALTHY_TAINT = "unhealthy"  # the key's name part: <driver>/unhealthy
# What this driver publishes instead, where the API server drops a feature's fields.
_WITHOUT = {
    PARTITIONABLE: "publishing whole devices without it",
    CONSUMABLE_CAPACITY: "publishing shareable devices as exclusive ones",
    DEVICE_TAINTS: "leaving unhealthy devices out of the slices instead of tainting them",
}


# --- reconciliation ------------------------------------------------------------------------


@dataclass
class SyncResult:
    generation: int
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)


def _drift(desired: Mapping[str, Slice], actual: Mapping[str, Slice]) -> list[str]:
    """What differs between the slices we want and those the server has; empty: in sync."""
    reasons = [f"missing {n}" for n in desired if n not in actual]
    reasons += [f"extra {n}" for n in actual if n not in desired]
    reasons += [
        f"changed {n}"
        for n in desired
        if n in actual and comparable(desired[n]) != comparable(actual[n])
    ]
    return reasons


class _OnceLogger:
    """Logs an error only when it differs from the previous one, and the recovery once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last: str | None = None
        self.loud = False  # whether `last` was logged above debug level

    def failed(self, err: BaseException, retry_in: float) -> None:
        message = str(err)
        if message == self.last:
            return
        self.last = message
        fields = kv(error=message, retry_in_s=round(retry_in, 2))
        if not isinstance(err, SliceApiError | SliceError):
            log.error(
                f"{self.what} failed unexpectedly; retrying with backoff",
                extra=fields,
                exc_info=err,
            )
        elif isinstance(err, SliceApiError) and err.status == 409:
            log.debug(f"{self.what} raced another write; retrying", extra=fields)
            self.loud = False
            return
        else:
            log.warning(f"{self.what} failed; retrying with backoff", extra=fields)
        self.loud = True

    def ok(self) -> None:
        if self.last is not None and self.loud:
            log.info(f"{self.what} works again", extra=kv(previous_error=self.last))
        self.last = None
        self.loud = False


class Publisher:
    """Publishes the inventory's devices as this node's pool and keeps it so."""

    def __init__(
        self,
        api: SliceApi,
        inventory: Inventory,
        *,
        resync_s: float = RESYNC_S,
        max_backoff_s: float = 30.0,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        metrics: Metrics | None = None,
        taint_effect: str = "NoSchedule",
    ) -> None:
        if taint_effect not in TAINT_EFFECTS:
            raise ValueError(f"taint effect {taint_effect!r}: one of {', '.join(TAINT_EFFECTS)}")
        self.taint_effect = taint_effect
        self.api = api
        self.metrics = metrics or Metrics()
        self.inventory = inventory
        self.resync_s = resync_s
        self.max_backoff_s = max_backoff_s
        self.watch_timeout_s = watch_timeout_s
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sync_errors = _OnceLogger("publishing ResourceSlices")
        self._watch_errors = _OnceLogger("watching ResourceSlices")
        self._watch_rv: str | None = None  # where the watch resumes; None: current state
        self._writing_syncs = 0  # consecutive syncs that had to write (a fight, if it grows)
        self.synced = threading.Event()  # set once the pool matched the inventory
        # DRA features the API server drops the fields of: published without, from then on.
        self.features_off: set[str] = set()
        # The slices as we last wrote them: what a server that drops fields is caught by.
        self._written: dict[str, Slice] = {}

    @classmethod
    def from_client(
        cls,
        api_client: client.ApiClient,
        driver_name: str,
        node_name: str,
        inventory: Inventory,
        **kw: Any,
    ) -> Publisher:
        return cls(KubeSliceApi(api_client, driver_name, node_name), inventory, **kw)

    # -- lifecycle --

    def start(self) -> None:
        """Publish now and keep publishing, in background threads; returns at once."""
        self.inventory.subscribe(lambda _devices: self._dirty.set())
        self.inventory.subscribe_health(lambda _changed: self._dirty.set())
        self._dirty.set()
        for name, target in (
            ("slice-publisher", self._reconcile_loop),
            ("slice-watcher", self._watch_loop),
        ):
            thread = threading.Thread(target=self._contained(target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the threads. The slices stay: a restarted driver finds them in place."""
        self._stop.set()
        self._dirty.set()
        try:
            self.api.close()
        except Exception:  # stopping must not fail
            log.debug("closing the watch failed", exc_info=True)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _contained(self, loop: Callable[[], None]) -> Callable[[], None]:
        """Run `loop` until stopped; a bug in it is logged and the loop restarted (slowly)."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                except Exception:
                    log.exception("ResourceSlice publisher crashed; restarting it in 5s")
                    self._stop.wait(5.0)

        return run

    # -- the reconciler --

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(timeout=self.resync_s)
            if self._stop.is_set():
                return
            self._stop.wait(SETTLE_S)
            self._dirty.clear()
            result = self._sync_with_retry()
            if result is None:
                return  # stopped
            self._pace(result)

    def _retrying(self, errors: _OnceLogger, activity: str) -> Retrying:
        """Exponential backoff with jitter, up to max_backoff_s, until stopped."""
        return Retrying(
            retry=retry_if_exception_type(Exception),
            # 0.2 s doubling to max_backoff_s, plus jitter so that the nodes of a cluster
            # do not retry in step after an API server outage.
            wait=wait_exponential(multiplier=0.2, max=self.max_backoff_s)
            + wait_random(0, min(1.0, self.max_backoff_s / 4)),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._sleep,
            before_sleep=lambda state: self._failed(state, errors, activity),
        )

    def _failed(self, state: RetryCallState, errors: _OnceLogger, activity: str) -> None:
        self.metrics.publisher_failed(activity)
        _report(state, errors)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # stop() cuts a backoff short

    def _sync_with_retry(self) -> SyncResult | None:
        try:
            for attempt in self._retrying(self._sync_errors, "publish"):
                with attempt:
                    if self._stop.is_set():
                        return None
                    result = self.sync_once()
                    self._sync_errors.ok()
                    return result
        except RetryError:
            pass  # stopped while failing
        return None

    def _pace(self, result: SyncResult) -> None:
        """Never a tight loop: if every sync has to write again (someone keeps changing our
        slices, or the server rewrites something we do not expect), slow down."""
        if not result.writes:
            self._writing_syncs = 0
            return
        self._writing_syncs += 1
        if self._writing_syncs >= 3:
            delay = min(self.max_backoff_s, 0.5 * 2 ** (self._writing_syncs - 3))
            if self._writing_syncs == 3:
                log.warning(
                    "our ResourceSlices keep changing under us; another writer? slowing down",
                    extra=kv(driver=self.api.driver_name, node=self.api.node_name),
                )
            self._stop.wait(delay)

    def _notice_dropped_fields(self, desired: dict[str, Slice], actual: dict[str, Slice]) -> None:
        """The server keeps our slices without the fields of a feature it does not serve
        (gate off, or too old): publish without that feature from now on, rather than keep
        rewriting, or publish partitions without the counters that keep them apart."""
        dropped = dropped_by_server(desired, actual) - self.features_off
        for feature in sorted(dropped):
            log.warning(
                f"the API server drops the fields of a DRA feature; {_WITHOUT[feature]}",
                extra=kv(
                    feature=feature,
                    driver=self.api.driver_name,
                    fix=f"turn on the {feature} feature gate (Kubernetes 1.36: on by default)",
                ),
            )
        self.features_off |= dropped

    def sync_once(self) -> SyncResult:
        """Make the server's slices of this pool match the inventory, writing only on a
        difference. Raises SliceApiError / SliceError; the caller retries."""
        api = self.api
        version = api.api_version()
        actual = {s["metadata"]["name"]: s for s in api.list_slices()}
        node_uid = api.node_uid()
        current = max((generation_of(s) for s in actual.values()), default=0)

        tainted = self._tainted(self.inventory.devices())

        def desired_at(generation: int) -> dict[str, Slice]:
            devices, counter_sets = publishable(
                tainted, self.inventory.counter_sets(), self.features_off
            )
            built = build_slices(
                devices,
                driver=api.driver_name,
                node=api.node_name,
                generation=generation,
                api_version=version,
                node_uid=node_uid,
                counter_sets=counter_sets,
            )
            return {s["metadata"]["name"]: s for s in built}

        self._notice_dropped_fields(self._written, actual)
        devices = self.inventory.devices()
        reasons = _drift(desired_at(max(current, 1)), actual)
        if not reasons:
            self.synced.set()
            return SyncResult(generation=current)
        # Any difference: a whole new generation, so the scheduler never mixes two
        # versions of the pool. max+1 also keeps a restarted driver from going backwards.
        result = SyncResult(generation=current + 1)
        written = desired_at(current + 1)
        self._written = copy.deepcopy(written)
        for name, body in written.items():
            if name in actual:
                body["metadata"]["resourceVersion"] = actual[name]["metadata"].get(
                    "resourceVersion"
                )
                _keep_foreign_metadata(body, actual[name])
                api.replace_slice(body)
                result.updated.append(name)
                self.metrics.slice_written("update")
            else:
                api.create_slice(body)
                result.created.append(name)
                self.metrics.slice_written("create")
        # Stray slices go last: until the new generation is complete the old one serves.
        for name in sorted(actual.keys() - {n for n in result.created + result.updated}):
            api.delete_slice(name, actual[name]["metadata"].get("resourceVersion"))
            result.deleted.append(name)
            self.metrics.slice_written("delete")
        log.info(
            "published ResourceSlices",
            extra=kv(
                driver=api.driver_name,
                node=api.node_name,
                api_version=version,
                generation=result.generation,
                devices=len(devices),
                slices=len(result.created) + len(result.updated),
                created=len(result.created),
                updated=len(result.updated),
                deleted=len(result.deleted),
                why=reasons[:5],
            ),
        )
        self.synced.set()
        return result

    def _tainted(self, devices: list[Device]) -> list[Device]:
        """The devices, the unhealthy ones with their taint."""
        health = self.inventory.health()
        key = f"{self.api.driver_name}/{UNHEALTHY_TAINT}"
        out = []
        for device in devices:
            state = health.get(device.name)
            if state is not None and not state.healthy:
                taint = Taint(key, taint_value(state.reason), self.taint_effect, state.since)
                device = replace(device, taints=(taint,))
            out.append(device)
        return out

    # -- the watcher --

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for attempt in self._retrying(self._watch_errors, "watch"):
                    with attempt:
                        self._watch_once()
                        self._watch_errors.ok()
            except RetryError:
                return  # stopped while failing

    def _watch_once(self) -> None:
        """One watch request, until the server ends it. Raises SliceApiError."""
        started = time.monotonic()
        events = 0
        try:
            for event in self.api.watch_slices(self._watch_rv, self.watch_timeout_s):
                if self._stop.is_set():
                    return
                events += 1
                self._watch_rv = event.resource_version or self._watch_rv
                if event.type != "BOOKMARK":
                    self._dirty.set()
        except SliceApiError as err:
            if self._stop.is_set():
                return
            if err.status == 410:
                # Our resourceVersion is too old: start again from the current state,
                # which replays every slice as ADDED and so triggers a full compare.
                self._watch_rv = None
                return
            self._dirty.set()  # events may be lost while we are away: compare afterwards
            raise
        if events == 0 and time.monotonic() - started < 1.0:
            # A watch that ends at once and says nothing: do not spin on it.
            self._stop.wait(1.0)


def _report(state: RetryCallState, errors: _OnceLogger) -> None:
    outcome = state.outcome
    err = outcome.exception() if outcome else None
    if err is None:
        return
    errors.failed(err, state.upcoming_sleep)


def _keep_foreign_metadata(body: Slice, actual: Slice) -> None:
    """Labels and annotations that others put on our slices survive our updates."""
    meta = actual.get("metadata") or {}
    for key in ("labels", "annotations"):
        if meta.get(key):
            body["metadata"][key] = meta[key]


# --- cleanup -------------------------------------------------------------------------------


def delete_node_slices(api_client: client.ApiClient, driver_name: str, node_name: str) -> int:
    """Delete every ResourceSlice of `driver_name` on `node_name` (uninstall, or a node
    leaving the driver); returns how many were deleted. Raises SliceApiError."""
    api = KubeSliceApi(api_client, driver_name, node_name)
    slices = api.list_slices()
    for s in slices:
        api.delete_slice(s["metadata"]["name"], None)
    log.info(
        "deleted ResourceSlices", extra=kv(driver=driver_name, node=node_name, deleted=len(slices))
    )
    return len(slices)
