"""ResourceSlices for this node's pool: pure functions from devices to API objects.

The publisher (publisher.py) decides *when* to write; this module decides *what*:
the slice objects for a generation of the pool, in the shape of each API version,
and the comparable content of a slice that tells whether the server's copy drifted.
Nothing here talks to a cluster.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from kubernetes.utils import parse_quantity

from dra_cdi_driver.devices.base import (
    AttributeValue,
    CounterSet,
    Device,
    RequestPolicy,
    Taint,
    Version,
)
from dra_cdi_driver.kubeapi.client import RESOURCE_GROUP, RESOURCE_VERSIONS
from dra_cdi_driver.settings import Settings

MAX_DEVICES_PER_SLICE = 128  # the API's limit per ResourceSlice
# ...and once any device consumes counters (or carries taints): the API's lower limit.
MAX_DEVICES_PER_SLICE_ADVANCED = 64
MAX_COUNTER_SETS_PER_SLICE = 8
MAX_NAME = 253  # a ResourceSlice name is a DNS subdomain
KIND = "ResourceSlice"

# The DRA features this driver uses beyond whole devices, by the name of their gate. An API
# server that does not serve one drops its fields; the publisher notices and stops using it.
PARTITIONABLE = "DRAPartitionableDevices"
CONSUMABLE_CAPACITY = "DRAConsumableCapacity"
DEVICE_TAINTS = "DRADeviceTaints"
FEATURES = (PARTITIONABLE, CONSUMABLE_CAPACITY, DEVICE_TAINTS)
# A taint value is a label value.
MAX_TAINT_VALUE = 63
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")

Slice = dict[str, Any]


class SliceError(ValueError):
    """The devices cannot be expressed as a ResourceSlice (e.g. a bad quantity)."""


def slice_name(driver: str, node: str, index: int) -> str:
    """The deterministic name of slice `index` of this (driver, node) pool.

    `<node>-<driver with dots dashed>-<hash>-<index>`. The hash of driver and node keeps
    names of different pools apart even where the readable part is ambiguous
    ("a-b" + "c" vs "a" + "b-c") or had to be shortened to fit 253 characters.
    """
    digest = hashlib.sha256(f"{driver}/{node}".encode()).hexdigest()[:8]
    suffix = f"-{digest}-{index}"
    prefix = f"{node}-{driver.replace('.', '-')}"[: MAX_NAME - len(suffix)]
    # A cut may leave a '.' or '-' that the suffix's '-' would turn into an invalid name.
    return prefix.rstrip(".-") + suffix


def attribute_json(value: AttributeValue) -> dict[str, Any]:
    """One attribute in the API's typed form."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, Version):
        return {"version": value.value}
    return {"string": value}


def _check_quantity(device: Device, name: str, value: str) -> None:
    try:
        parse_quantity(value)
    except (ValueError, InvalidOperation):
        raise SliceError(
            f"device {device.name}: capacity {name}={value!r} is not a Kubernetes quantity "
            "(e.g. 80Gi, 1500m, 4)"
        ) from None


def _policy_json(policy: RequestPolicy) -> dict[str, Any]:
    valid_range = {"min": policy.min}
    if policy.max is not None:
        valid_range["max"] = policy.max
    if policy.step is not None:
        valid_range["step"] = policy.step
    return {"default": policy.default, "validRange": valid_range}


