"""`dra-cdi-driver doctor`: is this node ready for the driver? Checks, one line each.

Read-only: no file is written, no API object created (the API probes are dry runs). The
checks, in the order they are printed: the container runtime's CDI settings, the kubelet's
version, the API server (DRA served, the feature gates, the DeviceClass), the kubelet's
dirs, the CDI root, other CDI specs of our kind, the device source.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kubernetes import client

from dra_cdi_driver.devices.base import DeviceSource
from dra_cdi_driver.doctor import api, cdi_specs, devices, gates, node_dirs, runtime
from dra_cdi_driver.doctor.report import Result, exit_code, render_json, render_text
from dra_cdi_driver.doctor.runtime import RuntimeVersion
from dra_cdi_driver.kubeapi import client as kube
from dra_cdi_driver.settings import Settings

NO_API_FIX = "pass --kubeconfig (KUBECONFIG), or run doctor in the driver's pod"


def run_checks(
    settings: Settings,
    containerd_config: Path,
    *,
    crio_files: list[Path] | None = None,
    static_spec_dirs: Iterable[Path] = cdi_specs.STATIC_DIRS,
    mountinfo: Path = node_dirs.MOUNTINFO,
) -> list[Result]:
    cluster, running = _cluster_checks(settings)
    kind = f"{settings.driver_name}/{DeviceSource.cdi_class}"
    return [
        runtime.check(settings.cdi_root, containerd_config, running, crio_files),
        *cluster,
        node_dirs.check_registrar_dir(settings.registrar_dir),
        node_dirs.check_plugin_dir(settings.plugin_dir),
        node_dirs.check_cdi_root(settings.cdi_root, mountinfo),
        *cdi_specs.check(kind, settings.cdi_root, static_spec_dirs),
        *devices.check(settings),
    ]


def _cluster_checks(settings: Settings) -> tuple[list[Result], RuntimeVersion | None]:
    """The kubelet and API server lines, and the container runtime the Node reports."""
    try:
        api_client = kube.api_client(settings.kubeconfig, pool_size=4)
    except kube.KubeconfigError as err:
        return [
            Result.warn("kubelet", "not checked: no usable API config"),
            Result.fail("api server", str(err), "fix the kubeconfig, or point --kubeconfig at one"),
        ], None
    if api_client is None:
        return [
            Result.warn(
                "kubelet", "not checked: no API (no --kubeconfig, not in a pod)", NO_API_FIX
            ),
            Result.warn("api server", "not checked: no API", NO_API_FIX),
        ], None
    try:
        return _with_api(api_client, settings)
    finally:
        api_client.close()


def _with_api(
    api_client: client.ApiClient, settings: Settings
) -> tuple[list[Result], RuntimeVersion | None]:
    running = None
    try:
        node = api.read_node(api_client, settings.node_name)
        kubelet = api.check_kubelet(node)
        running = runtime.parse_runtime_version(node.container_runtime_version)
    except api.ApiCallError as err:
        kubelet = api.node_error(err, "kubelet", settings.node_name)
    try:
        served = api.served_resource_versions(api_client)
    except api.ApiCallError as err:
        return [
            kubelet,
            Result.fail("api server", str(err), "check --kubeconfig and that the API server is up"),
        ], running
    try:
        version = api.server_version(api_client)
    except api.ApiCallError:
        version = ""
    results = [kubelet, api.check_resource_api(served, version)]
    if served:
        chosen = served[0]
        results += gates.check_slice_gates(
            api_client, chosen, settings.driver_name, settings.node_name
        )
        results += gates.check_extended_resource(api_client, chosen, settings.driver_name)
    return results, running


def doctor(settings: Settings, containerd_config: Path, output: str = "text") -> int:
    """Print the checks; 0 when the node is ready (nothing failed), else 1."""
    results = run_checks(settings, containerd_config)
    print(render_json(results) if output == "json" else render_text(results), end="")
    return exit_code(results)


__all__ = ["Result", "doctor", "run_checks"]
