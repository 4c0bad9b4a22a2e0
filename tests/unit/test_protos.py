"""Our .proto files must stay wire-identical to the kubelet's, and the stubs fresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from dra_cdi_driver.kubelet.pb import (
    kubelet_dra_v1_pb2,
    kubelet_dra_v1beta1_pb2,
    pluginregistration_v1_pb2,
)

REPO = Path(__file__).resolve().parents[2]
STRING, BOOL, MESSAGE = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_MESSAGE,
)

# The kubelet's interface facts: message -> {field: (number, type, repeated)}.
DRA_MESSAGES = {
    "Claim": {
        "namespace": (1, STRING, False),
        "uid": (2, STRING, False),
        "name": (3, STRING, False),
    },
    "NodePrepareResourcesRequest": {"claims": (1, MESSAGE, True)},
    "NodePrepareResourcesResponse": {"claims": (1, MESSAGE, True)},
    "NodePrepareResourceResponse": {"devices": (1, MESSAGE, True), "error": (2, STRING, False)},
    "Device": {
        "request_names": (1, STRING, True),
        "pool_name": (2, STRING, False),
        "device_name": (3, STRING, False),
        "cdi_device_ids": (4, STRING, True),
    },
    "NodeUnprepareResourcesRequest": {"claims": (1, MESSAGE, True)},
    "NodeUnprepareResourcesResponse": {"claims": (1, MESSAGE, True)},
    "NodeUnprepareResourceResponse": {"error": (1, STRING, False)},
}


def _fields(message: object) -> dict[str, tuple[int, int, bool]]:
    descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
    return {f.name: (f.number, f.type, f.is_repeated) for f in descriptor.fields}


@pytest.mark.parametrize(
    ("module", "package"),
    [
        (kubelet_dra_v1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1"),
        (kubelet_dra_v1beta1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1beta1"),
    ],
)
def test_dra_messages_match_the_kubelet(module: object, package: str) -> None:
    file = module.DESCRIPTOR  # type: ignore[attr-defined]
    assert file.package == package
    service = file.services_by_name["DRAPlugin"]
    assert service.full_name == f"{package}.DRAPlugin"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        "NodePrepareResources": ("NodePrepareResourcesRequest", "NodePrepareResourcesResponse"),
        "NodeUnprepareResources": (
            "NodeUnprepareResourcesRequest",
            "NodeUnprepareResourcesResponse",
        ),
    }
    for name, fields in DRA_MESSAGES.items():
        got = _fields(getattr(module, name))
        got.pop("share_id", None)
        assert got == fields, name
    # Response maps are keyed by claim UID (string) to the per-claim message.
    entry = module.NodePrepareResourcesResponse.DESCRIPTOR.fields_by_name["claims"].message_type  # type: ignore[attr-defined]
    assert entry.GetOptions().map_entry
    assert entry.fields_by_name["key"].type == STRING
    assert entry.fields_by_name["value"].message_type.name == "NodePrepareResourceResponse"


def test_share_id_is_an_optional_v1_field_only() -> None:
    field = kubelet_dra_v1_pb2.Device.DESCRIPTOR.fields_by_name["share_id"]
    assert (field.number, field.type) == (5, STRING)
    assert field.has_presence
    assert "share_id" not in kubelet_dra_v1beta1_pb2.Device.DESCRIPTOR.fields_by_name


def test_registration_matches_the_kubelet() -> None:
    file = pluginregistration_v1_pb2.DESCRIPTOR
    assert file.package == "pluginregistration"
    assert _fields(pluginregistration_v1_pb2.PluginInfo) == {
        "type": (1, STRING, False),
        "name": (2, STRING, False),
        "endpoint": (3, STRING, False),
        "supported_versions": (4, STRING, True),
    }
    assert _fields(pluginregistration_v1_pb2.RegistrationStatus) == {
        "plugin_registered": (1, BOOL, False),
        "error": (2, STRING, False),
    }
    methods = {m.name for m in file.services_by_name["Registration"].methods}
    assert methods == {"GetInfo", "NotifyRegistrationStatus"}


def test_generated_stubs_are_fresh() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the dev extra")
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, f"stale stubs; run `make protos`:\n{check.stderr}"


def test_resource_health_matches_the_kubelet() -> None:
    from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2 as pb

    assert pb.DESCRIPTOR.package == "v1alpha1"
    [method] = pb.DESCRIPTOR.services_by_name["DRAResourceHealth"].methods
    assert (method.name, method.server_streaming) == ("NodeWatchResources", True)
    assert _fields(pb.DeviceIdentifier) == {
        "pool_name": (1, STRING, False),
        "device_name": (2, STRING, False),
    }
    health = _fields(pb.DeviceHealth)
    assert health["device"] == (1, MESSAGE, False)
    assert health["last_updated_time"][0] == 3
    assert health["health_check_timeout_seconds"][0] == 4
    assert health["message"] == (5, STRING, False)
    assert dict(pb.HealthStatus.items()) == {"UNKNOWN": 0, "HEALTHY": 1, "UNHEALTHY": 2}
    assert _fields(pb.NodeWatchResourcesResponse) == {"devices": (1, MESSAGE, True)}
