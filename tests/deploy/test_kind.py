"""The kind workflow's static parts: kind-config.yaml and the hack/ scripts.

The workflow itself runs on a real kind cluster in the kind e2e provider
(test_kind_workflow.py); this checks, without a cluster, that the config asks for a
DRA-capable Kubernetes and CDI in containerd, and that the scripts are in place,
executable, and agree with the chart and the demo.
"""

from __future__ import annotations

import os
import re
import tomllib

import yaml

from .conftest import CHART, HACK, REPO_ROOT

KIND_CONFIG = REPO_ROOT / "kind-config.yaml"
SCRIPTS = ["kind-up.sh", "kind-load.sh", "kind-install.sh", "demo.sh", "kind-down.sh"]


def test_kind_config_pins_a_dra_ga_node_image_by_digest() -> None:
    cfg = yaml.safe_load(KIND_CONFIG.read_text())
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    roles = [n["role"] for n in cfg["nodes"]]
    # One node (kind untaints it): the driver and every demo pod share its 8 mock GPUs, so
    # the 4 + 3 + 2 demo's third pod has to wait.
    assert roles == ["control-plane"]
    for node in cfg["nodes"]:
        m = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
        assert m, node["image"]
        assert int(m[1]) >= 34, "resource.k8s.io/v1 (DRA GA) is served from 1.34"
    # DRA is on by default from 1.34: no gates or runtime config to keep in step.
    assert "featureGates" not in cfg and "runtimeConfig" not in cfg


def test_kind_config_turns_on_cdi_in_containerd() -> None:
    cfg = yaml.safe_load(KIND_CONFIG.read_text())
    (patch,) = cfg["containerdConfigPatches"]
    cri = tomllib.loads(patch)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["enable_cdi"] is True
    assert "/var/run/cdi" in cri["cdi_spec_dirs"]
    # Harmless anywhere, needed where root lacks CAP_SYS_RESOURCE (tests/e2e/harness/engine.py)
    assert cri["restrict_oom_score_adj"] is True
    (kubelet,) = [yaml.safe_load(p) for p in cfg["kubeadmConfigPatches"]]
    assert kubelet == {"kind": "KubeletConfiguration", "failCgroupV1": False}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["cdiRoot"] in cri["cdi_spec_dirs"]


def test_kind_scripts_are_executable_and_strict() -> None:
    for name in [*SCRIPTS, "install-helm.sh", "install-hadolint.sh", "render-manifests.sh"]:
        path = HACK / name
        assert os.access(path, os.X_OK), f"{path} is not executable"
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "set -euo pipefail" in text, name


def test_scripts_use_the_charts_names() -> None:
    lib = (HACK / "lib.sh").read_text()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f'IMAGE_REPOSITORY="${{IMAGE_REPOSITORY:-{values["image"]["repository"]}}}"' in lib
    assert f'DRIVER_NAME="${{DRIVER_NAME:-{values["driverName"]}}}"' in lib
    assert 'KIND_CLUSTER_NAME="${KIND_CLUSTER_NAME:-dra-cdi-driver}"' in lib
    assert yaml.safe_load(KIND_CONFIG.read_text())["name"] == "dra-cdi-driver"
    assert chart["appVersion"]  # the image tag hack/kind-load.sh builds (chart_app_version)
