"""NVIDIA GPU health from NVML events: critical XID errors and GPUs that fall off the bus.

One thread holds an NVML event set for every GPU (nvmlEventSetCreate,
nvmlDeviceRegisterEvents) and waits on it (nvmlEventSetWait, a second at a time, so that
stop is prompt). A critical XID, other than those that mean an application's error, marks
its GPU unhealthy, or only the MIG devices of the GPU instance it names; "GPU unavailable"
(lost) marks the GPU and its MIG devices unhealthy. As in NVIDIA's device plugin and DRA
driver, an XID is not cleared by a later event: the device stays unhealthy until the driver
restarts (after the GPU was reset or the node rebooted).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from dra_cdi_driver.devices.base import Device
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

# XIDs that mean an application's error: the GPU still works. NVIDIA's own list, from
# https://docs.nvidia.com/deploy/xid-errors/ as NVIDIA's plugins apply it:
# k8s-dra-driver-gpu (cmd/gpu-kubelet-plugin/device_health.go, xidsToSkip) and
# k8s-device-plugin (internal/rm/health.go, applicationErrorXids; 109 in newer versions).
APPLICATION_XIDS = frozenset(
    {
        13,  # Graphics Engine Exception
        31,  # GPU memory page fault
        43,  # GPU stopped processing
        45,  # Preemptive cleanup, due to previous errors
        68,  # Video processor exception
        109,  # Context Switch Timeout Error
    }
)
# nvml.h's values (pynvml has the same names).
XID_CRITICAL_ERROR = 0x8  # nvmlEventTypeXidCriticalError
GPU_UNAVAILABLE = 0x4000  # nvmlEventTypeGpuUnavailableError (newer drivers)
TIMEOUT = 10  # NVML_ERROR_TIMEOUT
NOT_SUPPORTED = 3
WAIT_MS = 1000
ALL_INSTANCES = 0xFFFFFFFF  # an event's gpuInstanceId when it is about the whole GPU


class XidWatcher:
    """Collects, per GPU UUID, why it is unhealthy; `reasons` maps devices to it."""

    def __init__(self, nvml: Any, ignored: frozenset[int] = APPLICATION_XIDS) -> None:
        self._nvml = nvml
        self.ignored = ignored
        self._lock = threading.Lock()
        # GPU uuid -> (reason, GPU instance id or None for the whole GPU)
        self._bad: dict[str, tuple[str, int | None]] = {}
        self.ready = threading.Event()  # set once the events are registered (for tests)

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self._run, args=(stop,), name="nvml-events", daemon=True).start()

    def reasons(self, devices: Sequence[Device]) -> dict[str, str]:
        with self._lock:
            bad = dict(self._bad)
        out: dict[str, str] = {}
        for device in devices:
            gpu = str(device.attributes.get("parentUUID") or device.labels.get("uuid", ""))
            found = bad.get(gpu)
            if found is None:
                continue
            reason, instance = found
            mig_instance = device.attributes.get("gpuInstance")
            if instance is None or mig_instance is None or mig_instance == instance:
                out[device.name] = reason
        return out

    def mark(self, gpu_uuid: str, reason: str, instance: int | None = None) -> None:
        with self._lock:
            old = self._bad.get(gpu_uuid)
            if old is None or (old[1] is not None and instance is None):
                self._bad[gpu_uuid] = (reason, instance)

    def _run(self, stop: threading.Event) -> None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            log.warning("no GPU health checks: NVML does not start", extra=kv(error=str(err)))
            return
        try:
            event_set, gpus = self._register()
            self.ready.set()
            try:
                self._wait(stop, event_set, gpus)
            finally:
                nvml.nvmlEventSetFree(event_set)
        except nvml.NVMLError as err:
            log.warning("GPU health checks stopped", extra=kv(error=str(err)))
        finally:
            self.ready.set()
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()

    def _register(self) -> tuple[Any, list[str]]:
        nvml = self._nvml
        event_set = nvml.nvmlEventSetCreate()
        gpus: list[str] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = str(nvml.nvmlDeviceGetUUID(handle))
                wanted = XID_CRITICAL_ERROR | GPU_UNAVAILABLE
                types = int(nvml.nvmlDeviceGetSupportedEventTypes(handle)) & wanted
                if not types & XID_CRITICAL_ERROR:
                    log.warning("GPU reports no XID events: no health checks", extra=kv(uuid=uuid))
                    continue
                nvml.nvmlDeviceRegisterEvents(handle, types, event_set)
                gpus.append(uuid)
            except nvml.NVMLError as err:
                log.warning("cannot watch a GPU's health", extra=kv(index=index, error=str(err)))
        log.info("watching GPU health (NVML events)", extra=kv(gpus=len(gpus)))
        return event_set, gpus

    def _wait(self, stop: threading.Event, event_set: Any, gpus: list[str]) -> None:
        nvml = self._nvml
        last_error: str | None = None
        while not stop.is_set():
            try:
                data = nvml.nvmlEventSetWait(event_set, WAIT_MS)
            except nvml.NVMLError as err:
                if getattr(err, "value", None) == TIMEOUT:
                    continue
                # NVIDIA's plugins treat a failing wait as every GPU failing.
                if str(err) != last_error:
                    log.warning("waiting for NVML events failed", extra=kv(error=str(err)))
                last_error = str(err)
                for uuid in gpus:
                    self.mark(uuid, f"NVML event wait failed: {err}")
                stop.wait(WAIT_MS / 1000)
                continue
            self._event(data)

    def _event(self, data: Any) -> None:
        nvml = self._nvml
        try:
            uuid = str(nvml.nvmlDeviceGetUUID(data.device))
        except nvml.NVMLError as err:
            log.warning("an NVML event names no readable GPU", extra=kv(error=str(err)))
            return
        kind = int(data.eventType)
        if kind & GPU_UNAVAILABLE:
            self.mark(uuid, "GPU unavailable (lost)")
            log.warning("GPU lost", extra=kv(uuid=uuid))
            return
        if not kind & XID_CRITICAL_ERROR:
            return
        xid = int(data.eventData)
        instance = int(data.gpuInstanceId)
        scope = None if instance == ALL_INSTANCES else instance
        if xid in self.ignored:
            log.info("application XID; the GPU stays healthy", extra=kv(uuid=uuid, xid=xid))
            return
        log.warning("critical XID", extra=kv(uuid=uuid, xid=xid, gpu_instance=scope))
        self.mark(uuid, f"XID {xid} (critical error)", scope)