def _capacity_json(device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(device.capacity.items()):
        _check_quantity(device, name, value)
        out[name] = {"value": value}
        policy = device.request_policies.get(name)
        if policy is not None:
            out[name]["requestPolicy"] = _policy_json(policy)
    return out


def device_json(device: Device, api_version: str) -> dict[str, Any]:
    """One entry of `spec.devices` in the shape of `api_version`."""
    body: dict[str, Any] = {
        "attributes": {k: attribute_json(v) for k, v in sorted(device.attributes.items())},
        "capacity": _capacity_json(device),
    }
    if device.consumes:
        body["consumesCounters"] = [
            {
                "counterSet": use.counter_set,
                "counters": {k: {"value": v} for k, v in sorted(use.counters.items())},
            }
            for use in device.consumes
        ]
    if device.shareable:
        body["allowMultipleAllocations"] = True
    if device.taints:
        body["taints"] = [taint_json(t) for t in device.taints]
    if api_version == "v1beta1":  # v1beta1 nests them in the `basic` union member
        return {"name": device.name, "basic": body}
    return {"name": device.name, **body}


def taint_value(reason: str) -> str:
    """`reason` as a label value (at most 63 of letters, digits, '-', '_', '.', starting and
    ending with a letter or digit): the rest become '-'."""
    value = _LABEL_VALUE_BAD.sub("-", reason)[:MAX_TAINT_VALUE]
    return value.strip("-_.") or "unhealthy"


def rfc3339(when: float) -> str:
    """A time as the API server stores it (whole seconds, UTC), so a round trip compares
    equal."""
    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def taint_json(taint: Taint) -> dict[str, Any]:
    return {
        "key": taint.key,
        "value": taint.value,
        "effect": taint.effect,
        "timeAdded": rfc3339(taint.time_added),
    }


def counter_set_json(counter_set: CounterSet) -> dict[str, Any]:
    return {
        "name": counter_set.name,
        "counters": {k: {"value": v} for k, v in sorted(counter_set.counters.items())},
    }


def publishable(
    devices: Sequence[Device], counter_sets: Sequence[CounterSet], off: Iterable[str]
) -> tuple[list[Device], list[CounterSet]]:
    """The devices to publish where the features in `off` are not served: never a device
    that would mean something else without them. Without shared counters, the devices that
    need them (partitions, and whole GPUs whose parts are listed too) are left out and the
    rest are whole devices; without consumable capacity, shareable devices are exclusive;
    without device taints, a tainted (unhealthy) device is left out, as a device plugin
    leaves an unhealthy device out of what it advertises."""
    off = set(off)
    out = list(devices)
    if PARTITIONABLE in off:
        out = [replace(d, consumes=()) for d in out if not d.needs_counters]
        counter_sets = []
    if CONSUMABLE_CAPACITY in off:
        out = [replace(d, shareable=False, request_policies={}) for d in out]
    if DEVICE_TAINTS in off:
        out = [d for d in out if not d.taints]
    return out, list(counter_sets)


def _natural_key(device: Device) -> tuple[tuple[int, int | str], ...]:
    # gpu-2 before gpu-10, whatever order the source discovered them in.
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", device.name)
        if part
    )


def chunk(devices: Sequence[Device]) -> list[list[Device]]:
    """The pool's devices, sorted, in slices of at most 128 (64 once any device consumes
    counters or carries a taint: the API's limit); always at least one slice, so that a
    node without devices still says so (an empty, complete pool)."""
    ordered = sorted(devices, key=_natural_key)
    size = MAX_DEVICES_PER_SLICE
    if any(d.consumes or d.taints for d in ordered):
        size = MAX_DEVICES_PER_SLICE_ADVANCED
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    return chunks or [[]]


def owner_reference(node: str, node_uid: str) -> dict[str, Any]:
    """The Node as owner: the garbage collector deletes the slices with their node."""
    return {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}


