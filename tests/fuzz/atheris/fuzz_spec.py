"""Fuzz the readers of CDI spec files the driver did not write: `devices.nvidia.toolkit.find_spec`
(the toolkit's nvidia.yaml/nvidia.json, read at start-up and on every rediscovery in
--nvidia-cdi-mode=toolkit) and the doctor's `cdi_specs.spec_kind`.

The input bytes are written both as nvidia.json and as nvidia.yaml in scratch dirs, and each
file is read by both. Allowed outcomes: find_spec returns a ToolkitSpec of string device
names or raises InventoryError; spec_kind returns a string or None, or raises ValueError or
HostFileError (what the doctor reports as "skipped"). Any other exception is a finding.
"""

from __future__ import annotations

import json

import atheris

from tests.fuzz.atheris.common import run, scratch_dir

with atheris.instrument_imports(include=["dra_cdi_driver", "yaml"]):
    from dra_cdi_driver.devices.inventory import InventoryError
    from dra_cdi_driver.devices.nvidia.toolkit import find_spec
    from dra_cdi_driver.doctor.cdi_specs import spec_kind
    from dra_cdi_driver.doctor.hostfiles import HostFileError

DIR = scratch_dir("spec")
FILES = [DIR / "json" / "nvidia.json", DIR / "yaml" / "nvidia.yaml"]
for file in FILES:
    file.parent.mkdir()

DEVICES = [
    {"name": n, "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}} for n in ("0", "all")
]
SPEC = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": DEVICES}
SEEDS = [
    json.dumps(SPEC).encode(),
    json.dumps({**SPEC, "devices": [{"name": "GPU-4d3f"}, {"name": 0}, {}, "x"]}).encode(),
    json.dumps({**SPEC, "kind": "gpu.cdi.example.com/gpu"}).encode(),
    json.dumps({**SPEC, "devices": {"name": "0"}}).encode(),  # a map, not a list
    b'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: "0:1"\n'
    b"  containerEdits:\n    deviceNodes: [{path: /dev/nvidia0}]\n",
    b"kind: nvidia.com/gpu\ndevices: &d [{name: MIG-1}, *d]\nextra: !!binary aGk=\n",
    b"kind: [nvidia.com/gpu]\n",
    b"\xff\xfe{",
]


def test_one_input(data: bytes) -> None:
    for file in FILES:
        file.write_bytes(data)
        try:
            spec = find_spec([file.parent])
            assert all(isinstance(n, str) for n in spec.device_names)
        except InventoryError:
            pass
        try:
            kind = spec_kind(file)
            assert kind is None or isinstance(kind, str)
        except (ValueError, HostFileError):
            pass


if __name__ == "__main__":
    run("spec", test_one_input, SEEDS)
