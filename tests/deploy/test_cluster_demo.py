"""hack/demo.sh runs every demo scenario on a real cluster, and prints what it promises.

The e2e cluster's own driver (gpu.cdi.example.com, 8 mock GPUs) serves the claims. On the
local provider the demo pods are adapted to what that cluster has: host networking (it has
no CNI) and its busybox image (it has no registry); nothing else changes.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import config as e2e_config
from tests.e2e.harness import kube
from tests.e2e.harness.providers import E2ECluster

from .conftest import HACK, REPO_ROOT, Obj

pytestmark = pytest.mark.e2e

DRIVER = "gpu.cdi.example.com"
Sections = dict[tuple[str, str], dict[str, str]]


def adapt(src: Path, dest: Path, local: bool) -> None:
    docs: list[Obj] = [d for d in yaml.safe_load_all(src.read_text()) if d]
    for d in docs:
        if d["kind"] == "Pod" and local:
            d["spec"]["hostNetwork"] = True
            for c in d["spec"]["containers"]:
                c["image"] = e2e_config.TEST_IMAGE
    dest.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def run_demo(cluster: E2ECluster, tmp_path: Path, *scenarios: str) -> str:
    demo = tmp_path / "demo"
    demo.mkdir(parents=True)
    for p in (REPO_ROOT / "demo").glob("*.yaml"):
        adapt(p, demo / p.name, local=cluster.provider == "local")
    k = cluster.kube
    env = {
        **os.environ,
        "DEMO_DIR": str(demo),
        "KUBE_CONTEXT": "",
        "KUBECONFIG": str(k.kubeconfig),
        "KUBECTL": k.kubectl,
        "POD_TIMEOUT": "120",
    }
    r = subprocess.run(
        [str(HACK / "demo.sh"), *scenarios],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"hack/demo.sh failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    print(r.stdout)
    return r.stdout


def sections(out: str) -> Sections:
    """What each container printed: (pod, container) -> its variables."""
    found: Sections = {}
    current: dict[str, str] | None = None
    for line in out.splitlines():
        m = re.fullmatch(r"--- pod (\S+), container (\S+)", line)
        if m:
            current = found.setdefault((m[1], m[2]), {})
        elif not line.strip():
            current = None
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return found


def node_devices(k: kube.Kube, node: str) -> int:
    """How many devices the driver publishes for the node (waiting for its first slices)."""

    def count() -> int:
        return sum(
            len(s["spec"].get("devices", []))
            for s in k.items("resourceslices", None, f"--field-selector=spec.driver={DRIVER}")
            if s["spec"].get("nodeName") == node
        )

    return int(k.wait(f"ResourceSlices of {DRIVER} on {node}", count, 60))


def test_demo_4_3_2(cluster: E2ECluster, tmp_path: Path) -> None:
    if node_devices(cluster.kube, cluster.node_name) != 8:
        pytest.skip("the scenario is written for a node with 8 GPUs")
    out = run_demo(cluster, tmp_path, "gpu-4-3-2")
    got = sections(out)
    sizes = {pod: len(kube.gpu_devices(env)) for (pod, _), env in got.items()}
    assert sizes == {"gpu-4": 4, "gpu-3": 3, "gpu-2": 2}
    first = set(kube.gpu_devices(got["gpu-4", "ctr"])) | set(kube.gpu_devices(got["gpu-3", "ctr"]))
    assert len(first) == 7, "gpu-4 and gpu-3 hold distinct GPUs"
    assert re.search(r"^scheduler: .*cannot allocate all claims", out, re.M), out
    for (pod, _), env in got.items():
        assert env["DRA_DRIVER_NAME"] == DRIVER
        assert env["DRA_NODE_NAME"] == cluster.node_name
        assert env["DRA_CLAIM"].startswith(f"dra-demo-432/{pod}-gpus-")
        for i in (d.removeprefix("gpu-") for d in kube.gpu_devices(env)):
            assert env[f"GPU_DEVICE_{i}_UUID"].startswith("GPU-")


def test_demo_shared_claim_opaque_config_cel_selector(cluster: E2ECluster, tmp_path: Path) -> None:
    out = run_demo(cluster, tmp_path, "shared-claim", "opaque-config", "cel-selector")
    got = sections(out)

    shared = {key: env for key, env in got.items() if key[0].startswith("shared-")}
    assert sorted(shared) == [("shared-a", "ctr-0"), ("shared-a", "ctr-1"), ("shared-b", "ctr")]
    views = {tuple(sorted(env.items())) for env in shared.values()}
    assert len(views) == 1, "every container of the shared claim sees the same GPU"
    (view,) = views
    env = dict(view)
    assert env["DRA_CLAIM"] == "dra-demo-shared/shared-gpu"
    assert len(kube.gpu_devices(env)) == 1

    env = got["configured", "ctr"]
    assert env["DEMO_MODE"] == "inference"
    strategies = {
        key.removesuffix("_SHARING_STRATEGY"): value
        for key, value in env.items()
        if key.endswith("_SHARING_STRATEGY")
    }
    assert sorted(strategies.values()) == ["Exclusive", "TimeSlicing"]
    (sliced,) = [k for k, v in strategies.items() if v == "TimeSlicing"]
    assert env[f"{sliced}_TIMESLICE_INTERVAL"] == "Long"

    env = got["low-index", "ctr"]
    assert kube.gpu_devices(env) == ["gpu-0", "gpu-1"]


@pytest.fixture
def chart_mode(cluster: E2ECluster) -> Iterator[Callable[[str], None]]:
    """Switch the chart's mock.gpuMode with `helm upgrade` (kind provider: the chart runs
    there); the default install comes back afterwards."""
    from tests.e2e.harness.kind import KindCluster

    kind = cluster.kind
    if not isinstance(kind, KindCluster):
        pytest.skip("switches the chart's mode: the kind provider's cluster only")

    def switch(mode: str) -> None:
        kind.script("kind-install.sh", "--set", f"mock.gpuMode={mode}")

    yield switch
    kind.script("kind-install.sh")


def test_demo_gpu_sharing_and_partitions_through_the_chart(
    cluster: E2ECluster, tmp_path: Path, chart_mode: Callable[[str], None]
) -> None:
    chart_mode("shared")
    out = run_demo(cluster, tmp_path / "shared", "gpu-sharing")
    got = sections(out)
    assert sorted(pod for pod, _ in got) == ["sharer-a", "sharer-b", "sharer-c"]
    shares = set()
    for env in got.values():
        assert kube.gpu_devices(env) == ["gpu-0"]
        assert env["GPU_DEVICE_0_MEMORY_LIMIT"] == "30Gi"
        assert env["GPU_DEVICE_0_COMPUTE_LIMIT"] == "10"
        shares.add(env["GPU_DEVICE_0_SHARE_ID"])
    assert len(shares) == 3, "every claim holds a share of its own"
    # 60 of gpu-0's 80Gi were taken: the third share waited for the scheduler's reason.
    assert re.search(r"^scheduler: .*cannot allocate all claims", out, re.M), out

    chart_mode("partitioned")
    got = sections(run_demo(cluster, tmp_path / "partitioned", "gpu-partitions"))
    halves = got["halves", "ctr"]
    names = sorted(v for k, v in halves.items() if re.fullmatch(r"GPU_DEVICE_\d+_HALF_\d", k))
    assert len(names) == 2 and all("-half-" in n for n in names), halves
    strategies = [v for k, v in halves.items() if k.endswith("_SHARING_STRATEGY")]
    assert strategies == ["TimeSlicing", "TimeSlicing"]
    quarter = got["quarter", "ctr"]
    assert [v for k, v in quarter.items() if re.fullmatch(r"GPU_DEVICE_\d+_QUARTER_\d", k)]
