from __future__ import annotations

import json
from pathlib import Path

import pytest

from dra_cdi_driver.cdi import CdiDevice, ContainerEdits, DeviceNode, Mount, Spec, SpecStore, env

ENV_ONLY = ContainerEdits(env=("A=1",))
UID = "7f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def _spec(*devices: CdiDevice, kind: str = "gpu.example.com/gpu") -> Spec:
    return Spec(kind=kind, devices=devices)


@pytest.mark.parametrize(
    ("edits", "name", "kind", "version"),
    [
        (ENV_ONLY, "gpu-0-abc", "v.example.com/gpu", "0.3.0"),
        (ContainerEdits(device_nodes=(DeviceNode(path="/dev/x"),)), "gpu-0", "v.com/gpu", "0.3.0"),
        (ContainerEdits(mounts=(Mount("/a", "/b", type="bind"),)), "gpu-0", "v.com/gpu", "0.4.0"),
        (
            ContainerEdits(device_nodes=(DeviceNode("/dev/x", host_path="/dev/y"),)),
            "g",
            "v.com/gpu",
            "0.5.0",
        ),
        (ENV_ONLY, "0abc-gpu", "v.com/gpu", "0.5.0"),  # a name starting with a digit
        (ENV_ONLY, "gpu-0", "v.com/gpu.x", "0.6.0"),  # a dot in the class
    ],
)
def test_version_is_the_lowest_that_knows_every_field(
    edits: ContainerEdits, name: str, kind: str, version: str
) -> None:
    assert _spec(CdiDevice(name, edits), kind=kind).version() == version


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (_spec(kind="1bad/gpu"), "invalid CDI vendor"),
        (_spec(CdiDevice("gpu-0", ContainerEdits())), "no container edits"),
        (_spec(CdiDevice("-gpu", ENV_ONLY)), "invalid CDI device name"),
        (_spec(CdiDevice("a", ENV_ONLY), CdiDevice("a", ENV_ONLY)), "defined twice"),
        (_spec(), "at least one device"),
    ],
)
def test_validate_rejects_what_a_runtime_would(spec: Spec, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        spec.validate()


def test_env_rejects_bad_names() -> None:
    assert env("GPU_0", "x=y") == "GPU_0=x=y"
    with pytest.raises(ValueError):
        env("1BAD", "x")


def test_store_writes_atomically_and_lists_claims(tmp_path: Path) -> None:
    store = SpecStore(tmp_path, "gpu.example.com/gpu")
    spec = _spec(CdiDevice(f"gpu-0-{UID}", ENV_ONLY)).to_json()
    path = store.write(UID, spec)
    assert path.name == f"gpu.example.com_gpu-{UID}.json"
    assert json.loads(path.read_text()) == spec
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    (tmp_path / "other-vendor.json").write_text("{}")
    (tmp_path / "gpu.example.com_gpu-not-a-uid.json").write_text("{}")  # not ours: ignored
    assert list(store.claim_uids()) == [UID]
    assert store.remove(UID) and not store.remove(UID)


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = SpecStore(tmp_path / "missing", "gpu.example.com/gpu")
    with pytest.raises(FileNotFoundError):
        store.write(UID, {"x": 1})
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("edits", "problem"),
    [
        (ContainerEdits(env=("A=" + "x" * 8200,)), "must be at most 8192 bytes"),
        (ContainerEdits(env=("A=x\0y",)), "without NUL"),
        (ContainerEdits(env=("NOEQUALS",)), "invalid environment variable name"),
        (ContainerEdits(env=("A\n=1",)), "invalid environment variable name"),
        (ContainerEdits(mounts=(Mount("/h\0", "/c"),)), "without NUL"),
        (ContainerEdits(env=tuple(f"V{i}={'x' * 8000}" for i in range(140))), "more than 1048576"),
    ],
)
def test_validate_refuses_what_a_runtime_should_never_be_handed(
    edits: ContainerEdits, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        _spec(CdiDevice("gpu-0", edits)).validate()


def test_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid CDI device name"):
        _spec(CdiDevice("gpu-0\n", ENV_ONLY)).validate()
    with pytest.raises(ValueError, match="invalid CDI kind"):
        SpecStore(Path("/tmp"), "gpu.example.com/gpu\n")
