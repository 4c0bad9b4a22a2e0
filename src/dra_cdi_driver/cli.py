"""The `dra-cdi-driver` command: flags, their environment-variable mirrors, and dispatch.

Every flag `--some-flag` can also be set through the environment variable
`SOME_FLAG` (the flag wins). Defaults suit a kind cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dra_cdi_driver import __version__, logs
from dra_cdi_driver.devices import SOURCES, InventoryError
from dra_cdi_driver.kubeapi.slice_api import SliceApiError
from dra_cdi_driver.kubelet.plugin import PluginStartError
from dra_cdi_driver.settings import (
    DEFAULT_CDI_ROOT,
    DEFAULT_DRIVER_NAME,
    DEFAULT_KUBELET_DIR,
    Settings,
    SettingsError,
)

log = logging.getLogger("dra_cdi_driver")

COMMANDS = {
    "run": "serve the kubelet: register, prepare and unprepare claims, publish ResourceSlices "
    "(the default)",
    "devices": "print this node's devices and the ResourceSlices that would be published, "
    "as YAML, without touching the cluster",
    "cleanup": "delete this node's ResourceSlices of this driver (for uninstall)",
    "doctor": "check, without changing anything, that this node is ready for the driver: "
    "one line per check (ok, warn, fail); exit 1 when a check fails",
}


def _env_name(flag: str) -> str:
    return flag.lstrip("-").upper().replace("-", "_")


def _add(parser: argparse.ArgumentParser, flag: str, default: Any, help: str, **kw: Any) -> None:
    """Add `flag` with its environment mirror as the default."""
    env = _env_name(flag)
    value = os.environ.get(env, default)
    choices = kw.get("choices")
    if choices is not None and value is not None and env in os.environ:
        # argparse checks what is typed, not defaults: a bad environment value would pass.
        check = kw.get("type", str)
        if check(value) not in choices:
            parser.error(f"{env}={value!r}: choose from {', '.join(map(str, choices))}")
    shown = "" if default is None else f", default {default}"
    parser.add_argument(flag, default=value, help=f"{help} [env {env}{shown}]", **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dra-cdi-driver",
        description="Kubernetes DRA kubelet plugin that hands devices to containers via CDI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=sorted(COMMANDS),
        help="; ".join(f"{k}: {v}" for k, v in COMMANDS.items()),
    )
    _add(parser, "--driver-name", DEFAULT_DRIVER_NAME, "DRA driver name (a DNS subdomain)")
    _add(parser, "--node-name", None, "this node's name [default: hostname]")
    _add(parser, "--kubeconfig", None, "kubeconfig file; in-cluster config when unset")
    _add(
        parser,
        "--kubelet-dir",
        str(DEFAULT_KUBELET_DIR),
        "the kubelet's root dir; the plugin and registrar dirs default below it",
    )
    _add(
        parser,
        "--plugin-dir",
        None,
        "dir of the DRA socket and the checkpoint [default: <kubelet-dir>/plugins/<driver-name>]",
    )
    _add(
        parser,
        "--registrar-dir",
        None,
        "the kubelet's plugin registration dir [default: <kubelet-dir>/plugins_registry]",
    )
    _add(
        parser,
        "--cdi-root",
        str(DEFAULT_CDI_ROOT),
        "dir the container runtime reads CDI specs from",
    )
    _add(parser, "--device-source", "mock", "where devices come from", choices=SOURCES)
    _add(parser, "--mock-devices", "8", "number of mock GPUs", type=int)
    _add(parser, "--mock-dev-dir", "/dev/mock", "host dir of mock device nodes device_<i>")
    _add(parser, "--mock-lib-dir", "/mock/so", "host dir of mock libraries device_<i>.so")
    _add(
        parser,
        "--mock-gpu-mode",
        "whole",
        "mock GPUs: whole (one claim at a time), shared (claims take parts of their memory and "
        "compute: DRAConsumableCapacity) or partitioned (a whole GPU, halves and quarters "
        "sharing counters: DRAPartitionableDevices)",
        choices=["whole", "shared", "partitioned"],
    )
    _add(
        parser,
        "--mock-bin-dir",
        "/mock/bin",
        "host dir of tools mounted into /usr/local/bin of every container with a mock GPU",
    )
    _add(
        parser,
        "--mock-health-dir",
        None,
        "mock GPUs' health switch: a file here named after a device (gpu-0) makes it "
        "unhealthy, its first line the reason; read every second "
        "[default: <plugin-dir>/health]",
    )
    _add(
        parser,
        "--unhealthy-taint-effect",
        "NoSchedule",
        "effect of the taint <driver-name>/unhealthy on an unhealthy device in the "
        "ResourceSlice: NoSchedule (no new claims get it) or NoExecute (the pods using it are "
        "evicted too, unless they tolerate it)",
        choices=["NoSchedule", "NoExecute"],
    )
    _add(
        parser,
        "--claim-device-status",
        "true",
        "after prepare, write status.devices[] of the claim (a Ready condition, the device's "
        "uuid, model and CDI ids; Ready=False while it is unhealthy) by server-side apply; "
        "needs patch on resourceclaims/status",
        type=_bool,
        nargs="?",
        const=True,
    )
    _add(
        parser,
        "--nvidia-driver-root",
        "/",
        "host dir the NVIDIA driver is installed under (/run/nvidia/driver with the GPU "
        "operator); CDI host paths start here",
    )
    _add(
        parser,
        "--nvidia-driver-root-mount",
        None,
        "where this process sees --nvidia-driver-root (its hostPath mount in the pod) "
        "[default: the same path]",
    )
    _add(
        parser,
        "--nvidia-cdi-mode",
        "driver",
        "driver: hand containers the driver's libraries ourselves; toolkit: add the ids of "
        "the NVIDIA Container Toolkit's CDI spec (nvidia-ctk cdi generate) instead",
        choices=["driver", "toolkit"],
    )
    _add(
        parser,
        "--nvidia-allow-no-gpus",
        "false",
        "start (and publish an empty pool) when NVML finds no GPU, instead of failing",
        type=_bool,
        nargs="?",
        const=True,
    )
    _add(
        parser,
        "--nvidia-ldcache-hook",
        "true",
        "with --nvidia-cdi-mode driver: add the driver's libraries to each container's "
        "/etc/ld.so.cache (a createContainer hook running the host's ldconfig), so that "
        "images not built on nvidia/cuda find libcuda.so.1",
        type=_bool,
        nargs="?",
        const=True,
    )
    _add(
        parser,
        "--rediscover-interval",
        None,
        "seconds between device rediscoveries, 0: off "
        "[default: 60 with --device-source nvidia, else 0]",
        type=float,
    )
    _add(parser, "--prepare-workers", "16", "claims prepared at once", type=int)
    _add(
        parser,
        "--pod-uid",
        "",
        "the driver pod's UID (downward API: metadata.uid); the sockets are named with it, "
        "so that the old and the new pod of a rolling update serve side by side (kubelet "
        "1.33+); empty: the plain names dra.sock and <driver-name>-reg.sock",
    )
    _add(
        parser,
        "--healthz-port",
        "0",
        "serve GET /healthz (a liveness probe) and GET /metrics (Prometheus) on this TCP "
        "port (0: off)",
        type=int,
    )
    _add(
        parser,
        "--log-level",
        "info",
        "log level",
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
    )
    _add(parser, "--log-format", "text", "log line format", choices=["text", "json"])
    _add(
        parser,
        "--containerd-config",
        "/etc/containerd/config.toml",
        "doctor: the node's containerd config, read to check its CDI settings",
    )
    _add(
        parser,
        "--doctor-output",
        "text",
        "doctor: one line per check (text) or a JSON list",
        choices=["text", "json"],
    )
    return parser


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    kubelet_dir = Path(args.kubelet_dir)
    rediscover = args.rediscover_interval
    if rediscover is None:  # GPUs can fall off the bus; mock devices never change
        rediscover = 60.0 if args.device_source == "nvidia" else 0.0
    return Settings(
        driver_name=args.driver_name,
        node_name=args.node_name or socket.gethostname().lower(),
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        cdi_root=Path(args.cdi_root),
        plugin_dir=Path(args.plugin_dir or kubelet_dir / "plugins" / args.driver_name),
        registrar_dir=Path(args.registrar_dir or kubelet_dir / "plugins_registry"),
        device_source=args.device_source,
        mock_devices=args.mock_devices,
        mock_dev_dir=Path(args.mock_dev_dir),
        mock_lib_dir=Path(args.mock_lib_dir),
        mock_bin_dir=Path(args.mock_bin_dir),
        mock_gpu_mode=args.mock_gpu_mode,
        log_level=args.log_level,
        log_format=args.log_format,
        prepare_workers=args.prepare_workers,
        healthz_port=args.healthz_port,
        pod_uid=args.pod_uid or None,
        rediscover_interval=rediscover,
        nvidia_driver_root=Path(args.nvidia_driver_root),
        nvidia_driver_root_mount=(
            Path(args.nvidia_driver_root_mount) if args.nvidia_driver_root_mount else None
        ),
        nvidia_cdi_mode=args.nvidia_cdi_mode,
        nvidia_allow_no_gpus=args.nvidia_allow_no_gpus,
        nvidia_ldcache_hook=args.nvidia_ldcache_hook,
        mock_health_dir_override=Path(args.mock_health_dir) if args.mock_health_dir else None,
        unhealthy_taint_effect=args.unhealthy_taint_effect,
        claim_device_status=args.claim_device_status,
    )


def _devices(settings: Settings) -> int:
    from dra_cdi_driver.kubeapi.slices import render_devices_report

    print(render_devices_report(settings), end="")
    return 0


def _cleanup(settings: Settings) -> int:
    from dra_cdi_driver.kubeapi import client as kube
    from dra_cdi_driver.kubeapi.publisher import delete_node_slices

    api = kube.api_client(settings.kubeconfig)
    if api is None:
        raise SettingsError("cleanup needs the API: pass --kubeconfig (KUBECONFIG) or run in a pod")
    deleted = delete_node_slices(api, settings.driver_name, settings.node_name)
    print(f"deleted {deleted} ResourceSlice(s) of {settings.driver_name} on {settings.node_name}")
    return 0


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from dra_cdi_driver.doctor import doctor

    return doctor(settings, Path(args.containerd_config), args.doctor_output)


def _run(settings: Settings) -> int:
    from dra_cdi_driver import app

    app.run(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    logs.setup(settings.log_level, settings.log_format)
    commands: dict[str, Callable[[Settings], int]] = {
        "run": _run,
        "devices": _devices,
        "cleanup": _cleanup,
        "doctor": lambda s: _doctor(s, args),
    }
    command = commands[args.command]
    try:
        settings.validate()
        return command(settings)
    except (
        SettingsError,
        InventoryError,
        PluginStartError,
        SliceApiError,
        ValueError,
        OSError,
    ) as err:
        # Expected failures: one clear line, no traceback.
        log.error("cannot %s", args.command, extra=logs.kv(error=str(err)))
        print(f"dra-cdi-driver {args.command}: error: {err}", file=sys.stderr)
        return 1
