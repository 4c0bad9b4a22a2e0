"""Reading the node's NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`) into plain data.

Everything NVML-specific lives here: loading the module, the calls and their error codes,
and turning a failure into one sentence that says what to do. The rest of the nvidia
source works from the `Snapshot` this returns, which tests build from a fake NVML.

`nvml` is the pynvml module (or anything with its names and signatures); pynvml has no
type annotations, hence `Any`.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dra_cdi_driver.devices.inventory import InventoryError
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

# Test hook: the name of a module to use instead of pynvml (e.g. tests.fakes.fake_nvml), so
# that a whole CLI run can be driven by a fake NVML. Read by the nvidia source only.
NVML_MODULE_ENV = "DRA_CDI_DRIVER_NVML_MODULE"

# NVML return codes (nvml.h; stable across driver versions).
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
RESET_REQUIRED = 16
LIB_RM_VERSION_MISMATCH = 18
GPU_NOT_FOUND = 28

# GPU-instance profiles (nvml.h's NVML_GPU_INSTANCE_PROFILE_<n>_SLICE), largest first: the
# largest one a GPU supports spans the whole GPU (7 slices on an A100 or H100, 4 on an A30).
FULL_GPU_PROFILES = (0x5, 0x4, 0x6, 0x3, 0x2, 0x1, 0x0)  # 8, 7, 6, 4, 3, 2, 1 slices

# A GPU failing with one of these is unusable: it is left out (and so leaves the slice).
_GPU_GONE = (GPU_IS_LOST, RESET_REQUIRED, GPU_NOT_FOUND, NOT_FOUND)

_ADVICE = {
    LIBRARY_NOT_FOUND: "the NVML library libnvidia-ml.so.1 was not found: install the NVIDIA "
    "driver on this node, or mount its driver root into the driver's pod and set "
    "--nvidia-driver-root / --nvidia-driver-root-mount",
    DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded: check `nvidia-smi` and "
    "`lsmod | grep nvidia` on the node",
    NO_PERMISSION: "no permission to open the GPUs' device nodes (/dev/nvidiactl, "
    "/dev/nvidia*): run the driver as root with access to those devices (a privileged pod)",
    LIB_RM_VERSION_MISMATCH: "the NVML library and the loaded kernel module are of different "
    "driver versions: reboot the node (or reload the nvidia module) after the driver upgrade",
    FUNCTION_NOT_FOUND: "the NVIDIA driver is older than this NVML call: upgrade the driver",
}

BRANDS = {
    0: "Unknown",
    1: "Quadro",
    2: "Tesla",
    3: "NVS",
    4: "Grid",
    5: "GeForce",
    6: "Titan",
    7: "NvidiaVApps",
    8: "NvidiaVPC",
    9: "NvidiaVCS",
    10: "NvidiaVWS",
    11: "NvidiaCloudGaming",
    12: "QuadroRTX",
    13: "NvidiaRTX",
    14: "Nvidia",
    15: "GeForceRTX",
    16: "TitanRTX",
}
ARCHITECTURES = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}


class NvmlError(InventoryError):
    """NVML failed; the message says what the operator should do."""


@dataclass(frozen=True)
class MigInfo:
    slot: int  # index in nvmlDeviceGetMigDeviceHandleByIndex (the toolkit's "<gpu>:<slot>")
    uuid: str
    gpu_instance: int
    compute_instance: int
    profile: str  # e.g. "1g.10gb"
    memory: int  # bytes
    multiprocessors: int
    gpu_instance_slices: int  # of its GPU instance, which its compute instances share
    memory_mib: int  # of its GPU instance (NVML's memorySizeMB, in MiB)


@dataclass(frozen=True)
class MigCapacity:
    """All that a GPU in MIG mode can give out: its full-GPU instance profile's size."""

    slices: int
    memory_mib: int


