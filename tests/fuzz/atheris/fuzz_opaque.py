"""Fuzz `config.resolve`/`config.parse`: the opaque `parameters` of a config entry (GpuConfig)
to the config of each request, and that config into a CDI spec.

Input bytes that are not JSON are skipped (the parameters come out of a decoded claim).
Allowed outcomes: a ConfigError, or a GpuConfig within the limits of limits.py (parameters
at most MAX_OPAQUE_DEPTH deep and MAX_OPAQUE_BYTES long; at most MAX_ENV_ENTRIES variables,
none reserved, each value at most MAX_ENV_VALUE_BYTES without NUL) whose env makes a CDI
spec that `Spec.validate` accepts. Any other exception, or a broken limit, is a finding.
"""

from __future__ import annotations

import json
from typing import Any

import atheris

from tests.fuzz.atheris.common import dumps, json_input, run

with atheris.instrument_imports(include=["dra_cdi_driver"]):
    from dra_cdi_driver import cdi, limits
    from dra_cdi_driver.config import (
        API_VERSION,
        RESERVED_ENV_PREFIXES,
        ConfigEntry,
        ConfigError,
        resolve,
    )


def depth(value: Any) -> int:
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            pending.extend(
                (c, level + 1) for c in (node.values() if isinstance(node, dict) else node)
            )
    return deepest


def params(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "GpuConfig", **fields}


SEEDS: list[Any] = [
    params(sharing={"strategy": "TimeSlicing", "timeSlice": "Long"}, env={"A": "1", "B_2": ""}),
    params(sharing={"strategy": "Exclusive"}),
    params(env={"GPU_DEVICE_0": "x", "A=B": "y", "N": 1}),
    params(sharing={"strategy": "TimeSlicing", "mode": 1}, extra=[[["deep"]]]),
    {"apiVersion": "v2", "kind": "Other"},
    [],
    None,
]


def test_one_input(data: bytes) -> None:
    ok, parameters = json_input(data)
    if not ok:
        return
    entry = ConfigEntry(index=0, source="FromClaim", requests=(), parameters=parameters)
    try:
        config = resolve([entry], ["gpu"])["gpu"]
    except ConfigError:
        return
    assert depth(parameters) <= limits.MAX_OPAQUE_DEPTH
    assert len(json.dumps(parameters, separators=(",", ":")).encode()) <= limits.MAX_OPAQUE_BYTES
    assert len(config.env) <= limits.MAX_ENV_ENTRIES
    for name, value in config.env.items():
        assert not name.startswith(RESERVED_ENV_PREFIXES), name
        assert len(value.encode()) <= limits.MAX_ENV_VALUE_BYTES and "\0" not in value
    env = tuple(cdi.env(k, v) for k, v in sorted(config.env.items()))
    node = cdi.ContainerEdits(device_nodes=(cdi.DeviceNode("/dev/null"),))
    edits = node + cdi.ContainerEdits(env=env)
    cdi.Spec("gpu.cdi.example.com/gpu", (cdi.CdiDevice("gpu-0", edits),)).validate()


if __name__ == "__main__":
    run("opaque", test_one_input, [dumps(s) for s in SEEDS])
