"""`dra-cdi-driver doctor` on the local cluster's node: ready as it is, and not ready with CDI
turned off in containerd's config, saying what to change. It writes nothing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .harness import kube
from .harness.driver import LocalDriver, driver_command
from .harness.local import LocalCluster
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e


def _local(cluster: E2ECluster) -> tuple[LocalCluster, LocalDriver]:
    if not isinstance(cluster.local, LocalCluster) or not isinstance(cluster.driver, LocalDriver):
        pytest.skip("needs the node itself (local provider)")
    return cluster.local, cluster.driver


def doctor(cluster: E2ECluster, containerd_config: Path) -> subprocess.CompletedProcess[str]:
    """The doctor with the flags of the driver that serves this node."""
    _, driver = _local(cluster)
    command = driver_command()
    assert command is not None
    mock = cluster.mock_dir
    argv = [
        *command,
        "doctor",
        f"--driver-name={driver.driver_name}",
        f"--node-name={cluster.node_name}",
        f"--kubeconfig={cluster.kube.kubeconfig}",
        f"--cdi-root={driver.cdi_root}",
        f"--plugin-dir={driver.plugin_dir}",
        f"--registrar-dir={driver.registrar_dir}",
        f"--containerd-config={containerd_config}",
        "--device-source=mock",
        f"--mock-devices={driver.mock_devices}",
        f"--mock-dev-dir={mock}/dev/mock",
        f"--mock-lib-dir={mock}/mock/so",
        f"--mock-bin-dir={mock}/mock/bin",
    ]
    # Only the flags count: no setting of this shell's environment may leak in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    print(result.stdout, result.stderr)  # shown when the test fails
    return result


def lines(output: str) -> dict[str, str]:
    """check name -> its line, without the summary line."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(ok|warn|fail) +([^:]+):", line)
        if match:
            found[match[2]] = line
    return found


def probes(k: kube.Kube) -> list[str]:
    names = [s["metadata"]["name"] for s in k.items("resourceslices")]
    names += [c["metadata"]["name"] for c in k.items("deviceclasses")]
    return [n for n in names if "doctor-probe" in n]


def test_the_node_is_ready_and_doctor_writes_nothing(cluster: E2ECluster) -> None:
    local, driver = _local(cluster)
    before = sorted(os.listdir(driver.cdi_root)), sorted(os.listdir(driver.plugin_dir))
    result = doctor(cluster, local.L.containerd / "config.toml")
    assert result.returncode == 0, result.stdout
    found = lines(result.stdout)
    assert set(found) >= {
        "containerd",
        "kubelet",
        "api server",
        "gate DRAPartitionableDevices",
        "gate DRAConsumableCapacity",
        "gate DRADeviceTaints",
        "gate DRAExtendedResource",
        "deviceclass",
        "registrar dir",
        "plugin dir",
        "cdi root",
        "cdi specs",
        "mock devices",
    }
    not_ok = [line for line in found.values() if not line.startswith("ok ")]
    assert not_ok == [], "every check is ok on the local cluster's node"
    assert result.stdout.rstrip().endswith("node ready")
    assert "containerd 1.7" in found["containerd"]  # the version the Node reports
    assert "resource.k8s.io/v1 served" in found["api server"]
    # Read-only: the dry-run probes left nothing behind, and no file appeared on the node.
    assert probes(cluster.kube) == []
    assert (sorted(os.listdir(driver.cdi_root)), sorted(os.listdir(driver.plugin_dir))) == before


def test_cdi_off_in_containerd_fails_with_the_line_to_change(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    local, _ = _local(cluster)
    text = (local.L.containerd / "config.toml").read_text()
    assert "enable_cdi = true" in text
    off = tmp_path / "config.toml"
    off.write_text(text.replace("enable_cdi = true", "enable_cdi = false"))
    result = doctor(cluster, off)
    assert result.returncode == 1
    line = lines(result.stdout)["containerd"]
    assert line.startswith("fail  containerd: enable_cdi is off")
    assert 'fix: set enable_cdi = true under [plugins."io.containerd.grpc.v1.cri"]' in line
    assert result.stdout.rstrip().endswith("node not ready: 1 check failed")
