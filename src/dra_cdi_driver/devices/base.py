"""What a device is, to the scheduler (attributes, capacity) and to a container (CDI edits).

A device source discovers the devices of this node. Everything else — the
ResourceSlices, the CDI specs, the checks on allocation results — works from
the `Device` objects it returns, so a new kind of device is one new module.
"""

from __future__ import annotations

import re
import threading
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
MAX_COUNTER_USES = 2  # consumesCounters entries per device
MAX_COUNTERS_PER_SET = 32


@dataclass(frozen=True)
class CounterSet:
    """What a piece of hardware has to give out (DRAPartitionableDevices): e.g. a GPU's
    memory and compute slices, which its whole form and its partitions consume."""

    name: str  # a DNS label, unique in the pool
    counters: Mapping[str, str]  # counter name (a DNS label) -> quantity


@dataclass(frozen=True)
class CounterUse:
    """How much of one counter set a device takes while it is allocated."""

    counter_set: str
    counters: Mapping[str, str]


@dataclass(frozen=True)
class RequestPolicy:
    """How much of a shareable device's capacity one allocation takes (DRAConsumableCapacity):
    `default` when the claim does not say, else what it asks for, rounded up to
    `min + n * step` and at most `max`."""

    default: str
    min: str
    max: str | None = None
    step: str | None = None


@dataclass(frozen=True)
class Taint:
    """A taint on a published device (DRADeviceTaints): the scheduler allocates a tainted
    device only to claims that tolerate it; NoExecute also evicts the pods using it."""

    key: str  # a label key, e.g. <driver>/unhealthy
    value: str  # a label value: at most 63 characters
    effect: str  # NoSchedule | NoExecute
    time_added: float  # time.time()


@dataclass(frozen=True)
class Device:
    name: str
    attributes: Mapping[str, AttributeValue]
    capacity: Mapping[str, str]  # Kubernetes quantities, e.g. {"memory": "80Gi"}
    edits: ContainerEdits  # what a container that is given this device sees
    labels: Mapping[str, str] = field(default_factory=dict)  # source-private, never published
    # Partitionable devices: the counter sets this device consumes (at most 2).
    consumes: tuple[CounterUse, ...] = ()
    # Without shared counters this device must not be published (a partition that overlaps
    # its GPU, or a GPU whose MIG devices are listed): the scheduler could hand out both.
    needs_counters: bool = False
    # Consumable capacity: several claims may hold this device at once, each taking a part
    # of each capacity in `request_policies`.
    shareable: bool = False
    request_policies: Mapping[str, RequestPolicy] = field(default_factory=dict)
    # Set by the publisher from the device's health, never by a source.
    taints: tuple[Taint, ...] = ()

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
        found += self._sharing_problems()
        return found

    def _sharing_problems(self) -> list[str]:
        found: list[str] = []
        if len(self.consumes) > MAX_COUNTER_USES:
            found.append(f"device {self.name}: consumes more than {MAX_COUNTER_USES} counter sets")
        for use in self.consumes:
            for counter, quantity in use.counters.items():
                if not _DNS_LABEL.fullmatch(counter) or not _is_quantity(quantity):
                    found.append(
                        f"device {self.name}: counter {use.counter_set}/{counter}={quantity!r} "
                        "is not a DNS label with a quantity"
                    )
        if self.request_policies and not self.shareable:
            found.append(f"device {self.name}: request policies need a shareable device")
        for name, policy in self.request_policies.items():
            if name not in self.capacity:
                found.append(f"device {self.name}: request policy for unknown capacity {name}")
            values = [policy.default, policy.min, policy.max, policy.step]
            if not all(_is_quantity(v) for v in values if v is not None):
                found.append(f"device {self.name}: request policy of {name} is not quantities")
        return found


def _is_quantity(value: str) -> bool:
    try:
        parse_quantity(value)
    except (ValueError, ArithmeticError):
        return False
    return True


def counter_problems(devices: Sequence[Device], counter_sets: Sequence[CounterSet]) -> list[str]:
    """Counter sets the API would reject, and devices consuming counters that do not exist."""
    found: list[str] = []
    known = {c.name: c for c in counter_sets}
    if len(known) != len(counter_sets):
        found.append("a counter set name is used twice")
    for cs in counter_sets:
        if len(cs.name) > MAX_DEVICE_NAME or not _DNS_LABEL.fullmatch(cs.name):
            found.append(f"counter set name {cs.name!r} is not a DNS label")
        if len(cs.counters) > MAX_COUNTERS_PER_SET:
            found.append(f"counter set {cs.name}: more than {MAX_COUNTERS_PER_SET} counters")
        for counter, quantity in cs.counters.items():
            if not _DNS_LABEL.fullmatch(counter) or not _is_quantity(quantity):
                found.append(f"counter set {cs.name}: {counter}={quantity!r} is not valid")
    for device in devices:
        for use in device.consumes:
            counters = known.get(use.counter_set)
            if counters is None:
                found.append(f"device {device.name}: no counter set {use.counter_set}")
            elif not use.counters.keys() <= counters.counters.keys():
                found.append(
                    f"device {device.name}: counters {sorted(use.counters)} are not all in "
                    f"counter set {use.counter_set}"
                )
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

    def allocation_edits(
        self, device: Device, consumed: Mapping[str, str], share_id: str | None
    ) -> ContainerEdits:
        """Edits for one allocation of `device`: of a shareable device, the share it is
        (`share_id`) and the capacity the claim took (`consumed`). Nothing by default."""
        return ContainerEdits()

    def counter_sets(self) -> list[CounterSet]:
        """The counter sets of the devices the last `discover` returned (none by default)."""
        return []

    def unhealthy(self, devices: Sequence[Device]) -> dict[str, str]:
        """The devices of `devices` that do not work now, by name, each with a short reason
        (asked about once a second). None by default: a device that is listed works."""
        return {}

    def watch_health(self, stop: threading.Event) -> None:
        """Start whatever background work `unhealthy` needs (e.g. an NVML event loop), until
        `stop` is set; returns at once. Nothing by default."""
        return None

    def extra_cdi_ids(self, device: Device) -> tuple[str, ...]:
        """Fully qualified CDI ids of other specs (e.g. a vendor's own) that a container given
        `device` needs besides this driver's per-claim id; returned after it."""
        return ()
