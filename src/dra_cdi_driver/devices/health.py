"""Device health: whether each device works, why not, and since when.

A device source says which of its devices are unhealthy now (`DeviceSource.unhealthy`,
a name -> reason map); the inventory keeps, for every device, the state and the time it
last changed, and tells its health listeners when it changes. Everything else reads it
from there: the ResourceSlices (a taint), the kubelet's health stream, the claims' device
status and the metrics.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dra_cdi_driver.logs import kv

if TYPE_CHECKING:
    from dra_cdi_driver.devices.inventory import Inventory

log = logging.getLogger(__name__)

# A reason travels in a kubelet message, a taint value and a condition message: one short
# line is enough, and a source's text (a file a user wrote, NVML's words) is untrusted.
MAX_REASON = 256
DEFAULT_REASON = "unhealthy"
HEALTH_INTERVAL_S = 1.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class DeviceHealth:
    healthy: bool
    reason: str  # "" while healthy
    since: float  # time.time() of the last change (or of when the device was first seen)


def clean_reason(text: str) -> str:
    """One printable line of at most MAX_REASON characters; DEFAULT_REASON when empty."""
    line = _CONTROL.sub(" ", text.strip().splitlines()[0] if text.strip() else "").strip()
    return line[:MAX_REASON] or DEFAULT_REASON


def health_loop(inventory: Inventory, interval_s: float, stop: threading.Event) -> None:
    """Ask the source for its devices' health now and then every `interval_s` until `stop`
    is set (run it in a thread). A failing check keeps the last known health and is logged
    once."""
    last_error: str | None = None
    wait = 0.0
    while not stop.wait(wait):
        wait = interval_s
        try:
            inventory.check_health()
        except Exception as err:
            if str(err) != last_error:
                log.warning(
                    "device health check failed; keeping the last known health",
                    extra=kv(source=inventory.source.name, error=str(err)),
                )
            last_error = str(err)
            continue
        if last_error is not None:
            log.info("device health check works again", extra=kv(source=inventory.source.name))
            last_error = None
