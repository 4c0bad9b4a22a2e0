"""The device source: can it find what it hands to containers?

mock: the classic layout (hack/mock-layout.sh) is optional; without it containers get
environment variables only. nvidia: NVML must load and see the GPUs, and the driver root
must hold what a CUDA container needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from dra_cdi_driver.devices.nvidia import nvml as nvidia_nvml
from dra_cdi_driver.devices.nvidia.files import CONTROL_NODE, HostRoot, dev_root, library_dirs
from dra_cdi_driver.doctor.report import Result
from dra_cdi_driver.settings import Settings

NVML_LIBRARY = "libnvidia-ml.so.1"
UVM_NODE = "/dev/nvidia-uvm"


def check(settings: Settings) -> list[Result]:
    if settings.device_source == "mock":
        return [check_mock(settings)]
    if settings.device_source == "nvidia":
        return check_nvidia(settings)
    return [Result.warn("devices", f"device source {settings.device_source!r}: no checks")]


def _missing(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def check_mock(settings: Settings) -> Result:
    check = "mock devices"
    count = settings.mock_devices
    nodes = [settings.mock_dev_dir / f"device_{i}" for i in range(count)]
    libraries = [settings.mock_lib_dir / f"device_{i}.so" for i in range(count)]
    missing = [p for p in nodes if not p.is_char_device()]
    missing += [p for p in libraries if not p.is_file()]
    try:
        tools = sum(
            1 for e in os.scandir(settings.mock_bin_dir) if e.is_file(follow_symlinks=False)
        )
    except OSError:
        tools = 0
    if missing or not tools:
        if not tools:
            missing.append(settings.mock_bin_dir / "list_device.sh")
        return Result.warn(
            check,
            f"{count} mock GPUs, but the classic layout is incomplete (missing "
            f"{_missing(missing)}): containers get environment variables only",
            f"run hack/mock-layout.sh {count} on the node",
        )
    return Result.ok(
        check,
        f"{count} mock GPUs with device nodes in {settings.mock_dev_dir}, libraries in "
        f"{settings.mock_lib_dir}, {tools} tool{'' if tools == 1 else 's'} in "
        f"{settings.mock_bin_dir}",
    )


def check_nvidia(settings: Settings) -> list[Result]:
    root = HostRoot(
        settings.nvidia_driver_root,
        settings.nvidia_driver_root_mount or settings.nvidia_driver_root,
    )
    results = [_nvml_library(root), _nvml(root, settings.nvidia_allow_no_gpus)]
    dev = dev_root(root)
    for node, fix in (
        (CONTROL_NODE, "load the NVIDIA kernel driver (`nvidia-smi` on the node creates it)"),
        (UVM_NODE, "load nvidia-uvm and create its node: `nvidia-modprobe -u -c=0` on the node"),
    ):
        if dev.has(node):
            results.append(Result.ok("nvidia devices", f"{dev.mount / node.lstrip('/')} present"))
        else:
            results.append(
                Result.fail(
                    "nvidia devices",
                    f"{dev.mount / node.lstrip('/')} is missing: CUDA cannot run",
                    fix,
                )
            )
    return results


def _nvml_library(root: HostRoot) -> Result:
    check = "nvidia driver root"
    for lib_dir in library_dirs(root):
        if (lib_dir / NVML_LIBRARY).exists():
            return Result.ok(check, f"{lib_dir / NVML_LIBRARY} present")
    return Result.fail(
        check,
        f"no {NVML_LIBRARY} under {root.mount}",
        "install the NVIDIA driver, or set --nvidia-driver-root to where it is installed "
        "(/run/nvidia/driver with the GPU operator) and mount it (--nvidia-driver-root-mount)",
    )


def _nvml(root: HostRoot, allow_no_gpus: bool) -> Result:
    check = "nvml"
    try:
        nvml = nvidia_nvml.load_nvml()
        if nvml.__name__ == "pynvml":
            nvidia_nvml.preload_library(library_dirs(root))
        snapshot = nvidia_nvml.read(nvml)
    except nvidia_nvml.NvmlError as err:
        # devices/nvidia/nvml.py words it "<what failed>; <what to do>" where it knows what to do.
        failed, _, advice = str(err).partition("; ")
        return Result.fail(check, failed, advice)
    gpus = len(snapshot.gpus)
    mig = sum(1 for g in snapshot.gpus if g.mig_enabled)
    found = f"driver {snapshot.driver_version}, {gpus} GPU{'' if gpus == 1 else 's'}"
    if mig:
        found += f" ({mig} in MIG mode)"
    if not gpus:
        if allow_no_gpus:
            return Result.warn(check, f"{found}: an empty pool is published")
        return Result.fail(
            check,
            f"{found}: NVML sees no usable GPU",
            "check `nvidia-smi -L` on the node (GPUs bound to vfio-pci are invisible to NVML)",
        )
    return Result.ok(check, found)
