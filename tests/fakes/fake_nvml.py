"""A fake NVML with pynvml's names, signatures, return types and error codes, driven by data.

Two ways in:

- in-process: `NvidiaSource(nvml=FakeNvml(h100_node()))`;
- a whole CLI run: `DRA_CDI_DRIVER_NVML_MODULE=tests.fakes.fake_nvml` makes the nvidia
  source import this module instead of pynvml; it reads its data from the JSON file named
  by FAKE_NVML_DATA (default: `h100_node()`), again at every nvmlInit, so a test can make
  a GPU disappear between two discoveries.

The data (JSON-able): `{"driverVersion", "cudaDriverVersion", "errors": {call: code},
"gpus": [{"uuid", "name", "minor", "memory", "busId", "computeCapability": [major, minor],
"brand", "architecture", "migMode": null|0|1, "maxMigDevices", "errors": {call: code},
"gpuInstanceProfiles": {"<NVML_GPU_INSTANCE_PROFILE_*>": {"id", "name", "sliceCount",
"instanceCount", "multiprocessorCount", "memorySizeMB"}},
"migDevices": [{"slot", "uuid", "name", "gpuInstance", "computeInstance", "memory",
"multiprocessors", "gpuInstanceSlices", "computeInstanceSlices", "memorySizeMB"}]}],
"supportedEventTypes": mask (default XID critical errors), "events": [{"gpu": index,
"eventType", "eventData", "gpuInstanceId"}]}`. Events: an event set that a GPU registers
with gets the data's events of that GPU (at once) and those `post_event` adds later;
nvmlEventSetWait hands them out in order and raises NVML_ERROR_TIMEOUT when there is none.
An `errors` entry makes that call raise NVMLError(code), as the real library would: the
top-level one for every handle, a GPU's for its own handle, a MIG device's for its handle.
Where pynvml picks a C function by version, the entry is named after the C function
(nvmlDeviceGetGpuInstanceProfileInfoV is what version 2 calls: an old driver lacks it).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DATA_ENV = "FAKE_NVML_DATA"

# pynvml's return codes (the real values).
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_BRAND_NVIDIA = 14
NVML_DEVICE_ARCH_HOPPER = 9
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_GPU_INSTANCE_PROFILE_1_SLICE = 0x0
NVML_GPU_INSTANCE_PROFILE_2_SLICE = 0x1
NVML_GPU_INSTANCE_PROFILE_3_SLICE = 0x2
NVML_GPU_INSTANCE_PROFILE_4_SLICE = 0x3
NVML_GPU_INSTANCE_PROFILE_7_SLICE = 0x4
NVML_GPU_INSTANCE_PROFILE_8_SLICE = 0x5
NVML_GPU_INSTANCE_PROFILE_6_SLICE = 0x6
NVML_GPU_INSTANCE_PROFILE_COUNT = 0x12
nvmlGpuInstanceProfileInfo_v2 = 0x02000098  # the version field of the v2 struct
nvmlEventTypeXidCriticalError = 0x0000000000000008
nvmlEventTypeGpuUnavailableError = 0x0000000000004000

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: the code in `.value`, NVML's words from str()."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


# --- data ----------------------------------------------------------------------------------

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEMORY = 85520809984  # what NVML reports for an H100 SXM 80GB
H100_BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
MIG_1G_10GB_MEMORY = 9984 * 1024 * 1024
# An H100 80GB's GPU-instance profiles (nvidia-smi mig -lgip), by NVML profile constant.
H100_GPU_INSTANCE_PROFILES: dict[str, dict[str, Any]] = {
    str(constant): {
        "id": profile_id,
        "name": f"MIG {name}",
        "sliceCount": slices,
        "instanceCount": instances,
        "multiprocessorCount": sms,
        "memorySizeMB": mib,
    }
    for constant, profile_id, name, slices, instances, sms, mib in (
        (NVML_GPU_INSTANCE_PROFILE_1_SLICE, 19, "1g.10gb", 1, 7, 16, 9984),
        (NVML_GPU_INSTANCE_PROFILE_2_SLICE, 14, "2g.20gb", 2, 3, 32, 20096),
        (NVML_GPU_INSTANCE_PROFILE_3_SLICE, 9, "3g.40gb", 3, 2, 60, 40448),
        (NVML_GPU_INSTANCE_PROFILE_4_SLICE, 5, "4g.40gb", 4, 1, 64, 40448),
        (NVML_GPU_INSTANCE_PROFILE_7_SLICE, 0, "7g.80gb", 7, 1, 132, 81152),
    )
}
H100_MIG_SLICES = 7
H100_MIG_MEMORY_MIB = 81152  # the 7g.80gb profile: the whole GPU in MIG mode
_NS = uuid.UUID("0c4e2a56-4b1f-4d8e-9a39-6f2b0f0b6c01")


def gpu_uuid(minor: int) -> str:
    return f"GPU-{uuid.uuid5(_NS, f'gpu{minor}')}"


def mig_uuid(minor: int, slot: int) -> str:
    return f"MIG-{uuid.uuid5(_NS, f'gpu{minor}/mig{slot}')}"


def mig_device(
    minor: int,
    slot: int,
    gpu_instance: int,
    compute_instance: int = 0,
    profile: str = "1g.10gb",
    *,
    gpu_instance_slices: int = 1,
    compute_instance_slices: int | None = None,
    memory_mib: int = 9984,
    multiprocessors: int = 16,
) -> dict[str, Any]:
    """One MIG device of GPU `minor` (a 1g.10gb of an H100 unless told otherwise)."""
    return {
        "slot": slot,
        "uuid": mig_uuid(minor, slot),
        "name": f"{H100_NAME} MIG {profile}",
        "gpuInstance": gpu_instance,
        "computeInstance": compute_instance,
        "memory": memory_mib * 1024 * 1024,
        "multiprocessors": multiprocessors,
        "gpuInstanceSlices": gpu_instance_slices,
        "computeInstanceSlices": compute_instance_slices or gpu_instance_slices,
        "memorySizeMB": memory_mib,
    }


def h100_node(mig_minor: int | None = 3, count: int = 8) -> dict[str, Any]:
    """A node with `count` H100 80GB; GPU `mig_minor` in MIG mode with 7x 1g.10gb."""
    gpus: list[dict[str, Any]] = []
    for minor in range(count):
        gpu: dict[str, Any] = {
            "uuid": gpu_uuid(minor),
            "name": H100_NAME,
            "minor": minor,
            "memory": H100_MEMORY,
            "busId": f"00000000:{H100_BUS_IDS[minor % len(H100_BUS_IDS)]}:00.0",
            "computeCapability": [9, 0],
            "brand": NVML_BRAND_NVIDIA,
            "architecture": NVML_DEVICE_ARCH_HOPPER,
            "migMode": NVML_DEVICE_MIG_DISABLE,
            "maxMigDevices": 7,
            "gpuInstanceProfiles": H100_GPU_INSTANCE_PROFILES,
            "migDevices": [],
        }
        if minor == mig_minor:
            gpu["migMode"] = NVML_DEVICE_MIG_ENABLE
            gpu["migDevices"] = [mig_device(minor, slot, 7 + slot) for slot in range(7)]
        gpus.append(gpu)
    return {"driverVersion": "550.54.15", "cudaDriverVersion": 12040, "gpus": gpus}


# --- the fake ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handle:
    gpu: int  # position in data["gpus"] (the NVML index)
    slot: int | None = None  # a MIG device of that GPU


@dataclass
class EventSet:
    """What nvmlEventSetCreate returns: the GPUs registered (index -> event mask) and the
    events waiting to be read."""

    masks: dict[int, int] = field(default_factory=dict)
    pending: list[Any] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    freed: bool = False


def _bytes_field(text: str) -> bytes:
    return text.encode()  # ctypes char arrays read back as bytes


class FakeNvml:
    NVMLError = NVMLError

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.initialized = 0
        self.calls: list[str] = []
        self.event_sets: list[EventSet] = []

    @classmethod
    def from_env(cls) -> FakeNvml:
        path = os.environ.get(DATA_ENV)
        return cls(json.loads(Path(path).read_text()) if path else h100_node())

    def _check(self, call: str, handle: Handle | None = None) -> None:
        self.calls.append(call)
        code = (self.data.get("errors") or {}).get(call)
        if code is None and handle is not None:
            owner = self._gpu(handle) if handle.slot is None else self._mig(handle)
            code = (owner.get("errors") or {}).get(call)
        if code is not None:
            raise NVMLError(int(code))
        if call != "nvmlInit" and self.initialized == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Handle) -> dict[str, Any]:
        gpu: dict[str, Any] = self.data["gpus"][handle.gpu]
        return gpu

    def _mig(self, handle: Handle) -> dict[str, Any]:
        for mig in self._gpu(handle)["migDevices"]:
            if mig["slot"] == handle.slot:
                found: dict[str, Any] = mig
                return found
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    # system

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return str(self.data["driverVersion"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion")
        return int(self.data["cudaDriverVersion"])

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.data["gpus"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        if not 0 <= index < len(self.data["gpus"]):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle = Handle(index)
        self._check("nvmlDeviceGetHandleByIndex", handle)
        return handle

    # devices and MIG devices

    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        self._check("nvmlDeviceGetUUID", handle)
        return str(
            self._mig(handle)["uuid"] if handle.slot is not None else self._gpu(handle)["uuid"]
        )

    def nvmlDeviceGetName(self, handle: Handle) -> str:
        self._check("nvmlDeviceGetName", handle)
        return str(
            self._mig(handle)["name"] if handle.slot is not None else self._gpu(handle)["name"]
        )

    def nvmlDeviceGetMinorNumber(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetMinorNumber", handle)
        if handle.slot is not None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(self._gpu(handle)["minor"])

    def nvmlDeviceGetIndex(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetIndex", handle)
        return handle.gpu

    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int | None = None) -> Any:
        self._check("nvmlDeviceGetMemoryInfo", handle)
        total = int(
            self._mig(handle)["memory"] if handle.slot is not None else self._gpu(handle)["memory"]
        )
        return SimpleNamespace(total=total, free=total, used=0)

    def nvmlDeviceGetPciInfo(self, handle: Handle) -> Any:
        self._check("nvmlDeviceGetPciInfo", handle)
        bus_id = str(self._gpu(handle)["busId"])
        domain, bus, rest = bus_id.split(":")
        return SimpleNamespace(
            busId=_bytes_field(bus_id),
            busIdLegacy=_bytes_field(f"{int(domain, 16):04X}:{bus}:{rest}"),
            domain=int(domain, 16),
            bus=int(bus, 16),
            device=int(rest.split(".")[0], 16),
            pciDeviceId=0x233010DE,
            pciSubSystemId=0x16C110DE,
        )

    def nvmlDeviceGetCudaComputeCapability(self, handle: Handle) -> tuple[int, int]:
        self._check("nvmlDeviceGetCudaComputeCapability", handle)
        major, minor = self._gpu(handle)["computeCapability"]
        return int(major), int(minor)

    def nvmlDeviceGetBrand(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetBrand", handle)
        return int(self._gpu(handle)["brand"])

    def nvmlDeviceGetArchitecture(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetArchitecture", handle)
        return int(self._gpu(handle)["architecture"])

    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]:
        self._check("nvmlDeviceGetMigMode", handle)
        mode = self._gpu(handle).get("migMode")
        if mode is None:  # a GPU without MIG support
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [int(mode), int(mode)]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetMaxMigDeviceCount", handle)
        return int(self._gpu(handle).get("maxMigDevices", 0))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle:
        self._check("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if not any(m["slot"] == index for m in self._gpu(handle)["migDevices"]):
            raise NVMLError(NVML_ERROR_NOT_FOUND)  # an empty slot
        return Handle(handle.gpu, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetGpuInstanceId", handle)
        return int(self._mig(handle)["gpuInstance"])

    def nvmlDeviceGetComputeInstanceId(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetComputeInstanceId", handle)
        return int(self._mig(handle)["computeInstance"])

    def nvmlDeviceGetAttributes(self, handle: Handle) -> Any:
        self._check("nvmlDeviceGetAttributes", handle)
        if handle.slot is None:  # NVML: "only supports MIG device handles"
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        mig = self._mig(handle)
        return SimpleNamespace(
            multiprocessorCount=int(mig["multiprocessors"]),
            gpuInstanceSliceCount=int(mig["gpuInstanceSlices"]),
            computeInstanceSliceCount=int(mig["computeInstanceSlices"]),
            memorySizeMB=int(mig["memorySizeMB"]),
        )

    def nvmlDeviceGetGpuInstanceProfileInfo(
        self, handle: Handle, profile: int, version: int = 2
    ) -> Any:
        if version not in (1, 2):  # as pynvml: no such C function
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        self._check("nvmlDeviceGetGpuInstanceProfileInfo" + ("V" if version == 2 else ""), handle)
        gpu = self._gpu(handle)
        if handle.slot is not None or not 0 <= profile < NVML_GPU_INSTANCE_PROFILE_COUNT:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        info = (gpu.get("gpuInstanceProfiles") or {}).get(str(profile))
        if gpu.get("migMode") is None or info is None:  # no MIG, or not a profile of this GPU
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        fields: dict[str, Any] = {
            "id": int(info["id"]),
            "isP2pSupported": 0,
            "sliceCount": int(info["sliceCount"]),
            "instanceCount": int(info["instanceCount"]),
            "multiprocessorCount": int(info["multiprocessorCount"]),
            "copyEngineCount": 0,
            "decoderCount": 0,
            "encoderCount": 0,
            "jpegCount": 0,
            "ofaCount": 0,
            "memorySizeMB": int(info["memorySizeMB"]),
        }
        if version == 2:
            fields.update(version=nvmlGpuInstanceProfileInfo_v2, name=_bytes_field(info["name"]))
        return SimpleNamespace(**fields)

    # events

    def nvmlEventSetCreate(self) -> EventSet:
        self._check("nvmlEventSetCreate")
        event_set = EventSet()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceGetSupportedEventTypes(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetSupportedEventTypes", handle)
        return int(self._gpu(handle).get("supportedEventTypes", nvmlEventTypeXidCriticalError))

    def nvmlDeviceRegisterEvents(self, handle: Handle, eventTypes: int, eventSet: EventSet) -> None:
        self._check("nvmlDeviceRegisterEvents", handle)
        if eventTypes & ~self.nvmlDeviceGetSupportedEventTypes(handle):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        eventSet.masks[handle.gpu] = eventSet.masks.get(handle.gpu, 0) | eventTypes
        for event in self.data.get("events") or []:
            if event["gpu"] == handle.gpu:
                self._deliver(eventSet, event)

    def post_event(
        self, gpu: int, event_type: int, event_data: int = 0, gpu_instance: int = 0xFFFFFFFF
    ) -> None:
        """What the driver would raise: an event of GPU `gpu` (its index) for every event
        set that registered for that type."""
        event = {"gpu": gpu, "eventType": event_type, "eventData": event_data}
        event["gpuInstanceId"] = gpu_instance
        for event_set in self.event_sets:
            self._deliver(event_set, event)

    def _deliver(self, event_set: EventSet, event: dict[str, Any]) -> None:
        mask = event_set.masks.get(int(event["gpu"]), 0)
        if not mask & int(event["eventType"]):
            return
        data = SimpleNamespace(
            device=Handle(int(event["gpu"])),
            eventType=int(event["eventType"]),
            eventData=int(event.get("eventData", 0)),
            gpuInstanceId=int(event.get("gpuInstanceId", 0xFFFFFFFF)),
            computeInstanceId=int(event.get("computeInstanceId", 0xFFFFFFFF)),
        )
        with event_set.cond:
            event_set.pending.append(data)
            event_set.cond.notify_all()

    def nvmlEventSetWait(self, eventSet: EventSet, timeoutms: int) -> Any:
        self._check("nvmlEventSetWait")
        with eventSet.cond:
            if not eventSet.pending:
                eventSet.cond.wait(min(timeoutms, 50) / 1000)  # short: tests stay fast
            if eventSet.freed or not eventSet.pending:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            return eventSet.pending.pop(0)

    def nvmlEventSetFree(self, eventSet: EventSet) -> None:
        self._check("nvmlEventSetFree")
        eventSet.freed = True


# --- the module interface (DRA_CDI_DRIVER_NVML_MODULE=tests.fakes.fake_nvml) ----------------

_current: FakeNvml | None = None


def nvmlInit() -> None:
    """The node as the data file says now, with NVML's process-wide state carried over:
    like libnvidia-ml, it counts nvmlInit calls (the health watcher holds one while
    discovery inits and shuts down), and event sets stay valid."""
    global _current
    fake = FakeNvml.from_env()
    if _current is not None:
        fake.initialized = _current.initialized
        fake.event_sets = _current.event_sets
    fake.nvmlInit()
    _current = fake


def __getattr__(name: str) -> Any:
    if not name.startswith("nvml"):
        raise AttributeError(name)
    if _current is None:

        def uninitialized(*args: Any, **kwargs: Any) -> Any:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

        return uninitialized
    return getattr(_current, name)
