"""Device sources and the node's device inventory.

To add a device source: write a `DeviceSource` subclass in a module here and
add it to `create_source`.
"""

from __future__ import annotations

from dra_cdi_driver.devices.base import Device, DeviceSource, Version
from dra_cdi_driver.devices.inventory import Inventory, InventoryError
from dra_cdi_driver.settings import Settings

SOURCES = ("mock", "nvidia")


def create_source(settings: Settings) -> DeviceSource:
    if settings.device_source == "mock":
        from dra_cdi_driver.devices.mock import MockSource

        return MockSource(
            settings.node_name,
            settings.mock_devices,
            dev_dir=settings.mock_dev_dir,
            lib_dir=settings.mock_lib_dir,
            bin_dir=settings.mock_bin_dir,
            mode=settings.mock_gpu_mode,
            health_dir=settings.mock_health_dir,
        )
    if settings.device_source == "nvidia":
        from dra_cdi_driver.devices.nvidia.files import CONTAINER_LIB_DIR
        from dra_cdi_driver.devices.nvidia.ldcache import LdcacheHook
        from dra_cdi_driver.devices.nvidia.source import NvidiaSource
        from dra_cdi_driver.devices.nvidia.toolkit import DEFAULT_DIRS

        hook = None
        if settings.nvidia_ldcache_hook:  # driver mode only: NvidiaSource drops it otherwise
            # The plugin dir has the same path on the host and in the driver's pod.
            hook = LdcacheHook(settings.plugin_dir / "nvidia", CONTAINER_LIB_DIR)
        return NvidiaSource(
            driver_root=settings.nvidia_driver_root,
            driver_root_mount=settings.nvidia_driver_root_mount,
            cdi_mode=settings.nvidia_cdi_mode,
            allow_no_gpus=settings.nvidia_allow_no_gpus,
            # nvidia-ctk writes to /etc/cdi or /var/run/cdi; in a pod, our CDI root is the
            # host's /var/run/cdi.
            toolkit_spec_dirs=(settings.cdi_root, *DEFAULT_DIRS),
            ldcache_hook=hook,
        )
    raise ValueError(f"unknown device source {settings.device_source!r} (known: {SOURCES})")


__all__ = [
    "SOURCES",
    "Device",
    "DeviceSource",
    "Inventory",
    "InventoryError",
    "Version",
    "create_source",
]
