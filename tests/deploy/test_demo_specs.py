"""The demo specs ask for what the driver offers, in the shape the API wants.

No cluster here: the objects are checked against what the driver accepts (its GpuConfig
parser, its mock devices' attributes) and against each other (pods name claims that exist).
test_cluster_demo.py runs them on a real cluster.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from dra_cdi_driver.config import parse as parse_config
from dra_cdi_driver.devices.mock import MockSource

from .conftest import REPO_ROOT, Obj

DEMO = REPO_ROOT / "demo"
DRIVER = "gpu.cdi.example.com"
SCENARIOS = [
    "gpu-4-3-2",
    "shared-claim",
    "opaque-config",
    "cel-selector",
    "device-plugin-pods",
    "gpu-sharing",
    "gpu-partitions",
]


def load(name: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all((DEMO / f"{name}.yaml").read_text()) if d]


def claim_specs(objs: list[Obj]) -> dict[str, Obj]:
    """name -> claim spec, for ResourceClaims and ResourceClaimTemplates."""
    out = {}
    for o in objs:
        if o["kind"] == "ResourceClaim":
            out[o["metadata"]["name"]] = o["spec"]
        elif o["kind"] == "ResourceClaimTemplate":
            out[o["metadata"]["name"]] = o["spec"]["spec"]
    return out


def test_every_scenario_is_there_and_hack_demo_runs_it() -> None:
    assert sorted(p.stem for p in DEMO.glob("*.yaml")) == sorted(SCENARIOS)
    script = (REPO_ROOT / "hack" / "demo.sh").read_text()
    for name in SCENARIOS:
        assert name in script


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_is_one_namespace_of_v1_objects(name: str) -> None:
    objs = load(name)
    assert objs[0]["kind"] == "Namespace"
    namespace = objs[0]["metadata"]["name"]
    for o in objs[1:]:
        assert o["metadata"]["namespace"] == namespace, o["metadata"]
        if o["apiVersion"].startswith("resource.k8s.io/"):
            assert o["apiVersion"] == "resource.k8s.io/v1"


@pytest.mark.parametrize("name", SCENARIOS)
def test_requests_use_the_driver_class_and_pods_use_existing_claims(name: str) -> None:
    objs = load(name)
    claims = claim_specs(objs)
    assert claims
    for spec in claims.values():
        for request in spec["devices"]["requests"]:
            assert set(request) == {"name", "exactly"}
            assert request["exactly"]["deviceClassName"] == DRIVER
    pods = [o for o in objs if o["kind"] == "Pod"]
    assert pods
    for pod in pods:
        sources = {c["name"]: c for c in pod["spec"].get("resourceClaims", [])}
        for source in sources.values():
            ref = source.get("resourceClaimTemplateName") or source.get("resourceClaimName")
            assert ref in claims
        for ctr in pod["spec"]["containers"]:
            used = [c["name"] for c in ctr["resources"].get("claims", [])]
            assert set(used) <= set(sources)
            if name == "device-plugin-pods":
                continue  # the classic pods, unchanged: hack/demo.sh execs into them
            assert used
            # Every container prints what it got, then the marker hack/demo.sh waits for.
            script = " ".join(ctr["args"])
            assert "env | grep -E '^(GPU_DEVICE|DRA_" in script and 'echo "---"' in script


def test_device_plugin_pods_ask_as_the_classic_set_up_did() -> None:
    pods = {o["metadata"]["name"]: o for o in load("device-plugin-pods") if o["kind"] == "Pod"}
    wanted = {"ubuntu1": "4", "ubuntu2": "3", "ubuntu3": "2"}
    for name, count in wanted.items():
        (ctr,) = pods[name]["spec"]["containers"]
        assert ctr["image"] == "ubuntu:latest"
        assert ctr["resources"] == {
            "requests": {"memory": "64Mi", "cpu": "250m", "mock.com/gpu": count},
            "limits": {"memory": "128Mi", "cpu": "500m", "mock.com/gpu": count},
        }
    (ctr,) = pods["mixed"]["spec"]["containers"]
    assert ctr["resources"]["limits"] == {"mock.com/gpu": "1"}
    assert ctr["resources"]["claims"] == [{"name": "gpu"}]


def test_opaque_config_is_valid_for_the_driver() -> None:
    spec = claim_specs(load("opaque-config"))["gpus-configured"]
    parsed: dict[str, Any] = {}
    for entry in spec["devices"]["config"]:
        assert entry["opaque"]["driver"] == DRIVER
        cfg = parse_config(entry["opaque"]["parameters"])
        for request in entry["requests"]:
            parsed[request] = cfg
    assert parsed["shared"].sharing == "TimeSlicing"
    assert parsed["shared"].time_slice == "Long"
    assert parsed["exclusive"].sharing == "Exclusive"
    assert all(c.env == {"DEMO_MODE": "inference"} for c in parsed.values())


def test_cel_selector_names_attributes_the_mock_gpus_have() -> None:
    spec = claim_specs(load("cel-selector"))["low-index-gpus"]
    (request,) = spec["devices"]["requests"]
    (selector,) = request["exactly"]["selectors"]
    expression = selector["cel"]["expression"]
    device = MockSource("node", 1).discover()[0]
    for name in re.findall(r'attributes\["[^"]+"\]\.(\w+)', expression):
        assert name in device.attributes
    for name in re.findall(r'capacity\["[^"]+"\]\.(\w+)', expression):
        assert name in device.capacity
    assert f'attributes["{DRIVER}"].index < 2' in expression


def test_4_3_2_steps_add_one_pod_each() -> None:
    objs = load("gpu-4-3-2")
    steps: dict[str, list[str]] = {}
    for o in objs:
        steps.setdefault(o["metadata"]["labels"]["dra-demo/step"], []).append(o["kind"])
    assert steps == {
        "1": ["Namespace"] + ["ResourceClaimTemplate"] * 3,
        "2": ["Pod"],
        "3": ["Pod"],
        "4": ["Pod"],
    }
    counts = [
        claim_specs(objs)[p["spec"]["resourceClaims"][0]["resourceClaimTemplateName"]]["devices"][
            "requests"
        ][0]["exactly"]["count"]
        for p in objs
        if p["kind"] == "Pod"
    ]
    assert counts == [4, 3, 2]
