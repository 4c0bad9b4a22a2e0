from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from dra_cdi_driver.devices.base import Version
from dra_cdi_driver.devices.mock import MockSource


def test_devices_are_named_and_stable_per_node(tmp_path: Path) -> None:
    source = MockSource("node-a", 3, dev_dir=tmp_path / "dev", lib_dir=tmp_path / "lib")
    devices = source.discover()
    assert [d.name for d in devices] == ["gpu-0", "gpu-1", "gpu-2"]
    assert devices[1].attributes["index"] == 1
    assert devices[1].attributes["driverVersion"] == Version("1.0.0")
    assert devices[1].capacity == {"memory": "80Gi"}
    assert all(not d.problems() for d in devices)
    again = MockSource("node-a", 3, dev_dir=tmp_path, lib_dir=tmp_path).discover()
    other = MockSource("node-b", 3, dev_dir=tmp_path, lib_dir=tmp_path).discover()
    assert [d.attributes["uuid"] for d in devices] == [d.attributes["uuid"] for d in again]
    assert devices[0].attributes["uuid"] != other[0].attributes["uuid"]
    assert "GPU_DEVICE_2=gpu-2" in devices[2].edits.env


def test_missing_host_paths_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = MockSource("n", 2, dev_dir=tmp_path / "none", lib_dir=tmp_path / "none")
    source.discover()
    source.discover()
    assert sum("not found on the host" in r.message for r in caplog.records) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_host_device_nodes_and_libraries_are_handed_over(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "lib").mkdir()
    os.mknod(tmp_path / "dev" / "device_1", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (tmp_path / "lib" / "device_1.so").write_bytes(b"")
    devices = MockSource("n", 2, dev_dir=tmp_path / "dev", lib_dir=tmp_path / "lib").discover()
    assert devices[0].edits.device_nodes == ()
    [node] = devices[1].edits.device_nodes
    # The classic paths inside the container, wherever the host keeps them.
    assert (node.path, node.host_path) == ("/dev/mock/device_1", str(tmp_path / "dev" / "device_1"))
    [mount] = devices[1].edits.mounts
    assert (mount.host_path, mount.container_path) == (
        str(tmp_path / "lib" / "device_1.so"),
        "/mock/so/device_1.so",
    )
    assert "ro" in mount.options


def test_problems_name_what_the_api_server_would_reject() -> None:
    from dra_cdi_driver.cdi import ContainerEdits
    from dra_cdi_driver.devices.base import Device

    device = Device(
        name="GPU_0",
        attributes={"bad-name": 1, "version": Version("1.0"), "long": "x" * 65},
        capacity={"memory": "lots"},
        edits=ContainerEdits(),
    )
    problems = "\n".join(device.problems())
    assert "'GPU_0' is not a DNS label" in problems
    assert "'bad-name' is not a C identifier" in problems
    assert "version='1.0' is not a semantic version" in problems
    assert "long is longer than 64" in problems
    assert "memory='lots' is not a Kubernetes quantity" in problems
    assert "no container edits" in problems


def test_the_classic_layout_is_the_default() -> None:
    source = MockSource("n", 1)
    assert (source.dev_dir, source.lib_dir, source.bin_dir) == (
        Path("/dev/mock"),
        Path("/mock/so"),
        Path("/mock/bin"),
    )


def test_every_tool_is_mounted_read_only_into_usr_local_bin_once_per_claim(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "list_device.sh").write_text("#!/bin/sh\nls /dev/mock\n")
    (tools / "gpu-info").write_text("x")
    (tools / "escape").symlink_to("/etc/shadow")  # a bind mount would follow it: skipped
    (tools / "subdir").mkdir()
    source = MockSource("n", 2, dev_dir=tmp_path, lib_dir=tmp_path, bin_dir=tools)
    devices = source.discover()
    mounts = source.claim_edits(devices).mounts
    assert [(m.host_path, m.container_path) for m in mounts] == [
        (str(tools / "gpu-info"), "/usr/local/bin/gpu-info"),
        (str(tools / "list_device.sh"), "/usr/local/bin/list_device.sh"),
    ]
    assert all({"ro", "nosuid", "nodev", "bind"} <= set(m.options) for m in mounts)
    assert not any(
        m.container_path.startswith("/usr/local/bin") for d in devices for m in d.edits.mounts
    )
    assert source.claim_edits([]).mounts == ()
    assert sum("not a plain regular file" in r.getMessage() for r in caplog.records) == 2


def test_no_tools_dir_means_no_tools(tmp_path: Path) -> None:
    source = MockSource("n", 1, dev_dir=tmp_path, lib_dir=tmp_path, bin_dir=tmp_path / "none")
    assert source.claim_edits(source.discover()).mounts == ()
