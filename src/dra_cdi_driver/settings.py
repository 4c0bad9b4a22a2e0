"""One frozen settings object, built from the command line once and validated at start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DRIVER_NAME = "gpu.cdi.example.com"
DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet")
DEFAULT_CDI_ROOT = Path("/var/run/cdi")

# The longest unix socket path we serve on. The kernel's sun_path holds 107 bytes and a NUL,
# but gRPC's core refuses to bind 106 or more (grpcio 1.85: "Path name should not have more
# than 107 characters"), so 105 is what works; tests/unit/test_sockets.py binds both sides.
MAX_SOCKET_PATH = 105
# The shortest cut of the pod UID in a socket name: 8 hex digits of a random UUID still tell
# the two pods of a rolling update apart (a clash once in 4 billion rolls).
MIN_SOCKET_UID = 8
# A pod UID is a UUID; any such token will do (shorter ones fit longer socket dirs).
POD_UID = re.compile(r"[a-z0-9]([-a-z0-9]{0,34}[a-z0-9])?")
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
    mock_gpu_mode: str = "whole"  # whole | shared (consumable capacity) | partitioned
    # The pod's UID (downward API): names the sockets, so that the old and the new pod of a
    # rolling update serve side by side (kubelet 1.33+). None: the plain names.
    pod_uid: str | None = None
    # Mock health switch: a file per unhealthy device. None: <plugin-dir>/health.
    mock_health_dir_override: Path | None = None
    unhealthy_taint_effect: str = "NoSchedule"  # or NoExecute: evict the pods too
    claim_device_status: bool = True  # write ResourceClaim status.devices[] of our devices

    @property
    def mock_health_dir(self) -> Path:
        return self.mock_health_dir_override or self.plugin_dir / "health"

    @property
    def dra_socket(self) -> Path:
        return self._sockets(self.socket_uid)[0]

    @property
    def registration_socket(self) -> Path:
        return self._sockets(self.socket_uid)[1]

    def _sockets(self, uid: str | None) -> tuple[Path, Path]:
        # The names of the Go helper (k8s.io/dynamic-resource-allocation/kubeletplugin).
        if uid is None:
            return self.plugin_dir / "dra.sock", self.registrar_dir / f"{self.driver_name}-reg.sock"
        return (
            self.plugin_dir / f"dra-{uid}.sock",
            self.registrar_dir / f"{self.driver_name}-{uid}-reg.sock",
        )

    @property
    def socket_uid(self) -> str | None:
        """The pod UID as the socket names carry it: whole where both paths fit in a unix
        socket path, else cut to the longest start of it that fits (at least 8 characters;
        kubelet dirs as long as MicroK8s' need that)."""
        if not self.pod_uid:
            return None
        for size in range(len(self.pod_uid), MIN_SOCKET_UID - 1, -1):
            uid = self.pod_uid[:size].rstrip("-")
            if all(len(str(p).encode()) <= MAX_SOCKET_PATH for p in self._sockets(uid)):
                return uid
        return self.pod_uid[:MIN_SOCKET_UID]  # too long all the same: validate() says so

    @property
    def lock_dir(self) -> Path:
        return self.plugin_dir / "locks"

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
        if self.pod_uid is not None and not POD_UID.fullmatch(self.pod_uid):
            raise SettingsError(
                f"--pod-uid {self.pod_uid[:80]!r}: must be the pod's UID, from the downward "
                "API (fieldRef metadata.uid): at most 36 lowercase letters, digits and '-'; "
                "or empty"
            )
        # The kubelet dials the sockets by path, and a unix socket's path has a size limit.
        for flag, sock in (
            ("--plugin-dir", self.dra_socket),
            ("--registrar-dir", self.registration_socket),
        ):
            size = len(str(sock).encode())
            if size > MAX_SOCKET_PATH:
                uid = (
                    f" with the pod UID (--pod-uid) cut to {MIN_SOCKET_UID} characters"
                    if self.pod_uid
                    else ""
                )
                raise SettingsError(
                    f"{flag}: socket path {sock} is {size} bytes{uid}, more than the "
                    f"{MAX_SOCKET_PATH} a unix socket path may have: use a shorter {flag} "
                    "or --driver-name"
                )
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
        if self.unhealthy_taint_effect not in ("NoSchedule", "NoExecute"):
            raise SettingsError(
                f"--unhealthy-taint-effect {self.unhealthy_taint_effect!r}: must be NoSchedule "
                "or NoExecute"
            )
        if not self.mock_health_dir.is_absolute():
            raise SettingsError(f"--mock-health-dir {self.mock_health_dir}: must be absolute")
        if self.nvidia_cdi_mode not in ("driver", "toolkit"):
            raise SettingsError(
                f"--nvidia-cdi-mode {self.nvidia_cdi_mode!r}: must be driver or toolkit"
            )
