"""A fake NVIDIA host in a temp dir: a driver root (libraries with their soname links, tools,
device-node placeholders), a sysfs PCI tree and the /proc MIG capability files, matching
the GPUs of a fake NVML data set (tests/fakes/fake_nvml.py).

Device nodes are regular files: the driver only checks that they exist; the container
runtime (not under test) is what stats them for their major and minor numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIB_DIR = "usr/lib/x86_64-linux-gnu"
# library -> the soname links ldconfig makes on a real host
LIBRARIES = {
    "libcuda.so": ("libcuda.so.1", "libcuda.so"),
    "libnvidia-ml.so": ("libnvidia-ml.so.1",),
    "libnvidia-ptxjitcompiler.so": ("libnvidia-ptxjitcompiler.so.1",),
    "libnvidia-nvvm.so": ("libnvidia-nvvm.so.4",),
    "libcudadebugger.so": ("libcudadebugger.so.1",),
}
BINARIES = ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced")
STALE_LIBRARY = "libcuda.so.535.104.05"  # an older driver's leftover: must not be mounted


@dataclass
class FakeHost:
    base: Path
    driver_root: Path
    sysfs: Path
    proc: Path
    cap_minors: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)

    def pcie_root(self, minor: int) -> str:
        return f"pci0000:{(minor // 2) * 0x20 + 0x10:02x}"  # two GPUs per root complex


def build(
    base: Path,
    data: dict[str, Any],
    *,
    uvm: bool = True,
    mig_caps: bool = True,
    libraries: dict[str, tuple[str, ...]] | None = None,
) -> FakeHost:
    host = FakeHost(base, base / "driver", base / "sys", base / "proc")
    version = str(data["driverVersion"])
    lib_dir = host.driver_root / LIB_DIR
    lib_dir.mkdir(parents=True)
    for library, links in (LIBRARIES if libraries is None else libraries).items():
        (lib_dir / f"{library}.{version}").write_bytes(b"\x7fELF")
        target = f"{library}.{version}"
        for link in links:  # libcuda.so -> libcuda.so.1 -> libcuda.so.<version>
            os.symlink(target, lib_dir / link)
            target = link
    (lib_dir / STALE_LIBRARY).write_bytes(b"\x7fELF")
    bin_dir = host.driver_root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    for binary in BINARIES:
        (bin_dir / binary).write_bytes(b"#!")

    dev = host.driver_root / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for node in ("nvidiactl", *(("nvidia-uvm", "nvidia-uvm-tools") if uvm else ())):
        (dev / node).write_bytes(b"")
    next_cap = 100
    for gpu in data["gpus"]:
        minor = int(gpu["minor"])
        (dev / f"nvidia{minor}").write_bytes(b"")
        _pci(host, minor, str(gpu["busId"]))
        for mig in gpu.get("migDevices") or []:
            gi, ci = int(mig["gpuInstance"]), int(mig["computeInstance"])
            host.cap_minors[(minor, gi, ci)] = (next_cap, next_cap + 1)
            if mig_caps:
                _mig_caps(host, minor, gi, ci, next_cap)
            next_cap += 2
    return host


def _pci(host: FakeHost, minor: int, nvml_bus_id: str) -> None:
    domain, rest = nvml_bus_id.lower().split(":", 1)
    bus_id = f"{int(domain, 16):04x}:{rest}"
    root = host.pcie_root(minor)
    bridge = f"0000:{root[-2:]}:01.0"
    device = host.sysfs / "devices" / root / bridge / bus_id
    device.mkdir(parents=True)
    links = host.sysfs / "bus" / "pci" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(device, links), links / bus_id)  # as sysfs does: relative


def _mig_caps(host: FakeHost, minor: int, gi: int, ci: int, cap: int) -> None:
    gi_dir = host.proc / "driver/nvidia/capabilities" / f"gpu{minor}" / "mig" / f"gi{gi}"
    (gi_dir / f"ci{ci}").mkdir(parents=True)
    text = "DeviceFileMinor: {}\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
    (gi_dir / "access").write_text(text.format(cap))
    (gi_dir / f"ci{ci}" / "access").write_text(text.format(cap + 1))
    for n in (cap, cap + 1):
        (host.driver_root / "dev" / "nvidia-caps" / f"nvidia-cap{n}").write_bytes(b"")
