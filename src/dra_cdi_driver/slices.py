"""ResourceSlices for this node's pool: pure functions from devices to API objects.

The publisher (publisher.py) decides *when* to write; this module decides *what*:
the slice objects for a generation of the pool, in the shape of each API version,
and the comparable content of a slice that tells whether the server's copy drifted.
Nothing here talks to a cluster.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from kubernetes.utils import parse_quantity

from dra_cdi_driver.devices.base import AttributeValue, Device, Version
from dra_cdi_driver.kube import RESOURCE_GROUP, RESOURCE_VERSIONS
from dra_cdi_driver.settings import Settings

MAX_DEVICES_PER_SLICE = 128  # the API's limit per ResourceSlice
MAX_NAME = 253  # a ResourceSlice name is a DNS subdomain
KIND = "ResourceSlice"

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


def device_json(device: Device, api_version: str) -> dict[str, Any]:
    """One entry of `spec.devices` in the shape of `api_version`."""
    for name, value in device.capacity.items():
        _check_quantity(device, name, value)
    body = {
        "attributes": {k: attribute_json(v) for k, v in sorted(device.attributes.items())},
        "capacity": {k: {"value": v} for k, v in sorted(device.capacity.items())},
    }
    if api_version == "v1beta1":  # v1beta1 nests them in the `basic` union member
        return {"name": device.name, "basic": body}
    return {"name": device.name, **body}


def _natural_key(device: Device) -> tuple[tuple[int, int | str], ...]:
    # gpu-2 before gpu-10, whatever order the source discovered them in.
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", device.name)
        if part
    )


def chunk(devices: Sequence[Device]) -> list[list[Device]]:
    """The pool's devices, sorted, in slices of at most 128; always at least one slice,
    so that a node without devices still says so (an empty, complete pool)."""
    ordered = sorted(devices, key=_natural_key)
    chunks = [
        ordered[i : i + MAX_DEVICES_PER_SLICE]
        for i in range(0, len(ordered), MAX_DEVICES_PER_SLICE)
    ]
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
) -> list[Slice]:
    """Every ResourceSlice of one generation of this node's pool (pool name = node name)."""
    if api_version not in RESOURCE_VERSIONS:
        raise ValueError(f"unknown {RESOURCE_GROUP} version {api_version!r}")
    chunks = chunk(devices)
    out: list[Slice] = []
    for index, part in enumerate(chunks):
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
                        "resourceSliceCount": len(chunks),
                    },
                    "devices": [device_json(d, api_version) for d in part],
                },
            }
        )
    return out


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


def report(devices: Sequence[Device], *, driver: str, node: str, source: str) -> str:
    """The YAML that `dra-cdi-driver devices` prints."""
    slices = build_slices(
        devices,
        driver=driver,
        node=node,
        generation=1,
        api_version="v1",
        node_uid=PLACEHOLDER_UID,
    )
    body = {
        "devices": [
            {
                **device_json(d, "v1"),
                "containerEdits": d.edits.to_json(),
            }
            for d in sorted(devices, key=_natural_key)
        ],
        "resourceSlices": slices,
    }
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
    )
