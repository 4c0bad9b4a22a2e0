"""The NVIDIA Container Toolkit's own CDI spec (`--nvidia-cdi-mode=toolkit`).

`nvidia-ctk cdi generate` writes a spec of kind nvidia.com/gpu whose devices are named by
index ("0", and "0:1" for MIG device 1 of GPU 0) and/or by UUID ("GPU-…", "MIG-…"), with
the libraries, hooks and control nodes in its spec-level edits. In toolkit mode a prepared
device gets that spec's id next to ours, and the toolkit's spec does the mounting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dra_cdi_driver.devices.inventory import InventoryError

KIND = "nvidia.com/gpu"
SPEC_FILES = ("nvidia.yaml", "nvidia.json")
DEFAULT_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


@dataclass(frozen=True)
class ToolkitSpec:
    path: Path
    device_names: frozenset[str]

    def cdi_id(self, uuid: str, index_name: str) -> str:
        """The toolkit's id for a device: by UUID where the spec has it, else by index."""
        for name in (uuid, index_name):
            if name in self.device_names:
                return f"{KIND}={name}"
        raise InventoryError(
            f"--nvidia-cdi-mode=toolkit: the NVIDIA CDI spec {self.path} has no device "
            f"{uuid} (or {index_name}); it is stale: regenerate it with "
            f"`nvidia-ctk cdi generate --output={self.path}`"
        )


def find_spec(dirs: Iterable[Path]) -> ToolkitSpec:
    looked: list[str] = []
    for directory in dict.fromkeys(dirs):  # in order, without duplicates
        for name in SPEC_FILES:
            path = directory / name
            looked.append(str(path))
            if path.is_file():
                return _load(path)
    raise InventoryError(
        f"--nvidia-cdi-mode=toolkit: no NVIDIA CDI spec found (looked for {', '.join(looked)}): "
        "generate it on the node with `nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`"
        ", or use --nvidia-cdi-mode=driver"
    )


def _load(path: Path) -> ToolkitSpec:
    try:
        text = path.read_text()
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise InventoryError(f"cannot read the NVIDIA CDI spec {path}: {err}") from None
    except RecursionError:
        raise InventoryError(f"cannot read the NVIDIA CDI spec {path}: nested too deeply") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise InventoryError(f"{path}: not a CDI spec of kind {KIND}")
    if not isinstance(data.get("devices") or [], list):
        raise InventoryError(f"{path}: devices is not a list")
    names = frozenset(
        str(d["name"])
        for d in data.get("devices") or []
        if isinstance(d, dict) and d.get("name") is not None
    )
    return ToolkitSpec(path, names)
