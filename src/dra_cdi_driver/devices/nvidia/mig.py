"""A GPU in MIG mode as a partitionable device (DRAPartitionableDevices): one counter set per
GPU that the whole GPU and its MIG devices consume, so that the scheduler never hands out a
GPU together with one of its MIG devices.

The counter set `gpu-<minor>-counters` holds the GPU's GPU-instance `slices` and its
`memory`, from NVML's largest GPU-instance profile (the whole GPU). The MIG-enabled GPU
consumes all of it; each MIG device consumes its GPU instance's slices and memory.

Compute instances of one GPU instance share its memory, with no isolation between them:
were two of them given to two claims, each would count on memory the other may take. So
each consumes its GPU instance's slices and memory, and one more counter,
`gpu-instance-<id>` (1 in the set), makes the scheduler hand out one of them at a time.
The counters alone would not: two compute instances of a 3g.40gb GPU instance take 2 x
40448Mi, which fits the 81152Mi of an H100. Without shared counters such compute instances
are not published at all.

The layout published is the one NVML reports, so every set of existing MIG devices fits
together: the totals are never less than what the existing GPU instances use, even where
NVML's profile says less or nothing.
"""

from __future__ import annotations

from dra_cdi_driver.devices.base import CounterSet, CounterUse
from dra_cdi_driver.devices.nvidia.nvml import GpuInfo, MigInfo

SLICES = "slices"
MEMORY = "memory"


def counter_set_name(gpu: GpuInfo) -> str:
    return f"gpu-{gpu.minor}-counters"


def _gpu_instance_counter(gpu_instance: int) -> str:
    return f"gpu-instance-{gpu_instance}"


def mebibytes(mib: int) -> str:
    """A quantity in the form the API server stores (81152Mi, 20Gi), so that a slice read
    back compares equal to the one written."""
    if mib == 0:
        return "0"
    for suffix in ("Mi", "Gi"):
        if mib % 1024:
            return f"{mib}{suffix}"
        mib //= 1024
    return f"{mib}Ti"


def _gpu_instances(gpu: GpuInfo) -> dict[int, MigInfo]:
    """One MIG device per GPU instance: what the instance has, which its CIs share."""
    return {mig.gpu_instance: mig for mig in gpu.migs}


def _shared_gpu_instances(gpu: GpuInfo) -> list[int]:
    """The GPU instances with more than one compute instance."""
    ids = [mig.gpu_instance for mig in gpu.migs]
    return sorted({gi for gi in ids if ids.count(gi) > 1})


def shares_gpu_instance(gpu: GpuInfo, mig: MigInfo) -> bool:
    """Whether `mig` is one of several compute instances of one GPU instance. Those overlap
    (their memory): without shared counters they are not published. Any other MIG device
    is a real, separate device: without its GPU it overlaps nothing, and is published."""
    return mig.gpu_instance in _shared_gpu_instances(gpu)


def counters(gpu: GpuInfo) -> dict[str, str]:
    """All that a GPU in MIG mode has to give out."""
    instances = _gpu_instances(gpu).values()
    slices = sum(m.gpu_instance_slices for m in instances)
    memory = sum(m.memory_mib for m in instances)
    if gpu.mig_capacity is not None:
        slices = max(slices, gpu.mig_capacity.slices)
        memory = max(memory, gpu.mig_capacity.memory_mib)
    out = {SLICES: str(slices), MEMORY: mebibytes(memory)}
    out.update({_gpu_instance_counter(gi): "1" for gi in _shared_gpu_instances(gpu)})
    return out


def counter_set(gpu: GpuInfo) -> CounterSet:
    return CounterSet(counter_set_name(gpu), counters(gpu))


def gpu_use(gpu: GpuInfo) -> CounterUse:
    """The MIG-enabled GPU as a whole: every counter of its set."""
    return CounterUse(counter_set_name(gpu), counters(gpu))


def mig_use(gpu: GpuInfo, mig: MigInfo) -> CounterUse:
    """One MIG device: its GPU instance's slices and memory (and, where the instance has
    several compute instances, the counter that lets one of them out at a time)."""
    used = {SLICES: str(mig.gpu_instance_slices), MEMORY: mebibytes(mig.memory_mib)}
    if shares_gpu_instance(gpu, mig):
        used[_gpu_instance_counter(mig.gpu_instance)] = "1"
    return CounterUse(counter_set_name(gpu), used)
