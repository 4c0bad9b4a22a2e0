"""Real NVIDIA GPUs: discovered through NVML, handed to containers without the NVIDIA
container runtime.

Each GPU is a device `gpu-<minor>` (the minor of /dev/nvidia<minor>); on a GPU in MIG mode
each MIG device is one more, `gpu-<minor>-mig-<gi>-<ci>`. The MIG-enabled GPU itself stays
listed, with migEnabled=true; it and its MIG devices consume one counter set, so that the
scheduler never hands out both (mig.py). Where the API server does not serve shared
counters, only the MIG devices are published.

A container given a GPU gets its device node (a MIG device: the parent's node and its
/dev/nvidia-caps access nodes); once per claim, the control nodes and the driver's
libraries and tools (see files.py) with a hook that adds them to the container's
ld.so.cache (ldcache.py), or, with --nvidia-cdi-mode=toolkit, the NVIDIA Container
Toolkit's CDI id for the device next to ours.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dra_cdi_driver.cdi import ContainerEdits, env
from dra_cdi_driver.config import ConfigError, GpuConfig
from dra_cdi_driver.devices.base import (
    MAX_STRING_VALUE,
    AttributeValue,
    CounterSet,
    Device,
    DeviceSource,
    Version,
)
from dra_cdi_driver.devices.inventory import InventoryError
from dra_cdi_driver.devices.nvidia import mig as nvidia_mig
from dra_cdi_driver.devices.nvidia import nvml as nvidia_nvml
from dra_cdi_driver.devices.nvidia.files import (
    DriverFiles,
    HostRoot,
    control_nodes,
    dev_root,
    find_driver_files,
    library_dirs,
    mig_cap_nodes,
)
from dra_cdi_driver.devices.nvidia.health import XidWatcher
from dra_cdi_driver.devices.nvidia.ldcache import LdcacheHook
from dra_cdi_driver.devices.nvidia.nvml import GpuInfo, MigInfo, Snapshot
from dra_cdi_driver.devices.nvidia.pci import PCIE_ROOT_ATTRIBUTE, canonical_bus_id, pcie_root
from dra_cdi_driver.devices.nvidia.toolkit import DEFAULT_DIRS, ToolkitSpec, find_spec
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

CDI_MODES = ("driver", "toolkit")
_TOOLKIT_ID = "toolkitCdiId"  # label: the toolkit's CDI id of a device (toolkit mode)
_NO_CAPS = "migCapsMissing"  # label: a MIG device whose access nodes were not found


def semver(text: str) -> Version | None:
    """A driver version as semver: "550.54.15" as is, "535.104.05" -> "535.104.5" (no
    leading zeros in semver), "12.4" -> "12.4.0"; parts after the third become build
    metadata. None when it does not start with a number."""
    parts = text.strip().split(".")
    numbers: list[str] = []
    for part in parts[:3]:
        if not part.isdigit():
            break
        numbers.append(str(int(part)))
    if not numbers:
        return None
    extra = parts[len(numbers) :]
    numbers += ["0"] * (3 - len(numbers))
    build = ".".join(p for p in extra if re.fullmatch(r"[0-9A-Za-z-]+", p))
    return Version(".".join(numbers) + (f"+{build}" if build else ""))


def cuda_version(value: int) -> Version:
    """NVML's CUDA driver version integer, 12040, as "12.4.0"."""
    return Version(f"{value // 1000}.{value % 1000 // 10}.0")


def _short(text: str) -> str:
    return text[:MAX_STRING_VALUE]


