"""The DRAPlugin gRPC service, v1 and v1beta1: thin adapters over one driver core.

The two versions have identical messages except `Device.share_id` (v1 only),
so one adapter class serves both, parameterised by the generated module.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from dra_cdi_driver.driver import Driver
from dra_cdi_driver.kubelet.pb import kubelet_dra_v1_pb2, kubelet_dra_v1beta1_pb2
from dra_cdi_driver.limits import ANSWER_MARGIN_S, DEFAULT_CALL_BUDGET_S
from dra_cdi_driver.model import ClaimError, ClaimRef

VERSIONS: dict[str, ModuleType] = {"v1": kubelet_dra_v1_pb2, "v1beta1": kubelet_dra_v1beta1_pb2}


class DraService:
    def __init__(self, pb: ModuleType, driver: Driver) -> None:
        self._pb = pb
        self._driver = driver
        self._has_share_id = "share_id" in pb.Device.DESCRIPTOR.fields_by_name

    def NodePrepareResources(self, request: Any, context: Any) -> Any:
        outcomes = self._driver.prepare(_claim_refs(request), _deadline(context))
        response = self._pb.NodePrepareResourcesResponse()
        for uid, outcome in outcomes.items():
            entry = response.claims[uid]
            if isinstance(outcome, ClaimError):
                entry.error = str(outcome)
                continue
            for device in outcome.devices:
                out = entry.devices.add(
                    request_names=device.request_names,
                    pool_name=device.pool,
                    device_name=device.device,
                    cdi_device_ids=device.cdi_device_ids,
                )
                if device.share_id and self._has_share_id:
                    out.share_id = device.share_id
        return response

    def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        outcomes = self._driver.unprepare(_claim_refs(request), _deadline(context))
        response = self._pb.NodeUnprepareResourcesResponse()
        for uid, error in outcomes.items():
            response.claims[uid].error = str(error) if error else ""
        return response


def _deadline(context: Any) -> float | None:
    """When the answer must be sent (time.monotonic()): the caller's gRPC deadline less a
    margin to send it in; None (the driver's default budget) when the caller set none."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return None
    margin = min(ANSWER_MARGIN_S, remaining / 10)
    return time.monotonic() + min(remaining - margin, DEFAULT_CALL_BUDGET_S)


def _claim_refs(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in request.claims]
