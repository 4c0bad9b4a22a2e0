"""What a device is, to the scheduler (attributes, capacity) and to a container (CDI edits).

A device source discovers the devices of this node. Everything else — the
ResourceSlices, the CDI specs, the checks on allocation results — works from
the `Device` objects it returns, so a new kind of device is one new module.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from kubernetes.utils import parse_quantity

from dra_cdi_driver.cdi import ContainerEdits, env
from dra_cdi_driver.config import GpuConfig


@dataclass(frozen=True)
class Version:
    """A semantic version attribute (the API's `version` type, not a plain string)."""

    value: str


AttributeValue = bool | int | str | Version

# Limits of resource.k8s.io, checked here so that a bad name fails at start-up
# with a clear message instead of as a rejected ResourceSlice.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_DEVICE_NAME = 63
MAX_ATTRIBUTE_ID = 32
MAX_DOMAIN = 63
MAX_STRING_VALUE = 64
MAX_ATTRIBUTES_AND_CAPACITIES = 32


@dataclass(frozen=True)
class Device:
    name: str
    attributes: Mapping[str, AttributeValue]
    capacity: Mapping[str, str]  # Kubernetes quantities, e.g. {"memory": "80Gi"}
    edits: ContainerEdits  # what a container that is given this device sees
    labels: Mapping[str, str] = field(default_factory=dict)  # source-private, never published

    def problems(self) -> list[str]:
        """Everything about this device that the API server would reject."""
        found: list[str] = []
        if len(self.name) > MAX_DEVICE_NAME or not _DNS_LABEL.fullmatch(self.name):
            found.append(
                f"device name {self.name!r} is not a DNS label "
                "(lowercase letters, digits and '-', at most 63)"
            )
        for key in (*self.attributes, *self.capacity):
            problem = qualified_name_problem(key)
            if problem:
                found.append(f"device {self.name}: {problem}")
        if len(self.attributes) + len(self.capacity) > MAX_ATTRIBUTES_AND_CAPACITIES:
            found.append(
                f"device {self.name}: more than {MAX_ATTRIBUTES_AND_CAPACITIES} "
                "attributes and capacities"
            )
        for key, quantity in self.capacity.items():
            try:
                parse_quantity(quantity)
            except (ValueError, ArithmeticError):
                found.append(
                    f"device {self.name}: capacity {key}={quantity!r} is not a Kubernetes quantity"
                )
        for key, value in self.attributes.items():
            if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
                found.append(
                    f"device {self.name}: attribute {key} is longer than "
                    f"{MAX_STRING_VALUE} characters"
                )
            if isinstance(value, Version) and (
                len(value.value) > MAX_STRING_VALUE or not _SEMVER.fullmatch(value.value)
            ):
                found.append(
                    f"device {self.name}: attribute {key}={value.value!r} is not a semantic version"
                )
        if not self.edits:
            found.append(f"device {self.name}: no container edits (CDI needs at least one)")
        return found


def qualified_name_problem(name: str) -> str | None:
    """Why `name` is not a valid attribute/capacity name (`[domain/]identifier`), or None."""
    domain, slash, identifier = name.rpartition("/")
    if slash and (len(domain) > MAX_DOMAIN or not _DNS_SUBDOMAIN.fullmatch(domain)):
        return f"attribute name {name!r}: domain {domain!r} is not a DNS subdomain"
    if len(identifier) > MAX_ATTRIBUTE_ID or not _C_IDENTIFIER.fullmatch(identifier):
        return (
            f"attribute name {name!r}: {identifier!r} is not a C identifier "
            f"of at most {MAX_ATTRIBUTE_ID} characters"
        )
    return None


class DeviceSource(ABC):
    """Discovers this node's devices and says how a container gets them."""

    name: ClassVar[str]  # the --device-source value
    cdi_class: ClassVar[str] = "gpu"  # the class half of the CDI kind

    @abstractmethod
    def discover(self) -> list[Device]:
        """The devices this node has now."""

    def install_host_files(self) -> None:
        """Write the host files that this source's CDI edits point at (run once at start,
        never by `dra-cdi-driver devices`). Raises InventoryError when it cannot."""
        return None  # most sources point only at files the host already has

    def claim_edits(self, devices: Sequence[Device]) -> ContainerEdits:
        """Edits a container gets once per claim (control nodes, libraries, ...)."""
        return ContainerEdits()

    def config_edits(self, device: Device, config: GpuConfig) -> ContainerEdits:
        """Edits that the claim's opaque configuration adds for one device."""
        return ContainerEdits(env=tuple(env(k, v) for k, v in sorted(config.env.items())))

    def extra_cdi_ids(self, device: Device) -> tuple[str, ...]:
        """Fully qualified CDI ids of other specs (e.g. a vendor's own) that a container given
        `device` needs besides this driver's per-claim id; returned after it."""
        return ()
