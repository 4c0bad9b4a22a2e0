"""The node's current devices: what Prepare checks allocations against and the publisher
advertises. Both read this one object, so they can never disagree."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dra_cdi_driver.devices.base import CounterSet, Device, DeviceSource, counter_problems
from dra_cdi_driver.devices.health import DeviceHealth, clean_reason
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

Listener = Callable[[list[Device]], None]
# Called with the devices whose health changed (name -> their new health).
HealthListener = Callable[[dict[str, DeviceHealth]], None]


class InventoryError(Exception):
    """The device source returned devices the API server would reject."""


class Inventory:
    def __init__(self, source: DeviceSource) -> None:
        self.source = source
        self._devices: dict[str, Device] = {}
        self._counter_sets: list[CounterSet] = []
        self._listeners: list[Listener] = []
        self._health: dict[str, DeviceHealth] = {}
        self._health_listeners: list[HealthListener] = []
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Discover again; returns True (and tells listeners) when anything changed."""
        devices = self.source.discover()
        counter_sets = self.source.counter_sets()
        problems = [p for d in devices for p in d.problems()]
        problems += counter_problems(devices, counter_sets)
        names = [d.name for d in devices]
        problems += [f"device name {n!r} is used twice" for n in set(names) if names.count(n) > 1]
        if problems:
            raise InventoryError(f"device source {self.source.name!r}: " + "; ".join(problems))
        with self._lock:
            new = {d.name: d for d in devices}
            if new == self._devices and counter_sets == self._counter_sets:
                return False
            added = sorted(new.keys() - self._devices.keys())
            removed = sorted(self._devices.keys() - new.keys())
            self._devices = new
            self._counter_sets = counter_sets
            # A new device is healthy until its source says otherwise; a gone one has none.
            now = time.time()
            self._health = {n: self._health.get(n) or DeviceHealth(True, "", now) for n in new}
            listeners = list(self._listeners)
        log.info(
            "device inventory changed",
            extra=kv(source=self.source.name, devices=len(new), added=added, removed=removed),
        )
        for listener in listeners:
            listener(devices)
        return True

    def check_health(self) -> dict[str, DeviceHealth]:
        """Ask the source which devices are unhealthy now; record each change with its time
        and tell the health listeners. Returns the changes (name -> new health)."""
        devices = self.devices()
        unhealthy = self.source.unhealthy(devices)
        now = time.time()
        changed: dict[str, DeviceHealth] = {}
        with self._lock:
            for name, old in self._health.items():
                reason = unhealthy.get(name)
                healthy = reason is None
                reason = "" if reason is None else clean_reason(reason)
                if old.healthy != healthy or old.reason != reason:
                    changed[name] = DeviceHealth(healthy, reason, now)
            self._health.update(changed)
            listeners = list(self._health_listeners)
        for name, health in sorted(changed.items()):
            log.log(
                logging.INFO if health.healthy else logging.WARNING,
                "device is healthy again" if health.healthy else "device is unhealthy",
                extra=kv(source=self.source.name, device=name, reason=health.reason),
            )
        if changed:
            for listener in listeners:
                listener(changed)
        return changed

    def health(self) -> dict[str, DeviceHealth]:
        """Every current device's health."""
        with self._lock:
            return dict(self._health)

    def health_of(self, name: str) -> DeviceHealth | None:
        with self._lock:
            return self._health.get(name)

    def subscribe_health(self, listener: HealthListener) -> None:
        with self._lock:
            self._health_listeners.append(listener)

    def devices(self) -> list[Device]:
        with self._lock:
            return list(self._devices.values())

    def counter_sets(self) -> list[CounterSet]:
        with self._lock:
            return list(self._counter_sets)

    def get(self, name: str) -> Device | None:
        with self._lock:
            return self._devices.get(name)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)


def refresh_loop(inventory: Inventory, interval_s: float, stop: threading.Event) -> None:
    """Rediscover every `interval_s` seconds until `stop` is set (run it in a thread).

    A failed rediscovery keeps the last known devices published: it is logged (once per
    distinct error, and again when it clears), never raised, so a flaky NVML call cannot
    stop the driver or empty the pool.
    """
    if interval_s <= 0:
        return
    last_error: str | None = None
    while not stop.wait(interval_s):
        try:
            inventory.refresh()
        except Exception as err:
            if str(err) != last_error:
                log.warning(
                    "device rediscovery failed; keeping the last known devices",
                    extra=kv(source=inventory.source.name, error=str(err)),
                )
            last_error = str(err)
            continue
        if last_error is not None:
            log.info("device rediscovery works again", extra=kv(source=inventory.source.name))
            last_error = None
