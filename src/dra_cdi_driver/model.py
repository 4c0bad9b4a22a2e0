"""The driver's own vocabulary, shared by the kubelet adapters, the core and the checkpoint."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClaimRef:
    """A ResourceClaim as the kubelet names it."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{_shown(self.namespace)}/{_shown(self.name)} (uid {_shown(self.uid)})"


# What a claim reference may look like to be printed as it is. Anything else (a request
# from someone other than the kubelet) is quoted and cut short, so that no newline,
# control character or megabyte of text reaches a log line or an error message.
_PRINTABLE = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
_SHOWN_MAX = 64


def _shown(value: str) -> str:
    if _PRINTABLE.fullmatch(value):
        return value
    return repr(value[:_SHOWN_MAX]) + ("..." if len(value) > _SHOWN_MAX else "")


class ClaimError(Exception):
    """This claim cannot be (un)prepared. The message reaches the user through the kubelet,
    so it names the claim, the device where there is one, and what to do."""

    def __init__(self, claim: ClaimRef, problem: str, *, timed_out: bool = False) -> None:
        super().__init__(f"claim {claim}: {problem}")
        self.claim = claim
        self.problem = problem
        self.timed_out = timed_out  # the call's deadline came first


@dataclass(frozen=True)
class PreparedDevice:
    """One allocated device of a prepared claim, as the kubelet wants it back."""

    request_names: tuple[str, ...]
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...]
    share_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "requestNames": list(self.request_names),
            "pool": self.pool,
            "device": self.device,
            "cdiDeviceIds": list(self.cdi_device_ids),
            "shareId": self.share_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparedDevice:
        share_id = data.get("shareId")
        return cls(
            request_names=_strings(data["requestNames"], "requestNames"),
            pool=_string(data["pool"], "pool"),
            device=_string(data["device"], "device"),
            cdi_device_ids=_strings(data["cdiDeviceIds"], "cdiDeviceIds"),
            share_id=None if share_id is None else _string(share_id, "shareId"),
        )


@dataclass(frozen=True)
class PreparedClaim:
    """What Prepare answered for a claim, and the CDI spec it wrote (kept to rewrite it)."""

    claim: ClaimRef
    devices: tuple[PreparedDevice, ...]
    cdi_spec: dict[str, Any] | None  # None when no device of this claim is ours

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.claim.namespace,
            "name": self.claim.name,
            "uid": self.claim.uid,
            "devices": [d.to_json() for d in self.devices],
            "cdiSpec": self.cdi_spec,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparedClaim:
        """Read back what to_json wrote; a value of the wrong type is a ValueError (the
        kubelet is answered from these values, and the spec is rewritten from them)."""
        devices = data["devices"]
        cdi_spec = data.get("cdiSpec")
        if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
            raise ValueError("devices: not a list of objects")
        if cdi_spec is not None and not isinstance(cdi_spec, dict):
            raise ValueError("cdiSpec: not an object")
        return cls(
            claim=ClaimRef(
                namespace=_string(data["namespace"], "namespace"),
                name=_string(data["name"], "name"),
                uid=_string(data["uid"], "uid"),
            ),
            devices=tuple(PreparedDevice.from_json(d) for d in devices),
            cdi_spec=cdi_spec,
        )


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: not a string")
    if not _is_text(value):
        raise ValueError(f"{field}: not UTF-8 text")
    return value


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _is_text(v) for v in value):
        raise ValueError(f"{field}: not a list of strings")
    return tuple(value)


def _is_text(value: str) -> bool:
    """Whether `value` can be encoded as UTF-8 (JSON can carry lone surrogates; protobuf
    and the kubelet cannot)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
