"""The NVIDIA device source: real GPUs discovered through NVML.

- `source`: `NvidiaSource`, the `DeviceSource` for GPUs and their MIG devices.
- `nvml`: everything NVML-specific (loading the module, the calls, their error codes).
- `files`: the driver's libraries, tools and device nodes under the driver root.
- `ldcache`: the CDI hook that adds those libraries to a container's ld.so.cache.
- `toolkit`: the NVIDIA Container Toolkit's own CDI spec (`--nvidia-cdi-mode=toolkit`).
- `mig`: a GPU in MIG mode as a partitionable device (counter sets).
- `pci`: a GPU's canonical PCI bus id and its PCIe root.
- `health`: GPU health from NVML events.

What was importable from `dra_cdi_driver.devices.nvidia` before it became a package is
re-exported here; new code imports from the modules.
"""

from dra_cdi_driver.devices.nvidia.source import NvidiaSource, cuda_version, semver

__all__ = ["NvidiaSource", "cuda_version", "semver"]
