"""The DRAResourceHealth service: streams the health of this node's devices to the kubelet.

Each message is the complete list (the kubelet's contract). A device is healthy
while the device source still reports it; one that disappears drops out of the
list, and the kubelet marks it unknown. The list is re-sent as a heartbeat well
inside the timeout we declare, and at once when the inventory changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2 as pb

HEALTH_TIMEOUT_S = 30
HEARTBEAT_S = 10.0
POLL_S = 1.0


class DeviceHealthService:
    def __init__(self, inventory: Inventory, pool_name: str) -> None:
        self._inventory = inventory
        self._pool = pool_name
        self._closed = threading.Event()

    def close(self) -> None:
        """End open streams now, so that stopping the server need not wait for them."""
        self._closed.set()

    def NodeWatchResources(
        self, request: pb.NodeWatchResourcesRequest, context: Any
    ) -> Iterator[pb.NodeWatchResourcesResponse]:
        sent: list[str] | None = None
        sent_at = 0.0
        while context.is_active() and not self._closed.is_set():
            names = sorted(d.name for d in self._inventory.devices())
            if names != sent or time.monotonic() - sent_at >= HEARTBEAT_S:
                yield self._report(names)
                sent, sent_at = names, time.monotonic()
            self._closed.wait(POLL_S)

    def _report(self, names: list[str]) -> pb.NodeWatchResourcesResponse:
        now = int(time.time())
        return pb.NodeWatchResourcesResponse(
            devices=[
                pb.DeviceHealth(
                    device=pb.DeviceIdentifier(pool_name=self._pool, device_name=name),
                    health=pb.HEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=HEALTH_TIMEOUT_S,
                )
                for name in names
            ]
        )
