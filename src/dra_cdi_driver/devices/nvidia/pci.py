"""PCI facts about a GPU: its canonical bus id and its PCIe root complex (from sysfs).

`resource.kubernetes.io/pcieRoot` is the attribute Kubernetes standardises for "devices
under the same PCIe root", so that a claim can ask for a GPU and a NIC that share one
(`matchAttribute`). Its value is the root complex's sysfs name, e.g. `pci0000:17`.
"""

from __future__ import annotations

import re
from pathlib import Path

PCIE_ROOT_ATTRIBUTE = "resource.kubernetes.io/pcieRoot"
_ROOT = re.compile(r"^pci[0-9a-f]{4,8}:[0-9a-f]{2}$")


def canonical_bus_id(nvml_bus_id: str) -> str:
    """NVML's "00000000:18:00.0" as Linux names it: "0000:18:00.0" (lower case)."""
    domain, sep, rest = nvml_bus_id.strip().lower().partition(":")
    if not sep:
        return nvml_bus_id.strip().lower()
    try:
        return f"{int(domain, 16):04x}:{rest}"
    except ValueError:
        return nvml_bus_id.strip().lower()


def pcie_root(sysfs: Path, bus_id: str) -> str | None:
    """The root complex above `bus_id`, or None where sysfs does not show one (e.g. a VM
    without a PCI topology, or no sysfs in this container)."""
    try:
        resolved = (sysfs / "bus" / "pci" / "devices" / bus_id).resolve(strict=True)
    except OSError:
        return None
    return next((part for part in resolved.parts if _ROOT.fullmatch(part)), None)
