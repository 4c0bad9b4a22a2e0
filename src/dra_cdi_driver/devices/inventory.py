"""The node's current devices: what Prepare checks allocations against and the publisher
advertises. Both read this one object, so they can never disagree."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dra_cdi_driver.devices.base import CounterSet, Device, DeviceSource, counter_problems
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

Listener = Callable[[list[Device]], None]


class InventoryError(Exception):
    """The device source returned devices the API server would reject."""


class Inventory:
    def __init__(self, source: DeviceSource) -> None:
        self.source = source
        self._devices: dict[str, Device] = {}
        self._counter_sets: list[CounterSet] = []
        self._listeners: list[Listener] = []
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
            listeners = list(self._listeners)
        log.info(
            "device inventory changed",
            extra=kv(source=self.source.name, devices=len(new), added=added, removed=removed),
        )
        for listener in listeners:
            listener(devices)
        return True

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