@dataclass(frozen=True)
class GpuInfo:
    index: int
    minor: int
    uuid: str
    name: str
    brand: str
    architecture: str | None  # None: NVML cannot tell (older GPUs)
    compute_capability: tuple[int, int]
    memory: int | None  # bytes; None: NVML would not say (a GPU in MIG mode)
    pci_bus_id: str  # as NVML reports it, e.g. "00000000:18:00.0"
    mig_enabled: bool
    migs: tuple[MigInfo, ...] = ()
    mig_capacity: MigCapacity | None = None  # None: not in MIG mode, or NVML would not say


@dataclass(frozen=True)
class Snapshot:
    driver_version: str  # e.g. "550.54.15"
    cuda_driver_version: int  # e.g. 12040 for 12.4
    gpus: tuple[GpuInfo, ...]


def load_nvml() -> Any:
    """The pynvml module (or the module named by the test hook), imported only when used."""
    name = os.environ.get(NVML_MODULE_ENV) or "pynvml"
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if name == "pynvml":
            raise NvmlError(
                "the nvidia device source needs the nvidia-ml-py package (module pynvml): "
                "pip install 'dra-cdi-driver[nvidia]'"
            ) from None
        raise NvmlError(f"{NVML_MODULE_ENV}={name}: cannot import it: {err}") from None


def preload_library(lib_dirs: list[Path]) -> None:
    """Load the driver root's libnvidia-ml.so.1, so that pynvml's dlopen of that soname finds
    it although the driver root is not on this container's library path."""
    for lib_dir in lib_dirs:
        candidate = lib_dir / "libnvidia-ml.so.1"
        if candidate.exists():
            try:
                ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
            except OSError as err:  # pynvml then reports LIBRARY_NOT_FOUND with advice
                log.warning("cannot load NVML", extra=kv(path=str(candidate), error=str(err)))
            return


def problem(err: Exception, doing: str) -> str:
    """One line for a failed NVML call: what failed, NVML's words, and what to do."""
    code = getattr(err, "value", None)
    advice = _ADVICE.get(code) if isinstance(code, int) else None
    text = f"NVML {doing} failed: {err} (NVML error {code})"
    return f"{text}; {advice}" if advice else text


