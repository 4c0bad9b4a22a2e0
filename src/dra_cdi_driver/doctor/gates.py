"""Which DRA feature gates the API server has on, told by what it keeps of a dry run.

A server whose gate is off drops the gate's fields from an object it is asked to create, and
so does one too old to know them. So: create, with dryRun=All (nothing is stored), a
ResourceSlice of this node's pool carrying those fields, as the driver's own credentials
(RBAC and the chart's admission policy let the driver create its own node's slices only, so
the probe is exactly that), and look at what comes back. For DeviceClass.extendedResourceName
the same with a DeviceClass, which the driver's service account may not create: then the
driver's DeviceClass is read instead. Not being allowed to ask is a warning, never a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from dra_cdi_driver.cdi import ContainerEdits
from dra_cdi_driver.devices.base import Device
from dra_cdi_driver.doctor.api import ApiCallError, call
from dra_cdi_driver.doctor.report import Result
from dra_cdi_driver.kubeapi.client import REQUEST_TIMEOUT_S, RESOURCE_GROUP
from dra_cdi_driver.kubeapi.slices import device_json

PROBE = "doctor-probe"
FIX_GATE = "turn on the feature gate {gate} on kube-apiserver, kube-scheduler and the kubelet"


def _dry_run_create(api: client.ApiClient, version: str, plural: str, body: Any) -> Any:
    """Raises ApiCallError."""
    return call(
        lambda: client.CustomObjectsApi(api).create_cluster_custom_object(
            RESOURCE_GROUP,
            version,
            plural,
            body,
            dry_run="All",
            field_validation="Ignore",  # an unknown field is dropped: what we look for
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    )


def _slice(version: str, driver: str, node: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RESOURCE_GROUP}/{version}",
        "kind": "ResourceSlice",
        "metadata": {"generateName": f"{node}-{driver.replace('.', '-')}-{PROBE}-"[:200]},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 0, "resourceSliceCount": 1},
            **spec,
        },
    }


def device_probe(version: str, driver: str, node: str) -> dict[str, Any]:
    """A slice with one device that may be shared and carries a taint."""
    device = device_json(Device(PROBE, {}, {}, ContainerEdits()), version)
    fields = device.get("basic", device)  # v1beta1 nests device fields in `basic`
    fields["allowMultipleAllocations"] = True
    fields["taints"] = [{"key": f"{driver}/{PROBE}", "value": "probe", "effect": "NoSchedule"}]
    return _slice(version, driver, node, {"devices": [device]})


def counters_probe(version: str, driver: str, node: str) -> dict[str, Any]:
    """A slice that declares a counter set (since 1.35 such a slice holds no devices)."""
    counters = [{"name": PROBE, "counters": {"memory": {"value": "1"}}}]
    return _slice(version, driver, node, {"sharedCounters": counters})


def _first_device(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    devices = (answer.get("spec") or {}).get("devices") or [{}]
    device = devices[0] if isinstance(devices[0], Mapping) else {}
    basic = device.get("basic")
    return basic if isinstance(basic, Mapping) else device


def _gate(gate: str, kept: bool, field: str) -> Result:
    check = f"gate {gate}"
    if kept:
        return Result.ok(check, f"on (the API server keeps {field})")
    return Result.warn(
        check,
        f"off: the API server drops {field} (the gate is off, or the server predates it)",
        FIX_GATE.format(gate=gate),
    )


def _not_checked(gate: str, what: str, err: ApiCallError) -> Result:
    fix = ""
    if err.status == 403:
        fix = "run doctor with credentials that may create (dry run) " + what
    return Result.warn(
        f"gate {gate}", f"not checked: a dry-run create of {what} failed: {err}", fix
    )


def check_slice_gates(api: client.ApiClient, version: str, driver: str, node: str) -> list[Result]:
    what = f"a ResourceSlice of node {node}"
    results = []
    try:
        answer = _dry_run_create(
            api, version, "resourceslices", counters_probe(version, driver, node)
        )
        kept = bool((answer.get("spec") or {}).get("sharedCounters"))
        results.append(_gate("DRAPartitionableDevices", kept, "ResourceSlice spec.sharedCounters"))
    except ApiCallError as err:
        results.append(_not_checked("DRAPartitionableDevices", what, err))
    try:
        answer = _dry_run_create(
            api, version, "resourceslices", device_probe(version, driver, node)
        )
        device = _first_device(answer)
        results += [
            _gate(
                "DRAConsumableCapacity",
                device.get("allowMultipleAllocations") is True,
                "device allowMultipleAllocations",
            ),
            _gate("DRADeviceTaints", bool(device.get("taints")), "device taints"),
        ]
    except ApiCallError as err:
        results += [
            _not_checked("DRAConsumableCapacity", what, err),
            _not_checked("DRADeviceTaints", what, err),
        ]
    return results


def check_extended_resource(api: client.ApiClient, version: str, driver: str) -> list[Result]:
    """The DRAExtendedResource gate, and the driver's DeviceClass (named like the driver)."""
    gate, field = "DRAExtendedResource", "DeviceClass spec.extendedResourceName"
    probe = {
        "apiVersion": f"{RESOURCE_GROUP}/{version}",
        "kind": "DeviceClass",
        "metadata": {"generateName": f"{driver}-{PROBE}-"},
        "spec": {"extendedResourceName": f"{driver}/{PROBE}"},
    }
    gate_result: Result | None = None  # None: may not ask; the class below tells
    try:
        answer = _dry_run_create(api, version, "deviceclasses", probe)
        kept = bool((answer.get("spec") or {}).get("extendedResourceName"))
        gate_result = _gate(gate, kept, field)
    except ApiCallError as err:
        if err.status != 403:
            gate_result = _not_checked(gate, "a DeviceClass", err)
    class_result, extended = _device_class(api, version, driver)
    if gate_result is None:
        if extended:
            gate_result = Result.ok(
                f"gate {gate}", f"on (DeviceClass {driver} keeps extendedResourceName)"
            )
        else:
            gate_result = Result.warn(
                f"gate {gate}",
                "not checked: these credentials may not create a DeviceClass (dry run), and "
                f"DeviceClass {driver} has no extendedResourceName to tell by",
                "run doctor with credentials that may create DeviceClasses to know",
            )
    return [gate_result, class_result]


def _device_class(api: client.ApiClient, version: str, driver: str) -> tuple[Result, str]:
    """The DeviceClass line, and its extendedResourceName ("" when none)."""
    check = "deviceclass"
    try:
        found: Any = call(
            lambda: client.CustomObjectsApi(api).get_cluster_custom_object(
                RESOURCE_GROUP, version, "deviceclasses", driver, _request_timeout=REQUEST_TIMEOUT_S
            )
        )
    except ApiCallError as err:
        if err.status == 404:
            return Result.warn(
                check,
                f"DeviceClass {driver} does not exist: claims that name it stay pending",
                "install it (the chart's deviceClass.create, or deploy/deviceclass.yaml)",
            ), ""
        return Result.warn(check, f"cannot read DeviceClass {driver}: {err}; not checked"), ""
    extended = str((found.get("spec") or {}).get("extendedResourceName") or "")
    if extended:
        return Result.ok(
            check,
            f"{driver} exists; pods asking for {extended} in resources.limits get its devices",
        ), extended
    return Result.ok(check, f"{driver} exists (no extendedResourceName)"), ""
