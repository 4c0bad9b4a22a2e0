"""What a container allocated NVIDIA GPUs gets: the CDI spec the driver writes for its claim.

The spec is built by the real Driver (driver.py) from a fake NVML and a fake driver root,
so these tests see exactly what a container runtime would read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.cdi import SpecStore
from dra_cdi_driver.checkpoint import Checkpoint
from dra_cdi_driver.devices import Inventory, InventoryError
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.devices.nvidia.source import NvidiaSource
from dra_cdi_driver.driver import Driver, PrepareOutcome
from dra_cdi_driver.model import ClaimError, ClaimRef, PreparedClaim
from tests.fakeapi import claim_object, result
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import FakeNvml, gpu_uuid, h100_node, mig_uuid

DRIVER = "gpu.cdi.example.com"
LIB = "/usr/local/nvidia/lib64"
HOST_LIB = "/usr/lib/x86_64-linux-gnu"
VERSION = "550.54.15"


class Claims:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        return self.objects[claim.uid]


def prepare_outcome(
    source: NvidiaSource, tmp_path: Path, *devices: str, config: Any = None
) -> PrepareOutcome:
    inventory = Inventory(source)
    inventory.refresh()
    ref = ClaimRef("default", "c", "00000000-0000-4000-8000-000000000001")
    claim = claim_object(
        "c", "00000000-0000-4000-8000-000000000001", [result(d) for d in devices], config=config
    )
    driver = Driver(
        driver_name=DRIVER,
        node_name="node-1",
        inventory=inventory,
        claims=Claims({"00000000-0000-4000-8000-000000000001": claim}),
        specs=SpecStore(tmp_path / "cdi", f"{DRIVER}/gpu"),
        checkpoint=Checkpoint(tmp_path / "checkpoint", "boot"),
    )
    try:
        driver.recover()  # as at start: makes the CDI root and loads the checkpoint
        return driver.prepare([ref])["00000000-0000-4000-8000-000000000001"]
    finally:
        driver.close()


def prepare(source: NvidiaSource, tmp_path: Path, *devices: str) -> PreparedClaim:
    outcome = prepare_outcome(source, tmp_path, *devices)
    assert isinstance(outcome, PreparedClaim), outcome
    return outcome


def test_time_slicing_is_refused_not_ignored(host: nvidia_host.FakeHost, tmp_path: Path) -> None:
    parameters = {
        "apiVersion": "gpu.cdi.example.com/v1alpha1",
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing"},
    }
    config = [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": parameters}}]
    outcome = prepare_outcome(pod_source(host), tmp_path, "gpu-1", config=config)
    assert isinstance(outcome, ClaimError)
    assert "parameters.sharing.strategy: TimeSlicing is not supported" in str(outcome)
    assert "gpu-1" in str(outcome)
    assert not list((tmp_path / "cdi").glob("*.json"))


@pytest.fixture
def host(tmp_path: Path) -> nvidia_host.FakeHost:
    return nvidia_host.build(tmp_path / "host", h100_node())


def pod_source(host: nvidia_host.FakeHost, **kw: Any) -> NvidiaSource:
    """As in a pod: the host's / is mounted at `mount`; CDI host paths are the host's."""
    return NvidiaSource(
        nvml=FakeNvml(h100_node()),
        driver_root=Path("/"),
        driver_root_mount=host.driver_root,
        sysfs=host.sysfs,
        proc=host.proc,
        **kw,
    )


def mounts(spec: dict[str, Any]) -> dict[str, str]:
    return {m["containerPath"]: m["hostPath"] for m in spec["containerEdits"]["mounts"]}


def test_a_claim_gets_its_gpu_and_the_driver_libraries_once(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    prepared = prepare(pod_source(host), tmp_path, "gpu-2", "gpu-5")
    spec = prepared.cdi_spec
    assert spec is not None
    assert spec["cdiVersion"] == "0.3.0"  # host paths equal container paths: the oldest will do
    assert spec["kind"] == f"{DRIVER}/gpu"
    by_name = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    assert by_name == {
        "gpu-2-00000000-0000-4000-8000-000000000001": {"deviceNodes": [{"path": "/dev/nvidia2"}]},
        "gpu-5-00000000-0000-4000-8000-000000000001": {"deviceNodes": [{"path": "/dev/nvidia5"}]},
    }
    edits = spec["containerEdits"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in edits["env"]
    assert [n["path"] for n in edits["deviceNodes"]] == [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",  # no /dev/nvidia-modeset on this host: not asked for
    ]
    libcuda = f"{HOST_LIB}/libcuda.so.{VERSION}"
    assert mounts(spec) == {
        f"{LIB}/libcuda.so.{VERSION}": libcuda,
        f"{LIB}/libcuda.so.1": libcuda,
        f"{LIB}/libcuda.so": libcuda,
        f"{LIB}/libnvidia-ml.so.{VERSION}": f"{HOST_LIB}/libnvidia-ml.so.{VERSION}",
        f"{LIB}/libnvidia-ml.so.1": f"{HOST_LIB}/libnvidia-ml.so.{VERSION}",
        f"{LIB}/libnvidia-ptxjitcompiler.so.{VERSION}": (
            f"{HOST_LIB}/libnvidia-ptxjitcompiler.so.{VERSION}"
        ),
        f"{LIB}/libnvidia-ptxjitcompiler.so.1": f"{HOST_LIB}/libnvidia-ptxjitcompiler.so.{VERSION}",
        f"{LIB}/libnvidia-nvvm.so.{VERSION}": f"{HOST_LIB}/libnvidia-nvvm.so.{VERSION}",
        f"{LIB}/libnvidia-nvvm.so.4": f"{HOST_LIB}/libnvidia-nvvm.so.{VERSION}",
        f"{LIB}/libcudadebugger.so.{VERSION}": f"{HOST_LIB}/libcudadebugger.so.{VERSION}",
        f"{LIB}/libcudadebugger.so.1": f"{HOST_LIB}/libcudadebugger.so.{VERSION}",
        "/usr/local/nvidia/bin/nvidia-smi": "/usr/bin/nvidia-smi",
        "/usr/local/nvidia/bin/nvidia-debugdump": "/usr/bin/nvidia-debugdump",
        "/usr/local/nvidia/bin/nvidia-persistenced": "/usr/bin/nvidia-persistenced",
    }
    assert all(m["options"] == ["ro", "nosuid", "nodev", "bind"] for m in edits["mounts"]), (
        "read-only, no setuid, no devices"
    )
    assert [d.cdi_device_ids for d in prepared.devices] == [
        (f"{DRIVER}/gpu=gpu-2-00000000-0000-4000-8000-000000000001",),
        (f"{DRIVER}/gpu=gpu-5-00000000-0000-4000-8000-000000000001",),
    ]
    # What the runtime reads is what was returned.
    written = json.loads(
        (
            tmp_path
            / "cdi"
            / f"{DRIVER.replace('/', '_')}_gpu-00000000-0000-4000-8000-000000000001.json"
        ).read_text()
    )
    assert written == spec


def test_no_other_gpu_reaches_the_container(host: nvidia_host.FakeHost, tmp_path: Path) -> None:
    spec = prepare(pod_source(host), tmp_path, "gpu-2").cdi_spec
    assert spec is not None
    text = json.dumps(spec)
    assert "/dev/nvidia2" in text
    assert not any(f'"/dev/nvidia{i}"' in text for i in (0, 1, 3, 4, 5, 6, 7))


def test_an_older_drivers_leftover_library_is_not_mounted(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    spec = prepare(pod_source(host), tmp_path, "gpu-0").cdi_spec
    assert spec is not None
    assert nvidia_host.STALE_LIBRARY not in json.dumps(spec)


def test_a_driver_root_elsewhere_gives_host_paths_under_it(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    """The GPU operator's layout: the driver (and its /dev) under /run/nvidia/driver."""
    source = NvidiaSource(
        nvml=FakeNvml(h100_node()),
        driver_root=Path("/run/nvidia/driver"),
        driver_root_mount=host.driver_root,
        sysfs=host.sysfs,
        proc=host.proc,
    )
    spec = prepare(source, tmp_path, "gpu-1").cdi_spec
    assert spec is not None
    assert spec["cdiVersion"] == "0.5.0"  # deviceNodes[].hostPath needs it
    assert spec["devices"][0]["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia1", "hostPath": "/run/nvidia/driver/dev/nvidia1"}
    ]
    assert mounts(spec)[f"{LIB}/libcuda.so.1"] == (
        f"/run/nvidia/driver{HOST_LIB}/libcuda.so.{VERSION}"
    )


