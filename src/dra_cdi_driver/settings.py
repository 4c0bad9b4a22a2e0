"""One frozen settings object, built from the command line once and validated at start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DRIVER_NAME = "gpu.cdi.example.com"
DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet")
DEFAULT_CDI_ROOT = Path("/var/run/cdi")

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SettingsError(ValueError):
    """A flag value that cannot work; the message names the flag."""


@dataclass(frozen=True)
class Settings:
    driver_name: str
    node_name: str
    kubeconfig: Path | None  # None: in-cluster config, or no API at all
    cdi_root: Path
    plugin_dir: Path
    registrar_dir: Path
    device_source: str
    mock_devices: int
    mock_dev_dir: Path
    mock_lib_dir: Path
    mock_bin_dir: Path
    log_level: str
    log_format: str
    prepare_workers: int = 16
    healthz_port: int = 0  # 0: no /healthz endpoint
    rediscover_interval: float = 0.0  # seconds between device rediscoveries; 0: never
    nvidia_driver_root: Path = Path("/")  # on the host: CDI host paths start here
    nvidia_driver_root_mount: Path | None = None  # where this process sees it; None: same
    nvidia_cdi_mode: str = "driver"  # "driver": mount the libraries; "toolkit": nvidia-ctk's
    nvidia_allow_no_gpus: bool = False
    nvidia_ldcache_hook: bool = True  # add the libraries to each container's ld.so.cache

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        return self.registrar_dir / f"{self.driver_name}-reg.sock"

    @property
    def checkpoint_dir(self) -> Path:
        return self.plugin_dir / "checkpoint"

    def validate(self) -> None:
        if len(self.driver_name) > 63 or not _DNS_SUBDOMAIN.fullmatch(self.driver_name):
            raise SettingsError(
                f"--driver-name {self.driver_name!r}: must be a DNS subdomain of at most 63 "
                "characters (lowercase letters, digits, '-' and '.'), e.g. gpu.example.com"
            )
        if not self.driver_name[0].isalpha():
            raise SettingsError(
                f"--driver-name {self.driver_name!r}: must start with a letter "
                "(it is the CDI vendor)"
            )
        if not self.node_name:
            raise SettingsError("--node-name is empty: set it or NODE_NAME (the downward API)")
        for flag, path in (
            ("--cdi-root", self.cdi_root),
            ("--plugin-dir", self.plugin_dir),
            ("--registrar-dir", self.registrar_dir),
        ):
            if not path.is_absolute():
                raise SettingsError(f"{flag} {path}: must be an absolute path")
        # The kubelet dials the socket by path; unix socket paths are limited to 107 bytes.
        for flag, sock in (
            ("--plugin-dir", self.dra_socket),
            ("--registrar-dir", self.registration_socket),
        ):
            if len(str(sock).encode()) > 107:
                raise SettingsError(f"{flag}: socket path {sock} is longer than 107 bytes")
        if self.mock_devices < 0:
            raise SettingsError(f"--mock-devices {self.mock_devices}: must be >= 0")
        if not 0 <= self.healthz_port <= 65535:
            raise SettingsError(f"--healthz-port {self.healthz_port}: must be 0-65535")
        if self.prepare_workers < 1:
            raise SettingsError(f"--prepare-workers {self.prepare_workers}: must be >= 1")
        if self.rediscover_interval < 0:
            raise SettingsError(
                f"--rediscover-interval {self.rediscover_interval}: must be >= 0 (0: off)"
            )
        for flag, root in (
            ("--nvidia-driver-root", self.nvidia_driver_root),
            ("--nvidia-driver-root-mount", self.nvidia_driver_root_mount),
        ):
            if root is not None and not root.is_absolute():
                raise SettingsError(f"{flag} {root}: must be an absolute path")
        if self.nvidia_cdi_mode not in ("driver", "toolkit"):
            raise SettingsError(
                f"--nvidia-cdi-mode {self.nvidia_cdi_mode!r}: must be driver or toolkit"
            )
