"""Mock GPUs: devices that exist only as names, so the driver runs anywhere (kind included).

A container given mock GPU i sees `GPU_DEVICE_<i>=gpu-<i>` and its UUID. Where the host
has the classic mock set-up of the device-plugin days, it is handed over as well, at the
classic paths inside the container wherever the host keeps it (--mock-*-dir):

- the character device /dev/mock/device_<i> of each allocated GPU;
- its library /mock/so/device_<i>.so, bind-mounted read-only;
- once per claim, every file of /mock/bin (list_device.sh, ...), bind-mounted read-only
  (nosuid, nodev) into the container's /usr/local/bin.

Three ways to publish them (--mock-gpu-mode):
- `whole`: each GPU goes to one claim at a time;
- `shared`: each GPU is shareable (consumable capacity): claims take a part of its
  `memory` (default 10Gi, in steps of 1Gi) and `compute` (default 10 of 100), and several
  hold it at once until it is used up; a container sees the share it was given;
- `partitioned`: each GPU has a counter set (80Gi of memory, 4 compute slices) that the
  whole GPU, its two halves and its four quarters consume, so that the scheduler never hands
  out more of a GPU than it has.

Health, a switch to flip at run time (--mock-health-dir, default <plugin-dir>/health): a
file there named after a device makes it unhealthy, with the file's first line as the
reason; removing the file makes it healthy again. It is read every second. A file named
after a GPU (gpu-0) covers its halves and quarters too.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from dra_cdi_driver import fsutil
from dra_cdi_driver.cdi import ContainerEdits, DeviceNode, Mount, env
from dra_cdi_driver.config import GpuConfig
from dra_cdi_driver.devices.base import (
    CounterSet,
    CounterUse,
    Device,
    DeviceSource,
    RequestPolicy,
    Version,
)
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

# Stable UUIDs: the same node and index always give the same device UUID.
_UUID_NAMESPACE = uuid.UUID("6b1d3c0e-8f5a-4a53-9a53-2f1c1d7e0c11")
MODEL = "Mock GPU 80GB"
DRIVER_VERSION = "1.0.0"
MEMORY = "80Gi"
MODES = ("whole", "shared", "partitioned")
# Consumable capacity of a shared GPU: what one claim takes unless it asks, and the grain.
SHARED_CAPACITY = {
    "memory": (MEMORY, RequestPolicy(default="10Gi", min="1Gi", step="1Gi")),
    "compute": ("100", RequestPolicy(default="10", min="1", step="1")),
}
# The parts of a partitioned GPU: (kind, how many, memory, compute slices) each.
SLICES = 4
PARTITIONS = (("whole", 1, MEMORY, SLICES), ("half", 2, "40Gi", 2), ("quarter", 4, "20Gi", 1))
# Where a container finds what it is given, wherever the host keeps it: the classic paths,
# and the shared tools on every image's PATH.
CONTAINER_DEV_DIR = Path("/dev/mock")
CONTAINER_LIB_DIR = Path("/mock/so")
CONTAINER_BIN_DIR = Path("/usr/local/bin")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
MAX_HEALTH_FILE = 4096  # a reason is one short line; more is a mistake, not a reason
MAX_HEALTH_FILES = 1024


class MockSource(DeviceSource):
    name = "mock"

    def __init__(
        self,
        node_name: str,
        count: int,
        dev_dir: Path = Path("/dev/mock"),
        lib_dir: Path = Path("/mock/so"),
        bin_dir: Path = Path("/mock/bin"),
        mode: str = "whole",
        health_dir: Path | None = None,  # None: every device is healthy
    ) -> None:
        if count < 0:
            raise ValueError(f"--mock-devices must be >= 0, not {count}")
        if mode not in MODES:
            raise ValueError(f"--mock-gpu-mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.node_name = node_name
        self.count = count
        self.dev_dir = dev_dir
        self.lib_dir = lib_dir
        self.bin_dir = bin_dir
        self._reported_missing_host_paths = False
        self._tools: tuple[Mount, ...] = ()
        self.health_dir = fsutil.RootDir(health_dir) if health_dir is not None else None
        self._health_warned: set[str] = set()

    def discover(self) -> list[Device]:
        self._tools = self._find_tools()
        gpus = [self._device(i) for i in range(self.count)]
        if self.mode == "shared":
            devices = [self._shared(gpu) for gpu in gpus]
        elif self.mode == "partitioned":
            devices = [part for gpu in gpus for part in self._partitions(gpu)]
        else:
            devices = gpus
        without_host_paths = sum(
            1 for d in devices if not d.edits.device_nodes and not d.edits.mounts
        )
        if without_host_paths and not self._reported_missing_host_paths:
            self._reported_missing_host_paths = True
            log.info(
                "mock device nodes and libraries not found on the host; "
                "containers get environment variables only",
                extra=kv(
                    dev_dir=str(self.dev_dir), lib_dir=str(self.lib_dir), devices=without_host_paths
                ),
            )
        return devices

    def _device(self, index: int) -> Device:
        name = f"gpu-{index}"
        device_uuid = "GPU-" + str(uuid.uuid5(_UUID_NAMESPACE, f"{self.node_name}/{index}"))
        edits = ContainerEdits(
            env=(env(f"GPU_DEVICE_{index}", name), env(f"GPU_DEVICE_{index}_UUID", device_uuid))
        )
        node = self.dev_dir / f"device_{index}"
        if node.is_char_device():
            inside = CONTAINER_DEV_DIR / node.name
            host_path = str(node) if node != inside else ""  # only when it differs (CDI 0.5)
            edits += ContainerEdits(device_nodes=(DeviceNode(str(inside), host_path=host_path),))
        library = self.lib_dir / f"device_{index}.so"
        if library.is_file():
            inside = CONTAINER_LIB_DIR / library.name
            edits += ContainerEdits(mounts=(Mount(str(library), str(inside)),))
        return Device(
            name=name,
            attributes={
                "index": index,
                "uuid": device_uuid,
                "model": MODEL,
                "driverVersion": Version(DRIVER_VERSION),
            },
            capacity={"memory": MEMORY},
            edits=edits,
            labels={"index": str(index), "env": str(index)},
        )

    def _shared(self, gpu: Device) -> Device:
        return replace(
            gpu,
            capacity={name: total for name, (total, _) in SHARED_CAPACITY.items()},
            shareable=True,
            request_policies={name: policy for name, (_, policy) in SHARED_CAPACITY.items()},
        )

    def _partitions(self, gpu: Device) -> list[Device]:
        """The whole GPU and its parts, each consuming its share of the GPU's counter set."""
        return [
            self._part(gpu, kind, j, memory, slices)
            for kind, count, memory, slices in PARTITIONS
            for j in range(count)
        ]

    def _part(self, gpu: Device, kind: str, j: int, memory: str, slices: int) -> Device:
        """One part of `gpu`: its own name, UUID and variables; the GPU's device node and
        library. The whole GPU is a part too: it consumes the whole counter set."""
        index = gpu.labels["index"]
        name = gpu.name if kind == "whole" else f"{gpu.name}-{kind}-{j}"
        key = index if kind == "whole" else f"{index}_{kind.upper()}_{j}"
        part_uuid = str(gpu.attributes["uuid"])  # the whole GPU keeps its own
        if kind != "whole":
            part_uuid = "GPU-" + str(uuid.uuid5(_UUID_NAMESPACE, f"{self.node_name}/{name}"))
        variables = (env(f"GPU_DEVICE_{key}", name), env(f"GPU_DEVICE_{key}_UUID", part_uuid))
        use = CounterUse(self._counter_set_name(index), {"memory": memory, "slices": str(slices)})
        return replace(
            gpu,
            name=name,
            attributes={
                **gpu.attributes,
                "uuid": part_uuid,
                "partition": kind,
                "parentUUID": str(gpu.attributes["uuid"]),
            },
            capacity={"memory": memory},
            edits=ContainerEdits(
                env=variables, device_nodes=gpu.edits.device_nodes, mounts=gpu.edits.mounts
            ),
            labels={"index": index, "env": key},
            consumes=(use,),
            # Without shared counters the parts would overlap their GPU: only it is published.
            needs_counters=kind != "whole",
        )

    @staticmethod
    def _counter_set_name(index: str) -> str:
        return f"gpu-{index}-counters"

    def counter_sets(self) -> list[CounterSet]:
        if self.mode != "partitioned":
            return []
        return [
            CounterSet(self._counter_set_name(str(i)), {"memory": MEMORY, "slices": str(SLICES)})
            for i in range(self.count)
        ]

    def allocation_edits(
        self, device: Device, consumed: Mapping[str, str], share_id: str | None
    ) -> ContainerEdits:
        """What a container sees of its share of a shared GPU."""
        if share_id is None:
            return ContainerEdits()
        key = device.labels["env"]
        variables = [env(f"GPU_DEVICE_{key}_SHARE_ID", share_id)]
        variables += [
            env(f"GPU_DEVICE_{key}_{name.upper()}_LIMIT", consumed[name])
            for name in sorted(consumed)
            if name in SHARED_CAPACITY
        ]
        return ContainerEdits(env=tuple(variables))

    # --- health -------------------------------------------------------------------------

    def install_host_files(self) -> None:
        if self.health_dir is not None:
            self.health_dir.ensure()  # so that whoever flips the switch finds where

    def unhealthy(self, devices: Sequence[Device]) -> dict[str, str]:
        """The devices named by a file in the health dir (or whose GPU is), with its reason."""
        if self.health_dir is None:
            return {}
        names = self.health_dir.names()[:MAX_HEALTH_FILES]
        known = {d.name for d in devices}
        reasons: dict[str, str] = {}
        for name in names:
            if name in known:
                reasons[name] = self._reason(name)
            elif not name.startswith("."):
                self._warn_health(f"unknown:{name}", "a health file names no device", name)
        out: dict[str, str] = {}
        for device in devices:
            gpu = f"gpu-{device.labels.get('index', '')}"
            reason = reasons.get(device.name) or reasons.get(gpu)
            if reason is not None:
                out[device.name] = reason
        return out

    def _reason(self, name: str) -> str:
        assert self.health_dir is not None
        try:
            data = self.health_dir.read(name, MAX_HEALTH_FILE)
        except (OSError, ValueError) as err:
            # Present is unhealthy, whatever it holds; what is wrong with it is logged once.
            self._warn_health(f"unreadable:{name}", f"cannot read a health file: {err}", name)
            return "unhealthy (mock health file unreadable)"
        return data.decode("utf-8", errors="replace")

    def _warn_health(self, key: str, message: str, name: str) -> None:
        if key not in self._health_warned:
            self._health_warned.add(key)
            log.warning(message, extra=kv(dir=str(self.health_dir), file=name[:80]))

    def _find_tools(self) -> tuple[Mount, ...]:
        """The regular files of bin_dir, as read-only mounts into /usr/local/bin. Symlinks
        and odd names are skipped: a bind mount would follow the one, and the other has no
        business in a container's PATH."""
        try:
            entries = sorted(os.scandir(self.bin_dir), key=lambda e: e.name)
        except OSError:
            return ()
        tools = []
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or not _TOOL_NAME.fullmatch(entry.name):
                log.warning(
                    "skipping a mock tool that is not a plain regular file",
                    extra=kv(path=entry.path),
                )
                continue
            tools.append(
                Mount(host_path=entry.path, container_path=str(CONTAINER_BIN_DIR / entry.name))
            )
        return tuple(tools)

    def claim_edits(self, devices: Sequence[Device]) -> ContainerEdits:
        return ContainerEdits(mounts=self._tools) if devices else ContainerEdits()

    def config_edits(self, device: Device, config: GpuConfig) -> ContainerEdits:
        index = device.labels["env"]
        sharing = [env(f"GPU_DEVICE_{index}_SHARING_STRATEGY", config.sharing)]
        if config.time_slice:
            sharing.append(env(f"GPU_DEVICE_{index}_TIMESLICE_INTERVAL", config.time_slice))
        return ContainerEdits(env=tuple(sharing)) + super().config_edits(device, config)
