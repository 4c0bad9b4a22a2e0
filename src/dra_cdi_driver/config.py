"""Opaque device configuration: the `GpuConfig` type users put in claims and DeviceClasses.

    config:
    - opaque:
        driver: gpu.cdi.example.com
        parameters:
          apiVersion: gpu.cdi.example.com/v1alpha1
          kind: GpuConfig
          sharing: {strategy: TimeSlicing, timeSlice: Short}
          env: {MY_SETTING: "on"}

Validation is strict: an unknown field or a bad value is an error that names the
field, never silently ignored. For each allocated request the last matching
entry wins, the claim's entries after the DeviceClass's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dra_cdi_driver.limits import (
    MAX_ENV_ENTRIES,
    MAX_ENV_VALUE_BYTES,
    MAX_OPAQUE_BYTES,
    MAX_OPAQUE_DEPTH,
)

API_VERSION = "gpu.cdi.example.com/v1alpha1"
KIND = "GpuConfig"
SHARING_STRATEGIES = ("Exclusive", "TimeSlicing")
TIME_SLICES = ("Default", "Short", "Medium", "Long")
# Variables the driver sets itself; a config must not shadow them.
RESERVED_ENV_PREFIXES = ("GPU_DEVICE_", "DRA_")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,63}")


def _quoted(value: Any) -> str:
    """An untrusted value as an error message may show it: quoted, cut short."""
    text = repr(value)
    return text if len(text) <= 66 else text[:63] + "..."


def _key(key: Any) -> str:
    """An untrusted field name as an error message shows it: plain, else quoted."""
    return key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else _quoted(key)


class ConfigError(ValueError):
    """An opaque configuration entry is invalid; the message names the field."""


@dataclass(frozen=True)
class GpuConfig:
    sharing: str = "Exclusive"
    time_slice: str | None = None  # only with TimeSlicing
    env: Mapping[str, str] = field(default_factory=dict)


DEFAULT_CONFIG = GpuConfig()


@dataclass(frozen=True)
class ConfigEntry:
    """One `status.allocation.devices.config[]` entry meant for this driver."""

    index: int  # position in the claim's allocation, for error messages
    source: str  # "FromClass" or "FromClaim"
    requests: tuple[str, ...]  # empty: every request
    parameters: Any

    def applies_to(self, request: str) -> bool:
        """`request` may be "req/subreq"; an entry naming "req" covers its subrequests."""
        if not self.requests:
            return True
        parent = request.split("/", 1)[0]
        return request in self.requests or parent in self.requests

    def describe(self) -> str:
        scope = f"requests {list(self.requests)}" if self.requests else "all requests"
        return f"config[{self.index}] ({self.source}, {scope})"


def _reject_unknown(obj: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(f"{where}{_key(key)}: unknown field (allowed: {', '.join(allowed)})")


def _one_of(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {_quoted(value)} is not one of {', '.join(choices)}")
    return str(value)


def _check_size(parameters: Any) -> None:
    """Depth first (without recursion), then size: a hostile document is refused before
    anything walks or encodes it whole."""
    pending: list[tuple[Any, int]] = [(parameters, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_OPAQUE_DEPTH:
                raise ConfigError(f"parameters: nested deeper than {MAX_OPAQUE_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    size = len(json.dumps(parameters, separators=(",", ":")).encode())
    if size > MAX_OPAQUE_BYTES:
        raise ConfigError(f"parameters: {size} bytes of JSON, more than {MAX_OPAQUE_BYTES}")


def parse(parameters: Any) -> GpuConfig:
    """Validate one entry's `parameters` strictly and return the config it describes."""
    _check_size(parameters)
    if not isinstance(parameters, dict):
        raise ConfigError("parameters: must be an object")
    _reject_unknown(parameters, ("apiVersion", "kind", "sharing", "env"), "parameters.")
    if parameters.get("apiVersion") != API_VERSION:
        raise ConfigError(
            f"parameters.apiVersion: {_quoted(parameters.get('apiVersion'))} is not supported, "
            f"use {API_VERSION!r}"
        )
    if parameters.get("kind") != KIND:
        raise ConfigError(f"parameters.kind: {_quoted(parameters.get('kind'))} is not {KIND!r}")

    sharing, time_slice = "Exclusive", None
    if "sharing" in parameters:
        spec = parameters["sharing"]
        if not isinstance(spec, dict):
            raise ConfigError("parameters.sharing: must be an object")
        _reject_unknown(spec, ("strategy", "timeSlice"), "parameters.sharing.")
        sharing = _one_of(spec.get("strategy"), SHARING_STRATEGIES, "parameters.sharing.strategy")
        if "timeSlice" in spec:
            if sharing != "TimeSlicing":
                raise ConfigError(
                    "parameters.sharing.timeSlice: only allowed with strategy TimeSlicing"
                )
            time_slice = _one_of(spec["timeSlice"], TIME_SLICES, "parameters.sharing.timeSlice")
        elif sharing == "TimeSlicing":
            time_slice = "Default"

    env: dict[str, str] = {}
    if "env" in parameters:
        raw = parameters["env"]
        if not isinstance(raw, dict):
            raise ConfigError("parameters.env: must be a map of names to string values")
        if len(raw) > MAX_ENV_ENTRIES:
            raise ConfigError(f"parameters.env: {len(raw)} variables, more than {MAX_ENV_ENTRIES}")
        for name, value in raw.items():
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise ConfigError(
                    f"parameters.env.{_key(name)}: not a POSIX environment variable name "
                    "(letters, digits and '_', not starting with a digit)"
                )
            where = f"parameters.env.{name}"
            if name.startswith(RESERVED_ENV_PREFIXES):
                raise ConfigError(
                    f"{where}: names starting with {RESERVED_ENV_PREFIXES} are set by the driver"
                )
            if not isinstance(value, str):
                raise ConfigError(f"{where}: value must be a string (quote it in YAML)")
            try:
                encoded = value.encode()
            except UnicodeEncodeError:
                raise ConfigError(f"{where}: value is not UTF-8 text") from None
            if len(encoded) > MAX_ENV_VALUE_BYTES or "\0" in value:
                raise ConfigError(
                    f"{where}: value must be at most {MAX_ENV_VALUE_BYTES} bytes, without NUL"
                )
            env[name] = value
    return GpuConfig(sharing=sharing, time_slice=time_slice, env=env)


def resolve(entries: Sequence[ConfigEntry], requests: Sequence[str]) -> dict[str, GpuConfig]:
    """The effective config of each request: the last matching entry, class entries first.

    Every entry is validated, also one that no request uses: a typo should not
    go unnoticed until it matters.
    """
    ordered = sorted(entries, key=lambda e: (e.source != "FromClass", e.index))
    parsed: list[tuple[ConfigEntry, GpuConfig]] = []
    for entry in ordered:
        try:
            parsed.append((entry, parse(entry.parameters)))
        except ConfigError as err:
            raise ConfigError(f"{entry.describe()}: {err}") from None
    effective: dict[str, GpuConfig] = {}
    for request in requests:
        effective[request] = DEFAULT_CONFIG
        for entry, config in parsed:
            if entry.applies_to(request):
                effective[request] = config
    return effective
