"""The slice builder: what a node's pool looks like in each resource.k8s.io version."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from dra_cdi_driver.cdi import ContainerEdits
from dra_cdi_driver.devices import Device, Version
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.slices import (
    MAX_DEVICES_PER_SLICE,
    Slice,
    SliceError,
    build_slices,
    comparable,
    render_devices_report,
    slice_name,
)
from dra_cdi_driver.settings import Settings

DRIVER = "gpu.cdi.example.com"
NODE = "node-1"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def mock_devices(count: int) -> list[Device]:
    return MockSource(
        NODE, count, dev_dir=Path("/nonexistent"), lib_dir=Path("/nonexistent")
    ).discover()


def build(count: int, generation: int = 1, version: str = "v1") -> list[Slice]:
    return build_slices(
        mock_devices(count),
        driver=DRIVER,
        node=NODE,
        generation=generation,
        api_version=version,
        node_uid="uid-1",
    )


def test_129_devices_make_two_slices_of_one_pool() -> None:
    slices = build(129, generation=7)
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 1]
    for s in slices:
        spec = s["spec"]
        assert spec["driver"] == DRIVER
        assert spec["nodeName"] == NODE
        assert spec["pool"] == {
            "name": NODE,
            "generation": 7,
            "resourceSliceCount": 2,
        }
    names = [d["name"] for s in slices for d in s["spec"]["devices"]]
    assert names == [f"gpu-{i}" for i in range(129)], "natural order, each device once"


def test_exactly_128_devices_fit_one_slice() -> None:
    assert len(build(MAX_DEVICES_PER_SLICE)) == 1
    assert len(build(1024)) == 8


def test_no_devices_still_publish_one_empty_slice() -> None:
    (only,) = build(0)
    assert only["spec"]["devices"] == []
    assert only["spec"]["pool"]["resourceSliceCount"] == 1


def test_generation_changes_only_the_pool_generation() -> None:
    one, two = build(3, generation=1), build(3, generation=2)
    assert comparable(one[0]) != comparable(two[0])
    for s in two:
        s["spec"]["pool"]["generation"] = 1
    assert one == two


def test_v1_shape() -> None:
    device = build(1)[0]["spec"]["devices"][0]
    assert device["name"] == "gpu-0"
    assert device["attributes"]["index"] == {"int": 0}
    assert device["attributes"]["model"] == {"string": "Mock GPU 80GB"}
    assert device["attributes"]["driverVersion"] == {"version": "1.0.0"}
    assert device["capacity"] == {"memory": {"value": "80Gi"}}
    assert "basic" not in device


def test_v1beta2_shape_is_the_v1_shape() -> None:
    v1, v1beta2 = build(2, version="v1"), build(2, version="v1beta2")
    assert v1beta2[0]["apiVersion"] == "resource.k8s.io/v1beta2"
    assert v1[0]["spec"] == v1beta2[0]["spec"]


def test_v1beta1_nests_attributes_and_capacity_in_basic() -> None:
    s = build(1, version="v1beta1")[0]
    assert s["apiVersion"] == "resource.k8s.io/v1beta1"
    device = s["spec"]["devices"][0]
    assert set(device) == {"name", "basic"}
    assert device["basic"]["attributes"]["index"] == {"int": 0}
    assert device["basic"]["capacity"] == {"memory": {"value": "80Gi"}}


def test_attribute_types() -> None:
    device = Device(
        name="dev",
        attributes={"flag": True, "off": False, "n": 3, "s": "x", "v": Version("1.2.3")},
        capacity={},
        edits=ContainerEdits(env=("A=b",)),
    )
    (s,) = build_slices(
        [device], driver=DRIVER, node=NODE, generation=1, api_version="v1", node_uid=None
    )
    assert s["spec"]["devices"][0]["attributes"] == {
        "flag": {"bool": True},
        "off": {"bool": False},
        "n": {"int": 3},
        "s": {"string": "x"},
        "v": {"version": "1.2.3"},
    }
    assert "ownerReferences" not in s["metadata"]


def test_owner_is_the_node() -> None:
    (s,) = build(1)
    assert s["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "uid-1"}
    ]


def test_bad_quantity_is_refused_with_the_device_name() -> None:
    device = Device(
        name="dev", attributes={}, capacity={"memory": "lots"}, edits=ContainerEdits(env=("A=b",))
    )
    with pytest.raises(SliceError, match="device dev: capacity memory='lots'"):
        build_slices(
            [device], driver=DRIVER, node=NODE, generation=1, api_version="v1", node_uid=None
        )


@pytest.mark.parametrize(
    "node", [NODE, "ip-10-0-0-1.ec2.internal", "n" * 253, "a" * 200 + "." + "b" * 52]
)
def test_names_are_valid_unique_and_stable(node: str) -> None:
    names = [slice_name(DRIVER, node, i) for i in range(12)]
    for name in names:
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name
    assert len(set(names)) == len(names)
    assert names == [slice_name(DRIVER, node, i) for i in range(12)]


def test_names_of_different_pools_never_collide() -> None:
    # The readable part is the same ("a-b-c"); the hash keeps them apart.
    assert slice_name("c.example.com", "a-b", 0) != slice_name("b-c.example.com", "a", 0)
    assert slice_name(DRIVER, "n" * 253, 0) != slice_name(DRIVER, "n" * 252, 0)


def test_comparable_ignores_what_the_server_adds_or_canonicalizes() -> None:
    (ours,) = build_slices(
        [
            Device(
                name="d",
                attributes={"on": False, "n": 1},
                capacity={"mem": "1024Mi"},
                edits=ContainerEdits(env=("A=b",)),
            )
        ],
        driver=DRIVER,
        node=NODE,
        generation=1,
        api_version="v1",
        node_uid="u",
    )
    theirs = copy.deepcopy(ours)
    theirs["metadata"].update(
        resourceVersion="5", uid="x", creationTimestamp="t", managedFields=[{"manager": "m"}]
    )
    theirs["spec"]["devices"][0]["capacity"]["mem"]["value"] = "1Gi"
    theirs["spec"]["allNodes"] = False
    theirs["spec"]["devices"][0]["taints"] = []
    assert comparable(ours) == comparable(theirs)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["spec"]["devices"][0]["attributes"].update(n={"int": 2}),
        lambda s: s["spec"]["devices"][0]["attributes"].pop("on"),
        lambda s: s["spec"]["devices"][0]["capacity"]["mem"].update(value="2Gi"),
        lambda s: s["spec"]["devices"][0].update(taints=[{"key": "k", "effect": "NoSchedule"}]),
        lambda s: s["spec"]["devices"].append({"name": "intruder"}),
        lambda s: s["spec"]["pool"].update(resourceSliceCount=2),
        lambda s: s["spec"].update(nodeName="other"),
        lambda s: s["metadata"].update(ownerReferences=[]),
    ],
)
def test_comparable_sees_real_edits(edit: object) -> None:
    (ours,) = build_slices(
        [
            Device(
                name="d",
                attributes={"on": False, "n": 1},
                capacity={"mem": "1Gi"},
                edits=ContainerEdits(env=("A=b",)),
            )
        ],
        driver=DRIVER,
        node=NODE,
        generation=1,
        api_version="v1",
        node_uid="u",
    )
    theirs = copy.deepcopy(ours)
    edit(theirs)  # type: ignore[operator]
    assert comparable(ours) != comparable(theirs)


def test_comparable_reads_both_shapes_alike() -> None:
    v1, beta = build(3, version="v1")[0], build(3, version="v1beta1")[0]
    assert comparable(v1) == comparable(beta)


def settings(count: int) -> Settings:
    return Settings(
        driver_name=DRIVER,
        node_name=NODE,
        kubeconfig=None,
        cdi_root=Path("/var/run/cdi"),
        plugin_dir=Path("/p"),
        registrar_dir=Path("/r"),
        device_source="mock",
        mock_devices=count,
        mock_dev_dir=Path("/nonexistent"),
        mock_lib_dir=Path("/nonexistent"),
        mock_bin_dir=Path("/nonexistent"),
        log_level="info",
        log_format="text",
    )


def test_devices_report_shows_devices_and_the_v1_slices() -> None:
    text = render_devices_report(settings(130))
    assert text.startswith("#")
    assert "placeholder" in text  # says the owner uid is not real
    doc = yaml.safe_load(text)
    assert [d["name"] for d in doc["devices"]][:3] == ["gpu-0", "gpu-1", "gpu-2"]
    assert doc["devices"][0]["containerEdits"]["env"][0] == "GPU_DEVICE_0=gpu-0"
    assert [s["apiVersion"] for s in doc["resourceSlices"]] == ["resource.k8s.io/v1"] * 2
    assert [len(s["spec"]["devices"]) for s in doc["resourceSlices"]] == [128, 2]
    assert doc["resourceSlices"][0]["spec"]["devices"][0]["attributes"]["driverVersion"] == {
        "version": "1.0.0"
    }
