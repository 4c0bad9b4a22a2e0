"""Reading a ResourceClaim and the allocation the scheduler wrote into its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.config import ConfigEntry
from dra_cdi_driver.kube import REQUEST_TIMEOUT_S, RESOURCE_GROUP, NoApiError, ResourceApiVersion
from dra_cdi_driver.model import ClaimError, ClaimRef


@dataclass(frozen=True)
class AllocationResult:
    """One `status.allocation.devices.results[]` entry."""

    request: str  # may be "req/subreq"
    driver: str
    pool: str
    device: str
    admin_access: bool = False
    share_id: str | None = None


@dataclass(frozen=True)
class Allocation:
    results: tuple[AllocationResult, ...]
    config: tuple[ConfigEntry, ...]  # opaque entries for this driver only


class ClaimReader(Protocol):
    def read(self, claim: ClaimRef) -> dict[str, Any]:
        """The claim object as JSON; raises ClaimError when it cannot be had."""


class ApiClaimReader:
    """Reads claims through the kubernetes client, in the version the server serves."""

    def __init__(self, api: client.ApiClient | None) -> None:
        self._objects = client.CustomObjectsApi(api) if api is not None else None
        self._version = ResourceApiVersion(api) if api is not None else None

    def read(self, claim: ClaimRef) -> dict[str, Any]:
        if self._objects is None or self._version is None:
            raise ClaimError(
                claim,
                "no Kubernetes API is configured: start the driver with --kubeconfig "
                "(KUBECONFIG) or run it in a pod",
            )
        try:
            obj = self._objects.get_namespaced_custom_object(
                RESOURCE_GROUP,
                self._version.get(),
                claim.namespace,
                "resourceclaims",
                claim.name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as err:
            raise ClaimError(claim, _describe_api_error(err, claim)) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ClaimError(
                claim, f"cannot reach the API server ({err}); the kubelet will retry"
            ) from None
        except NoApiError as err:
            raise ClaimError(claim, str(err)) from None
        if not isinstance(obj, dict):
            raise ClaimError(claim, "the API server returned something that is not an object")
        return obj


def _describe_api_error(err: ApiException, claim: ClaimRef) -> str:
    if err.status == 404:
        return (
            f"ResourceClaim {claim.namespace}/{claim.name} does not exist "
            "(deleted after the pod was scheduled?)"
        )
    if err.status == 403:
        return (
            "forbidden: the driver's service account needs `get` on resourceclaims "
            f"({RESOURCE_GROUP}) in namespace {claim.namespace}"
        )
    return f"reading the ResourceClaim failed: HTTP {err.status} {err.reason}"


def parse_allocation(obj: dict[str, Any], claim: ClaimRef, driver_name: str) -> Allocation:
    """Check that `obj` is the claim the kubelet meant and is allocated; keep what is ours."""
    uid = (obj.get("metadata") or {}).get("uid")
    if uid != claim.uid:
        raise ClaimError(
            claim,
            f"UID mismatch: the API server has uid {uid} for {claim.namespace}/{claim.name}; "
            "the claim was deleted and re-created, so this pod's claim no longer exists",
        )
    allocation = (obj.get("status") or {}).get("allocation")
    if not allocation:
        raise ClaimError(claim, "not allocated: status.allocation is empty")
    try:
        devices = allocation.get("devices") or {}
        results = tuple(
            AllocationResult(
                request=_string(r, "request"),
                driver=_string(r, "driver"),
                pool=_string(r, "pool"),
                device=_string(r, "device"),
                admin_access=bool(r.get("adminAccess") or False),
                share_id=r.get("shareID"),
            )
            for r in devices.get("results") or ()
            if r.get("driver") == driver_name
        )
        config = tuple(
            ConfigEntry(
                index=i,
                source=str(c.get("source", "")),
                requests=tuple(c.get("requests") or ()),
                parameters=c["opaque"].get("parameters"),
            )
            for i, c in enumerate(devices.get("config") or ())
            if (c.get("opaque") or {}).get("driver") == driver_name
        )
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ClaimError(claim, f"malformed status.allocation.devices: {err}") from None
    return Allocation(results=results, config=config)


def _string(result: dict[str, Any], key: str) -> str:
    value = result.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"result field {key!r} is missing or not a string")
    return value
