"""Mock GPUs: devices that exist only as names, so the driver runs anywhere (kind included).

A container given mock GPU i sees `GPU_DEVICE_<i>=gpu-<i>` and its UUID. Where
the host has the classic mock set-up — character devices /dev/mock/device_<i>
and libraries /mock/lib/device_<i>.so — those are handed to the container too.
"""

from __future__ import annotations

import logging
import uuid
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


class MockSource(DeviceSource):
    name = "mock"

    def __init__(
        self,
        node_name: str,
        count: int,
        dev_dir: Path = Path("/dev/mock"),
        lib_dir: Path = Path("/mock/lib"),
    ) -> None:
        if count < 0:
            raise ValueError(f"--mock-devices must be >= 0, not {count}")
        self.node_name = node_name
        self.count = count
        self.dev_dir = dev_dir
        self.lib_dir = lib_dir
        self._reported_missing_host_paths = False

    def discover(self) -> list[Device]:
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
            edits += ContainerEdits(device_nodes=(DeviceNode(path=str(node)),))
        library = self.lib_dir / f"device_{index}.so"
        if library.is_file():
            edits += ContainerEdits(
                mounts=(Mount(host_path=str(library), container_path=str(library)),)
            )
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

    def config_edits(self, device: Device, config: GpuConfig) -> ContainerEdits:
        index = device.labels["index"]
        sharing = [env(f"GPU_DEVICE_{index}_SHARING_STRATEGY", config.sharing)]
        if config.time_slice:
            sharing.append(env(f"GPU_DEVICE_{index}_TIMESLICE_INTERVAL", config.time_slice))
        return ContainerEdits(env=tuple(sharing)) + super().config_edits(device, config)
