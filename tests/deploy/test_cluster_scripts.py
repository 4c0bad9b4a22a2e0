"""The kind workflow scripts, run for real against the e2e cluster with kind and docker
replaced by stand-ins that record their arguments (no container engine runs here).

kind-up.sh checks the real API server for resource.k8s.io/v1; kind-install.sh runs the real
`helm upgrade --install --wait` of the chart (its DaemonSet pinned to no node, the
DeviceClass left to the cluster's own driver) and waits for the real driver's slices.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import kube
from tests.e2e.harness.providers import E2ECluster

from .conftest import HACK, REPO_ROOT

pytestmark = pytest.mark.e2e

# `kind get clusters` lists the clusters created through this stand-in.
FAKE_KIND = """#!/bin/sh
echo "kind $*" >>"$FAKE_LOG"
state="$FAKE_LOG.clusters"
case "$1 $2" in
"get clusters") cat "$state" 2>/dev/null ;;
"create cluster") echo "$4" >>"$state" ;;
"delete cluster") : >"$state" ;;
esac
"""
FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >>"$FAKE_LOG"
case "$1 $2" in
"image inspect") echo sha256:0123abcd ;;
esac
"""


@pytest.fixture
def script_env(cluster: E2ECluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("kind", FAKE_KIND), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    yield {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "KIND_CLUSTER_NAME": "scripts-test",
        "KUBE_CONTEXT": "",  # the e2e cluster's kubeconfig, not a kind context
        "KUBECONFIG": str(cluster.kube.kubeconfig),
        "KUBECTL": cluster.kube.kubectl,
        "RELEASE": "scripts-test",
        "NAMESPACE": "scripts-test",
    }


def run(script: str, env: dict[str, str], *args: str) -> str:
    r = subprocess.run(
        [str(HACK / script), *args], env=env, capture_output=True, text=True, timeout=400
    )
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["FAKE_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_kind_up_load_down(script_env: dict[str, str]) -> None:
    out = run("kind-up.sh", script_env)
    assert (
        f"kind create cluster --name scripts-test --config {REPO_ROOT}/kind-config.yaml --wait 180s"
    ) in calls(script_env)
    assert "cluster ready" in out
    out = run("kind-up.sh", script_env)
    assert "exists; keeping it" in out
    assert sum(c.startswith("kind create") for c in calls(script_env)) == 1

    run("kind-load.sh", script_env)
    assert (
        f"docker build -f {REPO_ROOT}/deploy/Dockerfile --build-arg VERSION=0.1.0 "
        f"-t dra-cdi-driver:0.1.0 {REPO_ROOT}" in calls(script_env)
    )
    assert "kind load docker-image dra-cdi-driver:0.1.0 --name scripts-test" in calls(script_env)

    run("kind-down.sh", script_env)
    assert "kind delete cluster --name scripts-test" in calls(script_env)
    assert "no kind cluster" in run("kind-down.sh", script_env)


def test_kind_install_runs_the_helm_install(
    script_env: dict[str, str], helm: str, k: kube.Kube
) -> None:
    env = {**script_env, "HELM": helm}
    try:
        out = run(
            "kind-install.sh",
            env,
            "--set",
            "deviceClass.create=false",
            "--set",
            "nodeSelector.dra-cdi-driver/test=no-node-has-this",
        )
        print(out)
        assert "STATUS: deployed" in out
        assert "gpu-0" in out  # the slices table of the cluster's driver
        ds = k.get("daemonset", "scripts-test-dra-cdi-driver", "scripts-test")
        annotations = ds["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dra-cdi-driver/image-id"] == "0123abcd"
        container = ds["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "dra-cdi-driver:0.1.0"
        releases = json.loads(
            subprocess.run(
                [helm, "list", "-n", "scripts-test", "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert [(r["name"], r["status"]) for r in releases] == [("scripts-test", "deployed")]
    finally:
        subprocess.run(
            [helm, "uninstall", "scripts-test", "-n", "scripts-test", "--wait"],
            env=env,
            capture_output=True,
        )
        k.delete("namespace", "scripts-test", wait=False)