def build_slices(
    devices: Sequence[Device],
    *,
    driver: str,
    node: str,
    generation: int,
    api_version: str,
    node_uid: str | None,
    counter_sets: Sequence[CounterSet] = (),
) -> list[Slice]:
    """Every ResourceSlice of one generation of this node's pool (pool name = node name):
    the device slices, then the counter sets in slices of their own (a slice holds devices
    or counter sets since Kubernetes 1.35). Shared counters and consumable capacity are
    published through resource.k8s.io/v1 only (every server with them serves v1); through
    an older version the devices are whole (`publishable`)."""
    if api_version not in RESOURCE_VERSIONS:
        raise ValueError(f"unknown {RESOURCE_GROUP} version {api_version!r}")
    if api_version != "v1":
        devices, counter_sets = publishable(devices, counter_sets, FEATURES)
    device_chunks = chunk(devices)
    ordered_sets = sorted(counter_sets, key=lambda c: c.name)
    set_chunks = [
        ordered_sets[i : i + MAX_COUNTER_SETS_PER_SLICE]
        for i in range(0, len(ordered_sets), MAX_COUNTER_SETS_PER_SLICE)
    ]
    bodies: list[dict[str, Any]] = [
        {"devices": [device_json(d, api_version) for d in part]} for part in device_chunks
    ]
    bodies += [{"sharedCounters": [counter_set_json(c) for c in part]} for part in set_chunks]
    out: list[Slice] = []
    for index, body in enumerate(bodies):
        metadata: dict[str, Any] = {"name": slice_name(driver, node, index)}
        if node_uid is not None:
            metadata["ownerReferences"] = [owner_reference(node, node_uid)]
        out.append(
            {
                "apiVersion": f"{RESOURCE_GROUP}/{api_version}",
                "kind": KIND,
                "metadata": metadata,
                "spec": {
                    "driver": driver,
                    "nodeName": node,
                    "pool": {
                        "name": node,
                        "generation": generation,
                        "resourceSliceCount": len(bodies),
                    },
                    **body,
                },
            }
        )
    return out


def without(obj: Slice, features: Iterable[str]) -> Slice:
    """`obj` as an API server that does not serve `features` stores it: their fields gone."""
    features = set(features)
    out = copy.deepcopy(obj)
    spec = out.get("spec") or {}
    if PARTITIONABLE in features:
        spec.pop("sharedCounters", None)
    for device in spec.get("devices") or []:
        body = device.get("basic", device)
        if PARTITIONABLE in features:
            body.pop("consumesCounters", None)
        if CONSUMABLE_CAPACITY in features:
            body.pop("allowMultipleAllocations", None)
            for entry in (body.get("capacity") or {}).values():
                entry.pop("requestPolicy", None)
        if DEVICE_TAINTS in features:
            body.pop("taints", None)
    return out


def dropped_by_server(desired: Mapping[str, Slice], actual: Mapping[str, Slice]) -> set[str]:
    """The features whose fields the server dropped from slices we wrote: a slice it holds
    is ours, less exactly those fields. (A slice that differs in any other way was written
    by someone or something else, e.g. an older version of this driver.)"""
    # Smallest first: a server that drops one feature's fields is not blamed for two.
    candidates = [
        set(combo)
        for n in range(1, len(FEATURES) + 1)
        for combo in itertools.combinations(FEATURES, n)
    ]
    for name, wanted in desired.items():
        got = actual.get(name)
        if got is None or comparable(got) == comparable(wanted):
            continue
        for features in candidates:
            stripped = without(wanted, features)
            if comparable(stripped) != comparable(wanted) and comparable(got) == comparable(
                stripped
            ):
                return features
    return set()


def generation_of(obj: Mapping[str, Any]) -> int:
    """The pool generation a slice object carries (0 when unreadable)."""
    pool = (obj.get("spec") or {}).get("pool") or {}
    value = pool.get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- comparison ---------------------------------------------------------------------------
#
# The server returns what we wrote plus fields it owns (metadata) and minus what it
# considers empty (omitempty), and it rewrites quantities into canonical form
# ("1024Mi" comes back as "1Gi"). `comparable` reduces a slice to what the scheduler
# sees, so that a round trip through the server compares equal and steady state costs
# no writes, while any real edit (a device, an attribute, a taint, the pool) does not.

_SPEC_KEYS = ("driver", "nodeName", "pool", "devices")
_DEVICE_KEYS = ("name", "attributes", "capacity", "basic")


def _empty(value: Any) -> bool:
    return value is None or value is False or value == {} or value == [] or value == ""


