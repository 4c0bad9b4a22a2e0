"""The DRAResourceHealth service: streams the health of this node's devices to the kubelet.

Each message is the complete list (the kubelet's contract): every device the source lists,
HEALTHY or UNHEALTHY with the reason as its message. `last_updated_time` is when the health
was last determined (now), not when it changed: the kubelet marks a device unknown once
that is older than the timeout we declare. A device that disappears drops out of the list,
and the kubelet marks it unknown. The list is sent at once when a device's health or the
inventory changes, and re-sent as a heartbeat well inside the timeout. The kubelet shows it
in the pods' status (containerStatuses[].allocatedResourcesStatus; gate
ResourceHealthStatus).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.health import DeviceHealth
from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2 as pb

HEALTH_TIMEOUT_S = 30
HEARTBEAT_S = 10.0
POLL_S = 1.0  # a safety net: a change wakes the streams at once

_State = tuple[tuple[str, bool, str], ...]


class DeviceHealthService:
    def __init__(self, inventory: Inventory, pool_name: str) -> None:
        self._inventory = inventory
        self._pool = pool_name
        self._closed = threading.Event()
        self._changed = threading.Condition()
        self._version = 0
        inventory.subscribe_health(lambda _changed: self._wake())
        inventory.subscribe(lambda _devices: self._wake())

    def _wake(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def close(self) -> None:
        """End open streams now, so that stopping the server need not wait for them."""
        self._closed.set()
        self._wake()

    def NodeWatchResources(
        self, request: pb.NodeWatchResourcesRequest, context: Any
    ) -> Iterator[pb.NodeWatchResourcesResponse]:
        sent: _State | None = None
        sent_at = 0.0
        while context.is_active() and not self._closed.is_set():
            with self._changed:
                seen = self._version
            state = self._state()
            if state != sent or time.monotonic() - sent_at >= HEARTBEAT_S:
                yield self._report(state)
                sent, sent_at = state, time.monotonic()
            with self._changed:
                if self._version == seen:
                    self._changed.wait(POLL_S)

    def _state(self) -> _State:
        health = self._inventory.health()
        now = time.time()
        return tuple(
            _entry(name, health.get(name) or DeviceHealth(True, "", now))
            for name in sorted(d.name for d in self._inventory.devices())
        )

    def _report(self, state: _State) -> pb.NodeWatchResourcesResponse:
        now = int(time.time())
        return pb.NodeWatchResourcesResponse(
            devices=[
                pb.DeviceHealth(
                    device=pb.DeviceIdentifier(pool_name=self._pool, device_name=name),
                    health=pb.HEALTHY if healthy else pb.UNHEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=HEALTH_TIMEOUT_S,
                    message=reason,
                )
                for name, healthy, reason in state
            ]
        )


def _entry(name: str, health: DeviceHealth) -> tuple[str, bool, str]:
    return (name, health.healthy, health.reason)