def test_a_mig_device_gets_its_parent_and_its_access_nodes(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    spec = prepare(pod_source(host), tmp_path, "gpu-3-mig-8-0").cdi_spec
    assert spec is not None
    gi_cap, ci_cap = host.cap_minors[(3, 8, 0)]
    assert spec["devices"][0]["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/nvidia3"},
        {"path": f"/dev/nvidia-caps/nvidia-cap{gi_cap}"},
        {"path": f"/dev/nvidia-caps/nvidia-cap{ci_cap}"},
    ]


def test_without_mig_capability_files_only_the_parent_node_is_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = h100_node()
    host = nvidia_host.build(tmp_path / "host", data, mig_caps=False)
    source = NvidiaSource(nvml=FakeNvml(data), driver_root=host.driver_root, proc=host.proc)
    mig = {d.name: d for d in source.discover()}["gpu-3-mig-7-0"]
    assert [n.path for n in mig.edits.device_nodes] == ["/dev/nvidia3"]
    [warning] = [r for r in caplog.records if "MIG access device nodes" in r.message]
    assert warning.fields["devices"] == [f"gpu-3-mig-{gi}-0" for gi in range(7, 14)]  # type: ignore[attr-defined]
    source.discover()  # the same problem again: no second line
    assert len([r for r in caplog.records if "MIG access device nodes" in r.message]) == 1