def _extras(obj: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """Fields we never set; a non-empty one is someone else's edit (or a newer API field)."""
    skip = set(known)
    return {k: v for k, v in obj.items() if k not in skip and not _empty(v)}


def _quantity(value: Any) -> Decimal | str:
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, InvalidOperation, TypeError):
        return str(value)


def _comparable_capacity(capacity: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, entry in capacity.items():
        entry = entry if isinstance(entry, Mapping) else {"value": entry}
        out[name] = {"value": _quantity(entry.get("value")), **_extras(entry, ("value",))}
    return out


def _comparable_device(device: Mapping[str, Any]) -> dict[str, Any]:
    basic = device.get("basic")
    body = basic if isinstance(basic, Mapping) else device
    return {
        "attributes": {
            name: {k: v for k, v in (value or {}).items() if v is not None}
            for name, value in (body.get("attributes") or {}).items()
        },
        "capacity": _comparable_capacity(body.get("capacity") or {}),
        "extra": _extras(device, _DEVICE_KEYS),
        "basicExtra": _extras(basic, ("attributes", "capacity"))
        if isinstance(basic, Mapping)
        else {},
    }


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What of a slice object matters: its spec (normalized) and its owner references."""
    spec = obj.get("spec") or {}
    pool = spec.get("pool") or {}
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return {
        "driver": spec.get("driver"),
        "nodeName": spec.get("nodeName"),
        "pool": (pool.get("name"), pool.get("generation"), pool.get("resourceSliceCount")),
        # Keyed by name: the order of devices within a slice means nothing to the scheduler.
        "devices": {d.get("name"): _comparable_device(d) for d in spec.get("devices") or []},
        "extra": _extras(spec, _SPEC_KEYS),
        "owners": sorted(
            (o.get("apiVersion"), o.get("kind"), o.get("name"), o.get("uid")) for o in owners
        ),
    }


# --- `dra-cdi-driver devices` -------------------------------------------------------------

_REPORT_HEADER = """\
# dra-cdi-driver devices: what this node would publish. Nothing was read from or
# written to a cluster.
#   driver {driver}, node {node}, device source {source}, {count} device(s)
# resourceSlices are shown in the resource.k8s.io/v1 shape. When publishing, the
# ownerReferences uid is the Node's uid (a placeholder here) and the pool generation is
# one more than the highest generation already published for this pool.
"""
PLACEHOLDER_UID = "<uid of the Node, filled in when published>"


def report(
    devices: Sequence[Device],
    *,
    driver: str,
    node: str,
    source: str,
    counter_sets: Sequence[CounterSet] = (),
) -> str:
    """The YAML that `dra-cdi-driver devices` prints."""
    slices = build_slices(
        devices,
        driver=driver,
        node=node,
        generation=1,
        api_version="v1",
        node_uid=PLACEHOLDER_UID,
        counter_sets=counter_sets,
    )
    body: dict[str, Any] = {
        "devices": [
            {
                **device_json(d, "v1"),
                "containerEdits": d.edits.to_json(),
            }
            for d in sorted(devices, key=_natural_key)
        ],
    }
    if counter_sets:  # which devices consume each counter set
        body["counterSets"] = [
            {
                **counter_set_json(c),
                "consumedBy": [
                    d.name
                    for d in sorted(devices, key=_natural_key)
                    if any(use.counter_set == c.name for use in d.consumes)
                ],
            }
            for c in sorted(counter_sets, key=lambda c: c.name)
        ]
    body["resourceSlices"] = slices
    header = _REPORT_HEADER.format(driver=driver, node=node, source=source, count=len(devices))
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def render_devices_report(settings: Settings) -> str:
    """Discover this node's devices as the driver would and render `report` for them.

    Raises InventoryError when the source returns devices the API would reject, and
    SliceError when a capacity is not a quantity.
    """
    from dra_cdi_driver.devices import Inventory, create_source

    inventory = Inventory(create_source(settings))
    inventory.refresh()
    return report(
        inventory.devices(),
        driver=settings.driver_name,
        node=settings.node_name,
        source=settings.device_source,
        counter_sets=inventory.counter_sets(),
    )
