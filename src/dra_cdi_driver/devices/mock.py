"""Mock GPUs: devices that exist only as names, so the driver runs anywhere (kind included).

A container given mock GPU i sees `GPU_DEVICE_<i>=gpu-<i>` and its UUID. Where the host
has the classic mock set-up of the device-plugin days, it is handed over as well, at the
classic paths inside the container wherever the host keeps it (--mock-*-dir):

- the character device /dev/mock/device_<i> of each allocated GPU;
- its library /mock/so/device_<i>.so, bind-mounted read-only;
- once per claim, every file of /mock/bin (list_device.sh, ...), bind-mounted read-only
  (nosuid, nodev) into the container's /usr/local/bin.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

from dra_cdi_driver.cdi import ContainerEdits, DeviceNode, Mount, env
from dra_cdi_driver.config import GpuConfig
from dra_cdi_driver.devices.base import Device, DeviceSource, Version
from dra_cdi_driver.logs import kv

log = logging.getLogger(__name__)

# Stable UUIDs: the same node and index always give the same device UUID.
_UUID_NAMESPACE = uuid.UUID("6b1d3c0e-8f5a-4a53-9a53-2f1c1d7e0c11")
MODEL = "Mock GPU 80GB"
DRIVER_VERSION = "1.0.0"
MEMORY = "80Gi"
# Where a container finds what it is given, wherever the host keeps it: the classic paths,
# and the shared tools on every image's PATH.
CONTAINER_DEV_DIR = Path("/dev/mock")
CONTAINER_LIB_DIR = Path("/mock/so")
CONTAINER_BIN_DIR = Path("/usr/local/bin")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")


class MockSource(DeviceSource):
    name = "mock"

    def __init__(
        self,
        node_name: str,
        count: int,
        dev_dir: Path = Path("/dev/mock"),
        lib_dir: Path = Path("/mock/so"),
        bin_dir: Path = Path("/mock/bin"),
    ) -> None:
        if count < 0:
            raise ValueError(f"--mock-devices must be >= 0, not {count}")
        self.node_name = node_name
        self.count = count
        self.dev_dir = dev_dir
        self.lib_dir = lib_dir
        self.bin_dir = bin_dir
        self._reported_missing_host_paths = False
        self._tools: tuple[Mount, ...] = ()

    def discover(self) -> list[Device]:
        self._tools = self._find_tools()
        devices = [self._device(i) for i in range(self.count)]
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
            labels={"index": str(index)},
        )

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
        index = device.labels["index"]
        sharing = [env(f"GPU_DEVICE_{index}_SHARING_STRATEGY", config.sharing)]
        if config.time_slice:
            sharing.append(env(f"GPU_DEVICE_{index}_TIMESLICE_INTERVAL", config.time_slice))
        return ContainerEdits(env=tuple(sharing)) + super().config_edits(device, config)