def test_a_missing_uvm_node_is_left_out_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = h100_node()
    host = nvidia_host.build(tmp_path / "host", data, uvm=False)
    source = NvidiaSource(nvml=FakeNvml(data), driver_root=host.driver_root, proc=host.proc)
    edits = source.claim_edits(source.discover()[:1])
    assert [n.path for n in edits.device_nodes] == ["/dev/nvidiactl"]
    assert any("nvidia-modprobe -u" in r.message for r in caplog.records)


def test_without_libcuda_of_the_running_driver_the_source_fails_clearly(tmp_path: Path) -> None:
    data = h100_node()
    host = nvidia_host.build(
        tmp_path / "host", data, libraries={"libnvidia-ml.so": ("libnvidia-ml.so.1",)}
    )
    source = NvidiaSource(nvml=FakeNvml(data), driver_root=host.driver_root, proc=host.proc)
    with pytest.raises(InventoryError, match=r"libcuda\.so\.550\.54\.15 .*--nvidia-driver-root"):
        source.discover()


def test_missing_optional_files_are_logged_once(
    host: nvidia_host.FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    source = pod_source(host)
    source.discover()
    source.discover()
    found = [r for r in caplog.records if "driver files not found" in r.message]
    assert len(found) == 1
    missing = found[0].fields["missing"]  # type: ignore[attr-defined]
    assert "libnvidia-opencl.so.550.54.15" in missing
    assert "nvidia-cuda-mps-control" in missing


def test_absolute_soname_links_resolve_inside_the_driver_root(tmp_path: Path) -> None:
    data = h100_node(mig_minor=None, count=1)
    host = nvidia_host.build(tmp_path / "host", data)
    lib_dir = host.driver_root / nvidia_host.LIB_DIR
    (lib_dir / "libcuda.so.1").unlink()
    (lib_dir / "libcuda.so.1").symlink_to(f"/{nvidia_host.LIB_DIR}/libcuda.so.{VERSION}")
    source = NvidiaSource(
        nvml=FakeNvml(data), driver_root=Path("/"), driver_root_mount=host.driver_root
    )
    [gpu] = source.discover()
    paths = {m.container_path: m.host_path for m in source.claim_edits([gpu]).mounts}
    assert paths[f"{LIB}/libcuda.so.1"] == f"{HOST_LIB}/libcuda.so.{VERSION}"


# --- --nvidia-cdi-mode=toolkit --------------------------------------------------------------


def toolkit_spec(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    devices = "\n".join(
        f"- name: {json.dumps(n)}\n  containerEdits:\n    deviceNodes: [{{path: /dev/nvidia0}}]"
        for n in names
    )
    path.write_text(f"cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n{devices}\n")


def test_toolkit_mode_adds_the_toolkit_ids_by_uuid(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    spec_dir = tmp_path / "etc-cdi"
    toolkit_spec(
        spec_dir / "nvidia.yaml",
        ["0", "all", *(gpu_uuid(i) for i in range(8)), *(mig_uuid(3, s) for s in range(7))],
    )
    source = pod_source(host, cdi_mode="toolkit", toolkit_spec_dirs=[tmp_path / "none", spec_dir])
    prepared = prepare(source, tmp_path, "gpu-2", "gpu-3-mig-8-0")
    # What the kubelet gets: our per-claim id, then the toolkit's.
    ids = {d.device: d.cdi_device_ids for d in prepared.devices}
    assert ids == {
        "gpu-2": (
            f"{DRIVER}/gpu=gpu-2-00000000-0000-4000-8000-000000000001",
            f"nvidia.com/gpu={gpu_uuid(2)}",
        ),
        "gpu-3-mig-8-0": (
            f"{DRIVER}/gpu=gpu-3-mig-8-0-00000000-0000-4000-8000-000000000001",
            f"nvidia.com/gpu={mig_uuid(3, 1)}",
        ),
    }
    spec = prepared.cdi_spec
    assert spec is not None
    # The toolkit's spec mounts the libraries; ours only names the device nodes.
    assert "mounts" not in spec["containerEdits"]
    assert "deviceNodes" not in spec["containerEdits"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in spec["containerEdits"]["env"]


def source_device(source: NvidiaSource, name: str) -> Any:
    return {d.name: d for d in source.discover()}[name]


def test_toolkit_mode_falls_back_to_index_names(host: nvidia_host.FakeHost, tmp_path: Path) -> None:
    toolkit_spec(
        tmp_path / "run-cdi" / "nvidia.yaml",
        [*map(str, range(8)), *(f"3:{s}" for s in range(7)), "all"],
    )
    source = pod_source(host, cdi_mode="toolkit", toolkit_spec_dirs=[tmp_path / "run-cdi"])
    assert source.extra_cdi_ids(source_device(source, "gpu-6")) == ("nvidia.com/gpu=6",)
    assert source.extra_cdi_ids(source_device(source, "gpu-3-mig-8-0")) == ("nvidia.com/gpu=3:1",)


def test_toolkit_mode_without_a_toolkit_spec_says_how_to_make_one(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    source = pod_source(host, cdi_mode="toolkit", toolkit_spec_dirs=[tmp_path / "none"])
    with pytest.raises(InventoryError, match="nvidia-ctk cdi generate"):
        source.discover()


def test_toolkit_mode_with_a_stale_spec_says_to_regenerate_it(
    host: nvidia_host.FakeHost, tmp_path: Path
) -> None:
    toolkit_spec(tmp_path / "cdi" / "nvidia.yaml", ["0", "1"])
    source = pod_source(host, cdi_mode="toolkit", toolkit_spec_dirs=[tmp_path / "cdi"])
    with pytest.raises(InventoryError, match="stale: regenerate"):
        source.discover()


def test_driver_mode_adds_no_other_ids(host: nvidia_host.FakeHost) -> None:
    source = pod_source(host)
    assert all(source.extra_cdi_ids(d) == () for d in source.discover())
    assert MockSource("n", 1).extra_cdi_ids(MockSource("n", 1).discover()[0]) == ()


def test_host_tree_is_left_untouched(host: nvidia_host.FakeHost, tmp_path: Path) -> None:
    before = sorted(p.name for p in host.base.rglob("*"))
    prepare(pod_source(host), tmp_path, "gpu-0")
    assert sorted(p.name for p in host.base.rglob("*")) == before
