"""The container runtime check: the one the Node says runs, else whichever config is here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dra_cdi_driver.doctor import containerd, crio
from dra_cdi_driver.doctor.report import Result

_VERSION = re.compile(r"^([a-z0-9-]+)://v?(\d+)\.(\d+)")


@dataclass(frozen=True)
class RuntimeVersion:
    name: str  # "containerd", "cri-o", ...
    version: tuple[int, int] | None  # (major, minor); None when unreadable


def parse_runtime_version(text: str) -> RuntimeVersion | None:
    """Node status.nodeInfo.containerRuntimeVersion, e.g. "containerd://1.7.24~ds1"."""
    match = _VERSION.match(text.strip())
    if match:
        return RuntimeVersion(match[1], (int(match[2]), int(match[3])))
    name, sep, _ = text.partition("://")
    return RuntimeVersion(name, None) if sep and name else None


def check(
    cdi_root: Path,
    containerd_config: Path,
    running: RuntimeVersion | None,
    crio_files: list[Path] | None = None,
) -> Result:
    """`running`: what the Node object says runs; None without the API."""
    crio_files = crio.config_files() if crio_files is None else crio_files
    name = running.name if running else None
    version = running.version if running else None
    if name == "containerd":
        return containerd.check(containerd_config, cdi_root, version)
    if name == "cri-o":
        return crio.check(cdi_root, version, crio_files)
    if name is not None:
        return Result.warn(
            "container runtime",
            f"{name} is not containerd or CRI-O: its CDI settings were not checked",
            f"make sure {name} has CDI on and reads CDI specs from {cdi_root}",
        )
    # Not known which one runs: check the config that is here.
    if crio_files and not containerd_config.exists():
        return crio.check(cdi_root, None, crio_files)
    return containerd.check(containerd_config, cdi_root, None)
