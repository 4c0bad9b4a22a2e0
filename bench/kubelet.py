"""Plays the kubelet over gRPC: plugin registration, then the DRA v1 service of a driver.

The same calls, in the same order, as kubelet 1.34+: GetInfo on the registration socket,
NotifyRegistrationStatus(registered), then NodePrepareResources / NodeUnprepareResources on
the endpoint the plugin named, with the kubelet's 45 s timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.allocate import ClaimRef
from dra_cdi_driver.kubelet.pb import (
    kubelet_dra_v1_pb2,
    kubelet_dra_v1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)

CALL_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class PluginInfo:
    name: str
    endpoint: str
    versions: tuple[str, ...]


def get_info(registration_socket: Path, timeout_s: float = 2.0) -> PluginInfo:
    """GetInfo on the registration socket; raises grpc.RpcError while nobody answers."""
    with grpc.insecure_channel(f"unix://{registration_socket}") as channel:
        stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
        info = stub.GetInfo(pluginregistration_v1_pb2.InfoRequest(), timeout=timeout_s)
        return PluginInfo(info.name, info.endpoint, tuple(info.supported_versions))


def notify_registered(registration_socket: Path) -> None:
    with grpc.insecure_channel(f"unix://{registration_socket}") as channel:
        stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
        stub.NotifyRegistrationStatus(
            pluginregistration_v1_pb2.RegistrationStatus(plugin_registered=True), timeout=5
        )


class DraClient:
    """One connection to a plugin's DRA socket, shared by every caller thread."""

    def __init__(self, endpoint: str) -> None:
        self._channel = grpc.insecure_channel(f"unix://{endpoint}")
        self._stub = kubelet_dra_v1_pb2_grpc.DRAPluginStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def prepare(self, claims: Sequence[ClaimRef]) -> list[str]:
        """NodePrepareResources; returns the claims' errors (empty when all were prepared)."""
        request = kubelet_dra_v1_pb2.NodePrepareResourcesRequest(claims=_claims(claims))
        response = self._stub.NodePrepareResources(request, timeout=CALL_TIMEOUT_S)
        return _errors(claims, response.claims, need_devices=True)

    def unprepare(self, claims: Sequence[ClaimRef]) -> list[str]:
        request = kubelet_dra_v1_pb2.NodeUnprepareResourcesRequest(claims=_claims(claims))
        response = self._stub.NodeUnprepareResources(request, timeout=CALL_TIMEOUT_S)
        return _errors(claims, response.claims, need_devices=False)


def _claims(claims: Sequence[ClaimRef]) -> list[kubelet_dra_v1_pb2.Claim]:
    return [kubelet_dra_v1_pb2.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


def _errors(
    claims: Sequence[ClaimRef], answers: Mapping[str, Any], *, need_devices: bool
) -> list[str]:
    """What the kubelet would treat as failed: a missing answer, an error, no CDI device."""
    problems: list[str] = []
    for claim in claims:
        answer = answers.get(claim.uid)
        if answer is None:
            problems.append(f"{claim.name}: no answer")
        elif answer.error:
            problems.append(f"{claim.name}: {answer.error}")
        elif need_devices and not any(d.cdi_device_ids for d in answer.devices):
            problems.append(f"{claim.name}: no CDI device")
    return problems
