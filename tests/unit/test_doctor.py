"""`dra-cdi-driver doctor`: each check's verdict from what is on a node, and the output.

Configs, specs and mountinfo are written into tmp_path; the API checks talk to a stand-in for
the kubernetes client's CustomObjectsApi that answers like a server whose gates are on or off.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.cli import main
from dra_cdi_driver.devices.nvidia.nvml import NVML_MODULE_ENV
from dra_cdi_driver.doctor import api, containerd, crio, devices, gates, node_dirs, runtime
from dra_cdi_driver.doctor import cdi_specs as specs
from dra_cdi_driver.doctor.report import Result, exit_code, render_json, render_text
from dra_cdi_driver.settings import Settings
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import DATA_ENV, NVML_ERROR_DRIVER_NOT_LOADED, h100_node

ROOT = Path("/var/run/cdi")
KIND = "gpu.cdi.example.com/gpu"
UID = "0b8f5a36-3b4c-4c5e-9a57-1f5e2d7c9a10"
V2_TABLE = '[plugins."io.containerd.grpc.v1.cri"]'
V3_TABLE = '[plugins."io.containerd.cri.v1.runtime"]'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def containerd_check(
    tmp_path: Path, text: str, running: tuple[int, int] | None, root: Path = ROOT
) -> Result:
    return containerd.check(write(tmp_path / "config.toml", text), root, running)


# --- containerd 1.7: version 2 configs ------------------------------------------------------


def test_containerd_1_7_with_cdi_on_and_the_default_dirs_is_ok(tmp_path: Path) -> None:
    text = f"version = 2\n{V2_TABLE}\n  enable_cdi = true\n"
    result = containerd_check(tmp_path, text, (1, 7))
    assert result.status == "ok"
    assert result.message == (
        f"CDI on, /var/run/cdi in cdi_spec_dirs ({tmp_path}/config.toml, version 2, containerd 1.7)"
    )


def test_containerd_1_7_without_enable_cdi_fails_its_default_is_off(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, f"version = 2\n{V2_TABLE}\n  sandbox_image = 'x'\n", (1, 7))
    assert result.status == "fail"
    assert "enable_cdi is off (the default of containerd 1.7)" in result.message
    assert result.fix == f"set enable_cdi = true under {V2_TABLE} and restart containerd"


def test_enable_cdi_false_in_a_version_2_config_turns_cdi_off_on_containerd_2_too(
    tmp_path: Path,
) -> None:
    # containerd 2.x copies the old CRI table's keys into io.containerd.cri.v1.runtime.
    text = f"version = 2\n{V2_TABLE}\n  enable_cdi = false\n"
    for running in ((1, 7), (2, 0), (2, 1)):
        result = containerd_check(tmp_path, text, running)
        assert result.status == "fail", running
        assert result.message.startswith("enable_cdi is off (")
        assert result.fix == f"set enable_cdi = true under {V2_TABLE} and restart containerd"


def test_a_version_2_config_without_enable_cdi_is_fine_on_containerd_2(tmp_path: Path) -> None:
    assert containerd_check(tmp_path, "version = 2\n", (2, 1)).status == "ok"


def test_without_enable_cdi_and_an_unknown_containerd_it_warns_and_says_what_to_set(
    tmp_path: Path,
) -> None:
    result = containerd_check(tmp_path, "version = 2\n", None)
    assert result.status == "warn"
    assert "on with containerd 2.x but off with 1.7" in result.message
    assert result.fix == f"set enable_cdi = true under {V2_TABLE} and restart containerd"


def test_a_cdi_root_missing_from_cdi_spec_dirs_fails_with_the_line_to_write(
    tmp_path: Path,
) -> None:
    text = f'version = 2\n{V2_TABLE}\n  enable_cdi = true\n  cdi_spec_dirs = ["/etc/cdi"]\n'
    result = containerd_check(tmp_path, text, (1, 7))
    assert result.status == "fail"
    assert "the CDI root /var/run/cdi is not in cdi_spec_dirs [/etc/cdi]" in result.message
    assert result.fix.startswith(
        f'set cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"] under {V2_TABLE} and restart'
    )


def test_our_own_cdi_root_in_cdi_spec_dirs_is_ok(tmp_path: Path) -> None:
    text = f'version = 2\n{V2_TABLE}\n  enable_cdi = true\n  cdi_spec_dirs = ["/srv/cdi"]\n'
    assert containerd_check(tmp_path, text, (1, 7), root=Path("/srv/cdi")).status == "ok"
    assert containerd_check(tmp_path, text, (1, 7)).status == "fail"


def test_a_version_1_config_names_the_cri_plugin_by_its_short_id(tmp_path: Path) -> None:
    text = '[plugins.cri]\n  enable_cdi = true\n  cdi_spec_dirs = ["/var/run/cdi"]\n'
    result = containerd_check(tmp_path, text, (1, 7))
    assert result.status == "ok"
    assert "version 1" in result.message


def test_containerd_older_than_1_7_has_no_cdi(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, "version = 2\n", (1, 6))
    assert result.status == "fail"
    assert "upgrade containerd to 1.7" in result.fix


# --- containerd 2.x: version 3 configs ------------------------------------------------------


def test_containerd_2_with_no_cri_table_runs_cdi_on_the_default_dirs(tmp_path: Path) -> None:
    assert containerd_check(tmp_path, "version = 3\n", (2, 1)).status == "ok"
    assert containerd_check(tmp_path, "version = 3\n", None).status == "ok"  # only 2.x reads v3


def test_containerd_2_with_cdi_off_names_the_v3_table(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, f"version = 3\n{V3_TABLE}\n  enable_cdi = false\n", None)
    assert result.status == "fail"
    assert result.fix == f"set enable_cdi = true under {V3_TABLE} and restart containerd"


def test_containerd_2_dirs_without_our_root_fail(tmp_path: Path) -> None:
    text = f'version = 3\n{V3_TABLE}\n  cdi_spec_dirs = ["/etc/cdi"]\n'
    result = containerd_check(tmp_path, text, (2, 0))
    assert result.status == "fail"
    assert f'set cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"] under {V3_TABLE}' in result.fix


def test_containerd_1_7_cannot_read_a_version_3_config(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, "version = 3\n", (1, 7))
    assert result.status == "fail"
    assert "cannot read" in result.message


# --- containerd: imports, missing and broken files ------------------------------------------


def test_an_import_in_the_config_dir_is_merged_and_the_later_file_wins(tmp_path: Path) -> None:
    write(tmp_path / "conf.d" / "10-cdi.toml", f"version = 2\n{V2_TABLE}\n  enable_cdi = false\n")
    text = f'version = 2\nimports = ["conf.d/*.toml"]\n{V2_TABLE}\n  enable_cdi = true\n'
    result = containerd_check(tmp_path, text, (1, 7))
    assert result.status == "fail"
    assert result.message.startswith("enable_cdi is off")


def test_an_import_outside_the_config_dir_is_not_read_and_said_so(tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere" / "x.toml", f"{V2_TABLE}\n  enable_cdi = false\n")
    text = f'version = 2\nimports = ["{outside}"]\n{V2_TABLE}\n  enable_cdi = true\n'
    result = containerd.check(write(tmp_path / "etc" / "config.toml", text), ROOT, (1, 7))
    assert result.status == "warn"
    assert f"imports not read: {outside}" in result.message


def test_a_missing_containerd_config_is_a_warning_that_names_the_flag(tmp_path: Path) -> None:
    result = containerd.check(tmp_path / "nope.toml", ROOT, (1, 7))
    assert result.status == "warn"
    assert "--containerd-config" in result.fix


def test_a_broken_config_is_not_checked(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, "version = [\n", (1, 7))
    assert result.status == "warn"
    assert "is not valid TOML" in result.message


def test_an_oversized_config_is_not_read(tmp_path: Path) -> None:
    result = containerd_check(tmp_path, "# x\n" * 300_000, (1, 7))
    assert result.status == "warn"
    assert "larger than" in result.message


# --- CRI-O ----------------------------------------------------------------------------------


def test_crio_reads_the_default_dirs_and_has_cdi_always_on(tmp_path: Path) -> None:
    main_conf = write(tmp_path / "crio.conf", "[crio.runtime]\nselinux = false\n")
    result = crio.check(ROOT, (1, 30), [main_conf])
    assert result.status == "ok"
    assert "(the default)" in result.message


def test_the_last_crio_drop_in_wins_and_a_missing_root_fails_naming_it(tmp_path: Path) -> None:
    drop_ins = tmp_path / "crio.conf.d"
    write(tmp_path / "crio.conf", '[crio.runtime]\ncdi_spec_dirs = ["/var/run/cdi"]\n')
    write(drop_ins / "20-gpu.conf", '[crio.runtime]\ncdi_spec_dirs = ["/etc/cdi"]\n')
    write(drop_ins / "10-base.conf", '[crio.runtime]\ncdi_spec_dirs = ["/var/run/cdi"]\n')
    files = crio.config_files(tmp_path / "crio.conf", drop_ins)
    assert [f.name for f in files] == ["crio.conf", "10-base.conf", "20-gpu.conf"]
    result = crio.check(ROOT, None, files)
    assert result.status == "fail"
    assert f"set in {drop_ins / '20-gpu.conf'}" in result.message
    assert '[crio.runtime] cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]' in result.fix


def test_crio_before_1_23_has_no_cdi() -> None:
    assert crio.check(ROOT, (1, 22), []).status == "fail"


def test_crio_without_a_config_here_is_a_warning() -> None:
    result = crio.check(ROOT, (1, 30), [])
    assert result.status == "warn"
    assert "with CRI-O's defaults /var/run/cdi is read" in result.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("containerd://1.7.24~ds1", runtime.RuntimeVersion("containerd", (1, 7))),
        ("containerd://v2.1.3", runtime.RuntimeVersion("containerd", (2, 1))),
        ("cri-o://1.30.2", runtime.RuntimeVersion("cri-o", (1, 30))),
        ("docker://28.0.1", runtime.RuntimeVersion("docker", (28, 0))),
        ("", None),
    ],
)
def test_the_node_runtime_version_is_read(
    text: str, expected: runtime.RuntimeVersion | None
) -> None:
    assert runtime.parse_runtime_version(text) == expected


def test_the_runtime_the_node_reports_is_the_one_checked(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", "version = 2\n")
    crio_conf = write(tmp_path / "crio.conf", "[crio.runtime]\n")
    on_crio = runtime.check(ROOT, config, runtime.RuntimeVersion("cri-o", (1, 30)), [crio_conf])
    assert on_crio.check == "cri-o"
    on_docker = runtime.check(ROOT, config, runtime.RuntimeVersion("docker", (28, 0)), [])
    assert (on_docker.check, on_docker.status) == ("container runtime", "warn")
    unknown = runtime.check(ROOT, tmp_path / "none.toml", None, [crio_conf])
    assert unknown.check == "cri-o"  # no containerd config here, a CRI-O one is


# --- CDI specs of our kind ------------------------------------------------------------------


def test_another_spec_of_our_kind_fails_naming_the_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc-cdi"
    root = tmp_path / "cdi"
    leftover = write(etc / "gpu.yaml", f"cdiVersion: 0.5.0\nkind: {KIND}\ndevices: []\n")
    write(etc / "other.json", json.dumps({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu"}))
    write(root / f"gpu.cdi.example.com_gpu-{UID}.json", json.dumps({"kind": KIND}))
    results = specs.check(KIND, root, [etc])
    assert [(r.status, r.check) for r in results] == [("fail", "cdi specs")]
    assert str(leftover) in results[0].message
    assert results[0].fix.startswith(f"remove {leftover}")


def test_only_the_drivers_per_claim_specs_is_ok(tmp_path: Path) -> None:
    root = tmp_path / "cdi"
    write(root / f"gpu.cdi.example.com_gpu-{UID}.json", json.dumps({"kind": KIND}))
    write(root / "nvidia.yaml", "kind: nvidia.com/gpu\n")
    [result] = specs.check(KIND, root, [tmp_path / "missing"])
    assert result.status == "ok"
    assert "(1 per-claim spec of the driver)" in result.message


def test_unreadable_specs_are_skipped_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "cdi"
    write(root / "broken.json", "{")
    write(root / "huge.yaml", "#" * (2 * 1024 * 1024))
    os.symlink(tmp_path / "target.json", root / "link.json")
    write(tmp_path / "target.json", json.dumps({"kind": KIND}))
    results = specs.check(KIND, root, [])
    assert results[0].status == "ok"
    warned = sorted(r.message.split(":")[0] for r in results[1:])
    assert warned == [f"skipped {root / n}" for n in ("broken.json", "huge.yaml", "link.json")]
    assert all(r.status == "warn" for r in results[1:])


# --- the kubelet's dirs and the CDI root ----------------------------------------------------

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1024k,mode=755
26 22 0:24 / /srv/my\\040dir rw shared:6 - tmpfs tmpfs rw
27 22 0:25 / /runner rw shared:7 - xfs /dev/vdb rw
28 22 0:26 / /mnt/data rw shared:8 - tmpfs tmpfs rw
29 22 0:27 / /mnt/data rw shared:9 - ext4 /dev/vdc rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/run/cdi", "tmpfs"),
        ("/runner/cdi", "xfs"),  # a prefix of the text is not a parent dir
        ("/srv/my dir/cdi", "tmpfs"),  # mountinfo escapes the space
        ("/mnt/data/cdi", "ext4"),  # the later mount hides the earlier one
        ("/etc/cdi", "ext4"),
    ],
)
def test_the_filesystem_of_a_path_is_read_from_mountinfo(path: str, fstype: str) -> None:
    assert node_dirs.filesystem_of(path, MOUNTINFO) == fstype


def test_the_cdi_root_says_whether_it_is_a_tmpfs(tmp_path: Path) -> None:
    root = tmp_path / "cdi"
    root.mkdir()
    info = write(tmp_path / "mountinfo", f"30 22 0:30 / {root} rw - tmpfs tmpfs rw\n")
    result = node_dirs.check_cdi_root(root, info)
    assert result.status == "ok"
    assert f"{root} exists, writable; a tmpfs: a reboot empties it" in result.message
    info.write_text(f"30 22 0:30 / {tmp_path} rw - ext4 /dev/sda rw\n")
    assert "on ext4, not a tmpfs" in node_dirs.check_cdi_root(root / "new", info).message


def test_a_missing_registrar_dir_means_the_wrong_kubelet_dir(tmp_path: Path) -> None:
    result = node_dirs.check_registrar_dir(tmp_path / "plugins_registry")
    assert result.status == "fail"
    assert "kubeletDir (--kubelet-dir) is not this kubelet's root dir" in result.message
    (tmp_path / "plugins_registry").mkdir()
    assert node_dirs.check_registrar_dir(tmp_path / "plugins_registry").status == "ok"


def test_a_plugin_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    file = write(tmp_path / "plugin", "")
    assert node_dirs.check_plugin_dir(file).status == "fail"
    result = node_dirs.check_plugin_dir(tmp_path / "plugins" / "x")
    assert (result.status, result.message) == (
        "ok",
        f"{tmp_path / 'plugins' / 'x'} does not exist yet (the driver creates it)",
    )


# --- device sources -------------------------------------------------------------------------


def settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "driver_name": "gpu.cdi.example.com",
        "node_name": "node-a",
        "kubeconfig": None,
        "cdi_root": tmp_path / "cdi",
        "plugin_dir": tmp_path / "kubelet" / "plugins" / "gpu.cdi.example.com",
        "registrar_dir": tmp_path / "kubelet" / "plugins_registry",
        "device_source": "mock",
        "mock_devices": 2,
        "mock_dev_dir": tmp_path / "mock" / "dev",
        "mock_lib_dir": tmp_path / "mock" / "so",
        "mock_bin_dir": tmp_path / "mock" / "bin",
        "log_level": "info",
        "log_format": "text",
    }
    values.update(changes)
    return Settings(**values)


def mock_layout(s: Settings) -> None:
    for directory in (s.mock_dev_dir, s.mock_lib_dir, s.mock_bin_dir):
        directory.mkdir(parents=True)
    for i in range(s.mock_devices):
        os.symlink("/dev/null", s.mock_dev_dir / f"device_{i}")  # a character device
        write(s.mock_lib_dir / f"device_{i}.so", "")
    write(s.mock_bin_dir / "list_device.sh", "#!/bin/sh\n")


def test_the_mock_layout_is_ok_when_complete_and_a_warning_when_not(tmp_path: Path) -> None:
    s = settings(tmp_path)
    missing = devices.check_mock(s)
    assert missing.status == "warn"
    assert "containers get environment variables only" in missing.message
    assert missing.fix == "run hack/mock-layout.sh 2 on the node"
    mock_layout(s)
    assert devices.check_mock(s).status == "ok"
    (s.mock_lib_dir / "device_1.so").unlink()
    assert str(s.mock_lib_dir / "device_1.so") in devices.check_mock(s).message


def nvidia_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], uvm: bool = True
) -> Settings:
    host = nvidia_host.build(tmp_path / "host", data, uvm=uvm)
    write(tmp_path / "nvml.json", json.dumps(data))
    monkeypatch.setenv(NVML_MODULE_ENV, "tests.fakes.fake_nvml")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nvml.json"))
    return settings(tmp_path, device_source="nvidia", nvidia_driver_root=host.driver_root)


def test_a_working_nvidia_node_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = devices.check(nvidia_node(tmp_path, monkeypatch, h100_node()))
    assert [(r.check, r.status) for r in results] == [
        ("nvidia driver root", "ok"),
        ("nvml", "ok"),
        ("nvidia devices", "ok"),
        ("nvidia devices", "ok"),
    ]
    assert results[1].message == "driver 550.54.15, 8 GPUs (1 in MIG mode)"


def test_nvidia_failures_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = h100_node()
    data["errors"] = {"nvmlInit": NVML_ERROR_DRIVER_NOT_LOADED}
    results = devices.check(nvidia_node(tmp_path, monkeypatch, data, uvm=False))
    failed = {r.message.split(":")[0]: r.fix for r in results if r.status == "fail"}
    assert "lsmod | grep nvidia" in failed["NVML initialization failed"]
    uvm = str(tmp_path / "host" / "driver" / "dev" / "nvidia-uvm") + " is missing"
    assert (
        failed[uvm] == "load nvidia-uvm and create its node: `nvidia-modprobe -u -c=0` on the node"
    )


def test_no_nvml_library_under_the_driver_root_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = nvidia_node(tmp_path, monkeypatch, h100_node())
    result = devices.check(settings(tmp_path, device_source="nvidia", nvidia_driver_root=tmp_path))
    assert s.nvidia_driver_root != tmp_path
    assert (result[0].check, result[0].status) == ("nvidia driver root", "fail")
    assert "--nvidia-driver-root" in result[0].fix


# --- the API: versions, and gates told by what a dry run keeps ------------------------------


@pytest.mark.parametrize(
    ("version", "status"),
    [("v1.36.3", "ok"), ("v1.34.0-eks-1", "ok"), ("v1.33.4", "warn"), ("v1.31.9", "fail")],
)
def test_kubelet_versions(version: str, status: str) -> None:
    assert api.check_kubelet(api.NodeInfo(version, "containerd://2.1.0")).status == status


def test_resource_api_versions() -> None:
    assert api.check_resource_api(["v1", "v1beta2"], "v1.36.0").message == (
        "resource.k8s.io/v1 served (also v1beta2), Kubernetes v1.36.0"
    )
    older = api.check_resource_api(["v1beta2", "v1beta1"], "v1.33.1")
    assert older.status == "warn"
    assert "the driver speaks v1beta2" in older.message
    assert api.check_resource_api([], "v1.31.0").status == "fail"


class FakeObjects:
    """The CustomObjectsApi calls gates.py makes, answered like an API server with the given
    gates off (their fields dropped), or refusing what `forbidden` names."""

    created: ClassVar[list[tuple[str, str, Any, str]]] = []
    off: ClassVar[set[str]] = set()
    forbidden: ClassVar[set[str]] = set()
    device_class: ClassVar[dict[str, Any] | None] = None

    def __init__(self, _api: Any) -> None:
        pass

    def create_cluster_custom_object(
        self, group: str, version: str, plural: str, body: Any, **kw: Any
    ) -> Any:
        FakeObjects.created.append((version, plural, body, kw["dry_run"]))
        if plural in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")
        answer = json.loads(json.dumps(body))
        spec = answer["spec"]
        if "DRAPartitionableDevices" in self.off:
            spec.pop("sharedCounters", None)
        if "DRAExtendedResource" in self.off:
            spec.pop("extendedResourceName", None)
        for device in spec.get("devices", []):
            fields = device.get("basic", device)
            if "DRAConsumableCapacity" in self.off:
                fields.pop("allowMultipleAllocations")
            if "DRADeviceTaints" in self.off:
                fields.pop("taints")
        return answer

    def get_cluster_custom_object(
        self, group: str, version: str, plural: str, name: str, **kw: Any
    ) -> Any:
        if self.device_class is None:
            raise ApiException(status=404, reason="Not Found")
        return self.device_class


@pytest.fixture
def objects(monkeypatch: pytest.MonkeyPatch) -> type[FakeObjects]:
    monkeypatch.setattr(client, "CustomObjectsApi", FakeObjects)
    FakeObjects.created = []
    FakeObjects.off, FakeObjects.forbidden = set(), set()
    FakeObjects.device_class = {"spec": {"extendedResourceName": "mock.com/gpu"}}
    return FakeObjects


def gate_lines(version: str = "v1") -> dict[str, str]:
    unused = cast(client.ApiClient, None)  # FakeObjects stands in for what uses it
    results = gates.check_slice_gates(unused, version, "gpu.cdi.example.com", "node-a")
    results += gates.check_extended_resource(unused, version, "gpu.cdi.example.com")
    return {r.check: r.status for r in results}


def test_gates_on_are_ok_and_every_probe_is_a_dry_run_of_this_nodes_pool(
    objects: type[FakeObjects],
) -> None:
    assert set(gate_lines().values()) == {"ok"}
    assert {dry_run for *_, dry_run in objects.created} == {"All"}
    slices = [body for _, plural, body, _ in objects.created if plural == "resourceslices"]
    assert len(slices) == 2
    for body in slices:
        assert body["spec"]["driver"] == "gpu.cdi.example.com"
        assert body["spec"]["nodeName"] == body["spec"]["pool"]["name"] == "node-a"


def test_a_dropped_field_means_its_gate_is_off(objects: type[FakeObjects]) -> None:
    objects.off = {"DRAPartitionableDevices", "DRADeviceTaints"}
    assert gate_lines() == {
        "gate DRAPartitionableDevices": "warn",
        "gate DRAConsumableCapacity": "ok",
        "gate DRADeviceTaints": "warn",
        "gate DRAExtendedResource": "ok",
        "deviceclass": "ok",
    }


def test_v1beta1_probes_put_device_fields_under_basic(objects: type[FakeObjects]) -> None:
    objects.off = {"DRAConsumableCapacity"}
    assert gate_lines("v1beta1")["gate DRAConsumableCapacity"] == "warn"
    [probe] = [body for _, _, body, _ in objects.created if "devices" in body["spec"]]
    [device] = probe["spec"]["devices"]
    assert set(device) == {"name", "basic"}


def test_without_the_right_to_create_a_deviceclass_its_class_tells(
    objects: type[FakeObjects],
) -> None:
    objects.forbidden = {"deviceclasses"}
    assert gate_lines()["gate DRAExtendedResource"] == "ok"
    objects.device_class = {"spec": {}}
    assert gate_lines()["gate DRAExtendedResource"] == "warn"
    objects.device_class = None
    lines = gate_lines()
    assert (lines["gate DRAExtendedResource"], lines["deviceclass"]) == ("warn", "warn")


def test_a_forbidden_slice_dry_run_is_a_warning_never_a_failure(
    objects: type[FakeObjects],
) -> None:
    objects.forbidden = {"resourceslices"}
    lines = gate_lines()
    assert [lines[f"gate {g}"] for g in gates_of_slices()] == ["warn"] * 3


def gates_of_slices() -> list[str]:
    return ["DRAPartitionableDevices", "DRAConsumableCapacity", "DRADeviceTaints"]


# --- output and exit code -------------------------------------------------------------------


def test_the_text_output_is_one_line_per_check_and_a_summary() -> None:
    results = [
        Result.ok("kubelet", "v1.36.3"),
        Result.warn("mock devices", "env only", "run hack/mock-layout.sh 8 on the node"),
        Result.fail("containerd", "enable_cdi is off", "set enable_cdi = true"),
    ]
    assert render_text(results) == (
        "ok    kubelet: v1.36.3\n"
        "warn  mock devices: env only; fix: run hack/mock-layout.sh 8 on the node\n"
        "fail  containerd: enable_cdi is off; fix: set enable_cdi = true\n"
        "node not ready: 1 check failed\n"
    )
    assert exit_code(results) == 1
    assert render_text(results[:2]).endswith("node ready (1 warning)\n")
    assert exit_code(results[:2]) == 0
    assert json.loads(render_json(results))[2] == {
        "check": "containerd",
        "status": "fail",
        "message": "enable_cdi is off",
        "fix": "set enable_cdi = true",
    }


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A dir with a short path: the registration socket's path must fit 105 bytes."""
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    yield path
    shutil.rmtree(path)