def read(nvml: Any) -> Snapshot:
    """One consistent look at the node's GPUs, between nvmlInit and nvmlShutdown."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        raise NvmlError(problem(err, "initialization")) from None
    try:
        return _read(nvml)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as err:
            log.debug("nvmlShutdown failed", extra=kv(error=str(err)))


def _read(nvml: Any) -> Snapshot:
    driver_version = str(_call(nvml, "reading the driver version", nvml.nvmlSystemGetDriverVersion))
    cuda_version = int(
        _call(nvml, "reading the CUDA driver version", nvml.nvmlSystemGetCudaDriverVersion)
    )
    count = int(_call(nvml, "counting GPUs", nvml.nvmlDeviceGetCount))
    gpus: list[GpuInfo] = []
    for index in range(count):
        try:
            gpus.append(_gpu(nvml, index))
        except nvml.NVMLError as err:
            if getattr(err, "value", None) not in _GPU_GONE:
                raise NvmlError(problem(err, f"reading GPU {index}")) from None
            log.warning("GPU is unusable and left out", extra=kv(index=index, error=str(err)))
    return Snapshot(driver_version, cuda_version, tuple(gpus))


T = TypeVar("T")


def _call(nvml: Any, doing: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except nvml.NVMLError as err:
        raise NvmlError(problem(err, doing)) from None


def _optional(nvml: Any, fn: Callable[[], T]) -> T | None:
    """A call that older GPUs or drivers do not support: None instead of an error."""
    try:
        return fn()
    except nvml.NVMLError as err:
        if getattr(err, "value", None) in (NOT_SUPPORTED, FUNCTION_NOT_FOUND):
            return None
        raise


def _text(value: Any) -> str:
    # ctypes char arrays come back as bytes (e.g. nvmlPciInfo_t.busId); decorated calls as str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    major, minor_cc = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    architecture = _optional(nvml, lambda: nvml.nvmlDeviceGetArchitecture(handle))
    mig_mode = _optional(nvml, lambda: nvml.nvmlDeviceGetMigMode(handle))
    mig_enabled = bool(mig_mode and mig_mode[0])
    minor = int(nvml.nvmlDeviceGetMinorNumber(handle))
    try:
        memory: int | None = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    except nvml.NVMLError as err:
        # In MIG mode NVML may refuse the whole GPU's memory (its MIG devices still tell).
        if not mig_enabled or getattr(err, "value", None) not in (NO_PERMISSION, NOT_SUPPORTED):
            raise
        memory = None
    return GpuInfo(
        index=index,
        minor=minor,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        brand=BRANDS.get(int(nvml.nvmlDeviceGetBrand(handle)), "Unknown"),
        architecture=None if architecture is None else ARCHITECTURES.get(int(architecture)),
        compute_capability=(int(major), int(minor_cc)),
        memory=memory,
        pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        mig_enabled=mig_enabled,
        migs=_migs(nvml, handle) if mig_enabled else (),
        mig_capacity=_mig_capacity(nvml, handle) if mig_enabled else None,
    )


def _mig_capacity(nvml: Any, handle: Any) -> MigCapacity | None:
    """The size of the largest GPU-instance profile the GPU supports, i.e. the whole GPU;
    None where NVML supports none of them."""
    for profile in FULL_GPU_PROFILES:
        try:
            info = _profile_info(nvml, handle, profile)
        except nvml.NVMLError as err:
            if getattr(err, "value", None) in (NOT_SUPPORTED, INVALID_ARGUMENT):
                continue  # not a profile of this GPU (or of this driver): try a smaller one
            raise
        if info is None:
            return None
        return MigCapacity(slices=int(info.sliceCount), memory_mib=int(info.memorySizeMB))
    return None


def _profile_info(nvml: Any, handle: Any, profile: int) -> Any:
    """pynvml's default (version 2) calls nvmlDeviceGetGpuInstanceProfileInfoV, which older
    drivers lack: then the version 1 call. None where neither exists."""
    for version in (2, 1):
        try:
            return nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, profile, version)
        except nvml.NVMLError as err:
            if getattr(err, "value", None) != FUNCTION_NOT_FOUND:
                raise
    return None


def _migs(nvml: Any, parent: Any) -> tuple[MigInfo, ...]:
    found: list[MigInfo] = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except nvml.NVMLError as err:
            if getattr(err, "value", None) == NOT_FOUND:  # an empty slot
                continue
            raise
        attributes = nvml.nvmlDeviceGetAttributes(handle)
        found.append(
            MigInfo(
                slot=slot,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                gpu_instance=int(nvml.nvmlDeviceGetGpuInstanceId(handle)),
                compute_instance=int(nvml.nvmlDeviceGetComputeInstanceId(handle)),
                profile=_profile(_text(nvml.nvmlDeviceGetName(handle)), attributes),
                memory=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                multiprocessors=int(attributes.multiprocessorCount),
                gpu_instance_slices=int(attributes.gpuInstanceSliceCount),
                memory_mib=int(attributes.memorySizeMB),
            )
        )
    return tuple(found)


def _profile(name: str, attributes: Any) -> str:
    """The MIG profile: NVML names a MIG device "<GPU name> MIG 1g.10gb"; otherwise it is
    rebuilt from the slice counts and memory the way nvidia-smi names profiles."""
    head, sep, tail = name.rpartition(" MIG ")
    if sep and tail and head:
        return tail
    gi = int(attributes.gpuInstanceSliceCount)
    ci = int(attributes.computeInstanceSliceCount)
    gb = (int(attributes.memorySizeMB) + 1023) // 1024
    return f"{gi}g.{gb}gb" if ci == gi else f"{ci}c.{gi}g.{gb}gb"
