"""Container Device Interface (CDI) specs: the model, its validation, and the spec files.

One transient spec is written per prepared claim. Its devices are named
`<device>-<claim uid>` so that two claims never define the same CDI device
(runtimes drop both specs when two files in a directory collide).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dra_cdi_driver import fsutil
from dra_cdi_driver.limits import MAX_SPEC_BYTES, MAX_SPEC_STRING_BYTES
from dra_cdi_driver.validation import is_uid

_VENDOR_OR_CLASS = re.compile(r"[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DeviceNode:
    path: str  # inside the container
    host_path: str = ""  # only when it differs from `path` (needs cdiVersion 0.5.0)
    type: str = ""  # "c" or "b"; the runtime stats the host node when empty
    permissions: str = ""  # e.g. "rw"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.host_path:
            out["hostPath"] = self.host_path
        if self.type:
            out["type"] = self.type
        if self.permissions:
            out["permissions"] = self.permissions
        return out


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    options: tuple[str, ...] = ("ro", "nosuid", "nodev", "bind")
    type: str = ""  # needs cdiVersion 0.4.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPath": self.host_path, "containerPath": self.container_path}
        if self.type:
            out["type"] = self.type
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Hook:
    hook_name: str  # OCI hook point, e.g. "createContainer"
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hookName": self.hook_name, "path": self.path}
        if self.args:
            out["args"] = list(self.args)
        if self.env:
            out["env"] = list(self.env)
        return out


@dataclass(frozen=True)
class ContainerEdits:
    env: tuple[str, ...] = ()  # "NAME=value"
    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    hooks: tuple[Hook, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.env or self.device_nodes or self.mounts or self.hooks)

    def __add__(self, other: ContainerEdits) -> ContainerEdits:
        return ContainerEdits(
            env=self.env + other.env,
            device_nodes=self.device_nodes + other.device_nodes,
            mounts=self.mounts + other.mounts,
            hooks=self.hooks + other.hooks,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.env:
            out["env"] = list(self.env)
        if self.device_nodes:
            out["deviceNodes"] = [n.to_json() for n in self.device_nodes]
        if self.mounts:
            out["mounts"] = [m.to_json() for m in self.mounts]
        if self.hooks:
            out["hooks"] = [h.to_json() for h in self.hooks]
        return out


def env(name: str, value: str) -> str:
    """One CDI env entry; refuses names a shell or runtime would mangle."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"invalid environment variable name {name!r}")
    return f"{name}={value}"


@dataclass(frozen=True)
class CdiDevice:
    name: str
    edits: ContainerEdits

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "containerEdits": self.edits.to_json()}


@dataclass(frozen=True)
class Spec:
    kind: str  # "vendor/class"
    devices: tuple[CdiDevice, ...]
    edits: ContainerEdits = field(default_factory=ContainerEdits)

    def qualified_name(self, device: str) -> str:
        return f"{self.kind}={device}"

    def version(self) -> str:
        """The lowest cdiVersion that understands every field this spec uses."""
        all_edits = [self.edits, *(d.edits for d in self.devices)]
        if "." in self.kind.split("/", 1)[1]:
            return "0.6.0"
        if any(n.host_path for e in all_edits for n in e.device_nodes) or any(
            d.name[0].isdigit() for d in self.devices
        ):
            return "0.5.0"
        if any(m.type for e in all_edits for m in e.mounts):
            return "0.4.0"
        return "0.3.0"

    def validate(self) -> None:
        """Raise ValueError for anything a runtime would reject."""
        vendor, _, cdi_class = self.kind.partition("/")
        for label, value in (("vendor", vendor), ("class", cdi_class)):
            if not _VENDOR_OR_CLASS.fullmatch(value):
                raise ValueError(f"invalid CDI {label} {value!r} in kind {self.kind!r}")
        if not self.devices:
            raise ValueError("a CDI spec needs at least one device")
        seen: set[str] = set()
        for device in self.devices:
            if not _DEVICE_NAME.fullmatch(device.name):
                raise ValueError(f"invalid CDI device name {device.name!r}")
            if device.name in seen:
                raise ValueError(f"CDI device {device.name!r} is defined twice")
            if not device.edits:
                raise ValueError(f"CDI device {device.name!r} has no container edits")
            seen.add(device.name)
        encoded = self.to_json()
        for text in _strings(encoded):
            if len(text.encode()) > MAX_SPEC_STRING_BYTES or "\0" in text:
                raise ValueError(
                    f"a value of {len(text.encode())} bytes ({text[:40]!r}...): spec values "
                    f"must be at most {MAX_SPEC_STRING_BYTES} bytes, without NUL"
                )
        for entry in self.edits.env + tuple(e for d in self.devices for e in d.edits.env):
            name, equals, _ = entry.partition("=")
            if not equals or not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid environment variable name in {entry[:80]!r}")
        size = len(json.dumps(encoded).encode())
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"the spec is {size} bytes, more than {MAX_SPEC_BYTES}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cdiVersion": self.version(),
            "kind": self.kind,
            "devices": [d.to_json() for d in self.devices],
        }
        if self.edits:
            out["containerEdits"] = self.edits.to_json()
        return out


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON document (specs are shallow: a short recursion)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def validate_kind(kind: str) -> None:
    vendor, slash, cdi_class = kind.partition("/")
    if (
        not slash
        or not _VENDOR_OR_CLASS.fullmatch(vendor)
        or not _VENDOR_OR_CLASS.fullmatch(cdi_class)
    ):
        raise ValueError(
            f"invalid CDI kind {kind!r}: want vendor/class, each starting with a letter and "
            "made of letters, digits, '_', '-' and '.'"
        )


class SpecStore:
    """The per-claim spec files of one CDI kind in one directory (the CDI root)."""

    def __init__(self, root: Path, kind: str) -> None:
        validate_kind(kind)
        self.dir = fsutil.RootDir(root)
        self.kind = kind
        # The CDI convention for generated files: <vendor>_<class>-<unique>.json
        self._prefix = kind.replace("/", "_") + "-"

    @property
    def root(self) -> Path:
        return self.dir.path

    def _name(self, claim_uid: str) -> str:
        return f"{self._prefix}{claim_uid}.json"

    def path_for(self, claim_uid: str) -> Path:
        return self.root / self._name(claim_uid)

    def write(self, claim_uid: str, spec: dict[str, Any]) -> Path:
        """Atomically write the spec JSON (as returned by Spec.to_json) for a claim."""
        data = json.dumps(spec, indent=2, sort_keys=True).encode() + b"\n"
        return self.dir.write(self._name(claim_uid), data, mode=0o644)

    def remove(self, claim_uid: str) -> bool:
        return self.dir.remove(self._name(claim_uid))

    def exists(self, claim_uid: str) -> bool:
        return self.dir.exists(self._name(claim_uid))

    def claim_uids(self) -> Iterator[str]:
        """UIDs of the claims that have a spec file here (for garbage collection).

        A file with our prefix whose rest is not a claim uid was not written by us:
        it is left alone.
        """
        for name in self.dir.names(self._prefix, ".json"):
            uid = name[len(self._prefix) : -len(".json")]
            if is_uid(uid):
                yield uid