class NvidiaSource(DeviceSource):
    name = "nvidia"

    def __init__(
        self,
        *,
        nvml: Any = None,  # the pynvml module or a fake; None: import pynvml when first used
        driver_root: Path = Path("/"),
        driver_root_mount: Path | None = None,
        cdi_mode: str = "driver",
        allow_no_gpus: bool = False,
        sysfs: Path = Path("/sys"),
        proc: Path = Path("/proc"),
        toolkit_spec_dirs: Sequence[Path] = DEFAULT_DIRS,
        ldcache_hook: LdcacheHook | None = None,  # driver mode: see ldcache.py
    ) -> None:
        if cdi_mode not in CDI_MODES:
            raise ValueError(f"--nvidia-cdi-mode {cdi_mode!r}: must be one of {CDI_MODES}")
        self._nvml = nvml
        self.root = HostRoot(driver_root, driver_root_mount or driver_root)
        self.cdi_mode = cdi_mode
        self.allow_no_gpus = allow_no_gpus
        self.sysfs = sysfs
        self.proc = proc
        self.toolkit_spec_dirs = tuple(toolkit_spec_dirs)
        self.ldcache_hook = ldcache_hook if cdi_mode == "driver" else None
        self._dev = dev_root(self.root)
        self._files = DriverFiles((), ())
        self._counter_sets: list[CounterSet] = []
        self._warned: set[str] = set()
        self._xids: XidWatcher | None = None

    # --- discovery ---------------------------------------------------------------------

    def discover(self) -> list[Device]:
        snapshot = nvidia_nvml.read(self._module())
        if not snapshot.gpus and not self.allow_no_gpus:
            raise InventoryError(
                "NVML found no usable GPU on this node: check `nvidia-smi -L` there (GPUs "
                "bound to vfio-pci are invisible to NVML); to publish an empty pool on "
                "purpose, set --nvidia-allow-no-gpus"
            )
        self._dev = dev_root(self.root)
        toolkit: ToolkitSpec | None = None
        if self.cdi_mode == "driver":
            self._files = find_driver_files(self.root, snapshot.driver_version)
            if self._files.missing:
                self._warn_once(
                    "driver files not found under the driver root; containers go without them",
                    driver_root=str(self.root.mount),
                    missing=list(self._files.missing),
                )
        else:
            toolkit = find_spec(self.toolkit_spec_dirs)
        devices: list[Device] = []
        for gpu in snapshot.gpus:
            devices.append(self._gpu(snapshot, gpu, toolkit))
            devices += [self._mig(snapshot, gpu, mig, toolkit) for mig in gpu.migs]
        mig_gpus = [gpu for gpu in snapshot.gpus if gpu.mig_enabled]
        self._counter_sets = [nvidia_mig.counter_set(gpu) for gpu in mig_gpus]
        unsized = [f"gpu-{gpu.minor}" for gpu in mig_gpus if gpu.mig_capacity is None]
        if unsized:
            self._warn_once(
                "NVML reports no full-GPU MIG profile; these GPUs' counter sets hold only "
                "what their MIG devices use",
                devices=unsized,
            )
        without_caps = [d.name for d in devices if d.labels.get(_NO_CAPS)]
        if without_caps:
            # Best effort: without its access nodes a MIG device is invisible to CUDA.
            self._warn_once(
                "MIG access device nodes not found; CUDA in the container may not see these "
                "MIG devices (create the nodes with `nvidia-modprobe -f` or nvidia-smi on "
                "the host)",
                devices=without_caps,
                proc=str(self.proc),
                dev_root=str(self._dev.mount),
            )
        return devices

    def counter_sets(self) -> list[CounterSet]:
        return list(self._counter_sets)

    # --- health ------------------------------------------------------------------------

    def watch_health(self, stop: threading.Event) -> None:
        self._xids = XidWatcher(self._module())
        self._xids.start(stop)

    def unhealthy(self, devices: Sequence[Device]) -> dict[str, str]:
        return self._xids.reasons(devices) if self._xids is not None else {}

    def _module(self) -> Any:
        if self._nvml is None:
            self._nvml = nvidia_nvml.load_nvml()
            if self._nvml.__name__ == "pynvml":
                nvidia_nvml.preload_library(library_dirs(self.root))
        return self._nvml

    def _common(self, snapshot: Snapshot, gpu: GpuInfo) -> dict[str, AttributeValue]:
        bus_id = canonical_bus_id(gpu.pci_bus_id)
        attributes: dict[str, AttributeValue] = {
            "productName": _short(gpu.name),
            "brand": gpu.brand,
            "cudaComputeCapability": Version(
                f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}.0"
            ),
            "cudaDriverVersion": cuda_version(snapshot.cuda_driver_version),
            "pcieBusID": _short(bus_id),
        }
        driver_version = semver(snapshot.driver_version)
        if driver_version is not None:
            attributes["driverVersion"] = driver_version
        if gpu.architecture:
            attributes["architecture"] = gpu.architecture
        root = pcie_root(self.sysfs, bus_id)
        if root:
            attributes[PCIE_ROOT_ATTRIBUTE] = root
        return attributes

    def _gpu(self, snapshot: Snapshot, gpu: GpuInfo, toolkit: ToolkitSpec | None) -> Device:
        labels = {"minor": str(gpu.minor), "uuid": gpu.uuid}
        if toolkit:
            labels[_TOOLKIT_ID] = toolkit.cdi_id(gpu.uuid, str(gpu.index))
        return Device(
            name=f"gpu-{gpu.minor}",
            attributes={
                "type": "gpu",
                "uuid": _short(gpu.uuid),
                "index": gpu.index,
                "minor": gpu.minor,
                "migEnabled": gpu.mig_enabled,
                **self._common(snapshot, gpu),
            },
            capacity={} if gpu.memory is None else {"memory": str(gpu.memory)},
            edits=ContainerEdits(device_nodes=(self._dev.device_node(f"/dev/nvidia{gpu.minor}"),)),
            labels=labels,
            # In MIG mode the whole GPU overlaps its MIG devices: it takes all of its counter
            # set, and without shared counters it is not published (its MIG devices are).
            consumes=(nvidia_mig.gpu_use(gpu),) if gpu.mig_enabled else (),
            needs_counters=gpu.mig_enabled,
        )

    def _mig(
        self, snapshot: Snapshot, gpu: GpuInfo, mig: MigInfo, toolkit: ToolkitSpec | None
    ) -> Device:
        name = f"gpu-{gpu.minor}-mig-{mig.gpu_instance}-{mig.compute_instance}"
        caps = mig_cap_nodes(
            self._dev, self.proc, gpu.minor, mig.gpu_instance, mig.compute_instance
        )
        labels = {"minor": str(gpu.minor), "uuid": mig.uuid}
        if not caps or not all(self._dev.has(c) for c in caps):
            labels[_NO_CAPS] = "true"
        if toolkit:
            labels[_TOOLKIT_ID] = toolkit.cdi_id(mig.uuid, f"{gpu.index}:{mig.slot}")
        nodes = (f"/dev/nvidia{gpu.minor}", *caps)
        return Device(
            name=name,
            attributes={
                "type": "mig",
                "uuid": _short(mig.uuid),
                "profile": _short(mig.profile),
                "parentUUID": _short(gpu.uuid),
                "parentIndex": gpu.index,
                "parentMinor": gpu.minor,
                "gpuInstance": mig.gpu_instance,
                "computeInstance": mig.compute_instance,
                **self._common(snapshot, gpu),
            },
            capacity={"memory": str(mig.memory), "multiprocessors": str(mig.multiprocessors)},
            edits=ContainerEdits(device_nodes=tuple(self._dev.device_node(n) for n in nodes)),
            labels=labels,
            consumes=(nvidia_mig.mig_use(gpu, mig),),
            needs_counters=nvidia_mig.shares_gpu_instance(gpu, mig),
        )

    # --- what a claim gets -------------------------------------------------------------

    def claim_edits(self, devices: Sequence[Device]) -> ContainerEdits:
        # CUDA images set NVIDIA_VISIBLE_DEVICES=all: were the legacy NVIDIA runtime still
        # installed, it would add every GPU. "void" turns it off; without it, it means nothing.
        edits = ContainerEdits(env=(env("NVIDIA_VISIBLE_DEVICES", "void"),))
        if self.cdi_mode == "toolkit":
            return edits  # the toolkit's spec brings control nodes and libraries
        if not self._dev.has("/dev/nvidia-uvm"):
            self._warn_once(
                "/dev/nvidia-uvm is missing: CUDA cannot run until the nvidia-uvm module is "
                "loaded and its node created (`nvidia-modprobe -u -c=0` on the host)",
                dev_root=str(self._dev.mount),
            )
        edits += ContainerEdits(device_nodes=control_nodes(self._dev)) + self._files.edits()
        if self.ldcache_hook is not None:
            edits += self.ldcache_hook.edits()
        return edits

    def install_host_files(self) -> None:
        if self.ldcache_hook is not None:
            self.ldcache_hook.install()

    def config_edits(self, device: Device, config: GpuConfig) -> ContainerEdits:
        # Time-slicing a real GPU needs the driver's compute-mode/MPS control, which this
        # source does not do yet: refuse it rather than silently hand out an exclusive GPU.
        if config.sharing != "Exclusive":
            raise ConfigError(
                f"parameters.sharing.strategy: {config.sharing} is not supported by the "
                f"nvidia device source yet (device {device.name}); use Exclusive"
            )
        return super().config_edits(device, config)

    def extra_cdi_ids(self, device: Device) -> tuple[str, ...]:
        toolkit_id = device.labels.get(_TOOLKIT_ID)
        return (toolkit_id,) if toolkit_id else ()

    def _warn_once(self, message: str, **fields: Any) -> None:
        key = message + repr(sorted(fields.items()))
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, extra=kv(**fields))