def doctor_argv(tmp_path: Path, *extra: str) -> list[str]:
    s = settings(tmp_path)
    return [
        "doctor",
        "--node-name=node-a",
        f"--cdi-root={s.cdi_root}",
        f"--plugin-dir={s.plugin_dir}",
        f"--registrar-dir={s.registrar_dir}",
        f"--containerd-config={tmp_path / 'config.toml'}",
        "--mock-devices=2",
        f"--mock-dev-dir={s.mock_dev_dir}",
        f"--mock-lib-dir={s.mock_lib_dir}",
        f"--mock-bin-dir={s.mock_bin_dir}",
        *extra,
    ]


def test_doctor_exits_0_on_a_ready_node_and_1_when_a_check_fails(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = short_tmp
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    s = settings(tmp_path)
    mock_layout(s)
    s.registrar_dir.mkdir(parents=True)
    write(
        tmp_path / "config.toml", f'version = 3\n{V3_TABLE}\n  cdi_spec_dirs = ["{s.cdi_root}"]\n'
    )
    assert main(doctor_argv(tmp_path, "--doctor-output=json")) == 0
    statuses = {r["check"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert statuses["containerd"] == statuses["mock devices"] == statuses["cdi root"] == "ok"
    assert statuses["kubelet"] == statuses["api server"] == "warn"  # no API: not checked

    s.registrar_dir.rmdir()
    assert main(doctor_argv(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "fail  registrar dir:" in out
    assert out.endswith("node not ready: 1 check failed\n")


def test_doctor_writes_nothing_on_the_node(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = short_tmp
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    before = sorted(p for p in tmp_path.rglob("*"))
    main(doctor_argv(tmp_path))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert "does not exist yet (the driver creates it)" in capsys.readouterr().out
