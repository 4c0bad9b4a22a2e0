"""Reading a ResourceClaim and the allocation the scheduler wrote into its status."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from dra_cdi_driver.config import ConfigEntry
from dra_cdi_driver.kubeapi.client import (
    REQUEST_TIMEOUT_S,
    RESOURCE_GROUP,
    NoApiError,
    ResourceApiVersion,
)
from dra_cdi_driver.limits import MAX_CONFIG_ENTRIES, MAX_OPAQUE_DEPTH, MAX_RESULTS_PER_CLAIM
from dra_cdi_driver.model import ClaimError, ClaimRef
from dra_cdi_driver.validation import is_uid


@dataclass(frozen=True)
class AllocationResult:
    """One `status.allocation.devices.results[]` entry."""

    request: str  # may be "req/subreq"
    driver: str
    pool: str
    device: str
    admin_access: bool = False
    share_id: str | None = None  # a share of a shareable device (consumable capacity)
    consumed_capacity: Mapping[str, str] = field(default_factory=dict)  # name -> quantity


@dataclass(frozen=True)
class Allocation:
    results: tuple[AllocationResult, ...]
    config: tuple[ConfigEntry, ...]  # opaque entries for this driver only


class ClaimReader(Protocol):
    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        """The claim object as JSON within `timeout` seconds; raises ClaimError when it
        cannot be had."""


class ApiClaimReader:
    """Reads claims through the kubernetes client, in the version the server serves."""

    def __init__(self, api: client.ApiClient | None) -> None:
        self._objects = client.CustomObjectsApi(api) if api is not None else None
        self._version = ResourceApiVersion(api) if api is not None else None

    def read(self, claim: ClaimRef, timeout: float) -> dict[str, Any]:
        if self._objects is None or self._version is None:
            raise ClaimError(
                claim,
                "no Kubernetes API is configured: start the driver with --kubeconfig "
                "(KUBECONFIG) or run it in a pod",
            )
        limit = max(0.1, min(REQUEST_TIMEOUT_S, timeout))
        try:
            obj = self._objects.get_namespaced_custom_object(
                RESOURCE_GROUP,
                self._version.get(),
                claim.namespace,
                "resourceclaims",
                claim.name,
                _request_timeout=limit,
            )
        except ApiException as err:
            raise ClaimError(claim, _describe_api_error(err, claim)) from None
        except urllib3.exceptions.TimeoutError:
            raise ClaimError(
                claim,
                "timed out reading the claim from the API server "
                f"(no answer within {limit:.1f} s); the kubelet will retry",
                timed_out=True,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ClaimError(
                claim, f"cannot reach the API server ({err}); the kubelet will retry"
            ) from None
        except NoApiError as err:
            raise ClaimError(claim, str(err)) from None
        except ValueError as err:  # not JSON, or not UTF-8: a proxy's error page, a broken server
            raise ClaimError(
                claim, f"the API server's answer is not JSON ({err}); the kubelet will retry"
            ) from None
        except RecursionError:  # the client decodes JSON recursively; a user can nest deeper
            raise ClaimError(
                claim,
                "the ResourceClaim is nested too deeply to decode (opaque parameters may "
                f"nest at most {MAX_OPAQUE_DEPTH} levels): fix the claim or its DeviceClass",
            ) from None
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
    """Check that `obj` is the claim the kubelet meant and is allocated; keep what is ours.

    Every field that is used is checked for its type and shape first: the object comes
    from the API server, but nothing about it is trusted.
    """
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    if uid != claim.uid:
        shown = uid if isinstance(uid, str) and is_uid(uid) else "that is not a UUID"
        raise ClaimError(
            claim,
            f"UID mismatch: the API server has uid {shown} for {claim.namespace}/{claim.name}; "
            "the claim was deleted and re-created, so this pod's claim no longer exists",
        )
    status = obj.get("status")
    allocation = status.get("allocation") if isinstance(status, dict) else None
    if not allocation:
        raise ClaimError(claim, "not allocated: status.allocation is empty")
    if not isinstance(allocation, dict):
        raise ClaimError(claim, "malformed status.allocation: not an object")
    try:
        devices = _object(allocation, "devices")
        results = _list(devices, "results", MAX_RESULTS_PER_CLAIM)
        configs = _list(devices, "config", MAX_CONFIG_ENTRIES)
        ours = tuple(
            _result(r, f"results[{i}]")
            for i, r in enumerate(results)
            if isinstance(r, dict) and r.get("driver") == driver_name
        )
        config = tuple(
            _config(c, f"config[{i}]", i)
            for i, c in enumerate(configs)
            if isinstance(c, dict)
            and _object(c, "opaque", f"config[{i}].").get("driver") == driver_name
        )
    except ValueError as err:
        raise ClaimError(claim, f"malformed status.allocation.devices.{err}") from None
    return Allocation(results=ours, config=config)


# The shapes the API server gives these fields (resource.k8s.io validation): request names
# are DNS labels ("req" or "req/subreq"), device names DNS labels, pool names DNS
# subdomains joined by "/".
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_REQUEST = re.compile(rf"{_LABEL}(/{_LABEL})?")
_POOL = re.compile(rf"{_LABEL}(\.{_LABEL})*(/{_LABEL}(\.{_LABEL})*)*")
_POOL_MAX = 253


def _object(parent: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}{key}: not an object")
    return value


def _list(parent: dict[str, Any], key: str, limit: int) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{key}: not a list")
    if len(value) > limit:
        raise ValueError(f"{key}: {len(value)} entries, more than the API allows ({limit})")
    return value


def _field(entry: dict[str, Any], where: str, key: str, shape: re.Pattern[str], limit: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or len(value) > limit or not shape.fullmatch(value):
        raise ValueError(f"{where}.{key}: missing, or not a valid name")
    return value


def _result(entry: dict[str, Any], where: str) -> AllocationResult:
    share_id = entry.get("shareID")
    if share_id is not None and not (isinstance(share_id, str) and is_uid(share_id)):
        raise ValueError(f"{where}.shareID: not a UUID")
    admin_access = entry.get("adminAccess")
    if admin_access is not None and not isinstance(admin_access, bool):
        raise ValueError(f"{where}.adminAccess: not a boolean")
    return AllocationResult(
        request=_field(entry, where, "request", _REQUEST, 127),
        driver=str(entry["driver"]),
        pool=_field(entry, where, "pool", _POOL, _POOL_MAX),
        device=_field(entry, where, "device", re.compile(_LABEL), 63),
        admin_access=bool(admin_access),
        share_id=share_id,
        consumed_capacity=_consumed_capacity(entry, where),
    )


# A capacity name as the API writes it: `[domain/]name`, like attribute names.
_CAPACITY_NAME = re.compile(rf"({_LABEL}(\.{_LABEL})*/)?[A-Za-z_][A-Za-z0-9_]{{0,31}}")


def _consumed_capacity(entry: dict[str, Any], where: str) -> dict[str, str]:
    consumed = _object(entry, "consumedCapacity", f"{where}.")
    if len(consumed) > MAX_RESULTS_PER_CLAIM:
        raise ValueError(f"{where}.consumedCapacity: more than {MAX_RESULTS_PER_CLAIM} entries")
    out: dict[str, str] = {}
    for name, quantity in consumed.items():
        if not _CAPACITY_NAME.fullmatch(name) or not _quantity(quantity):
            raise ValueError(f"{where}.consumedCapacity: not a capacity name and a quantity")
        out[name] = quantity
    return out


def _quantity(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        parse_quantity(value)
    except (ValueError, ArithmeticError):
        return False
    return True


def _config(entry: dict[str, Any], where: str, index: int) -> ConfigEntry:
    requests = _list(entry, "requests", MAX_RESULTS_PER_CLAIM)
    for j, request in enumerate(requests):
        if not isinstance(request, str) or len(request) > 127 or not _REQUEST.fullmatch(request):
            raise ValueError(f"{where}.requests[{j}]: not a valid request name")
    source = entry.get("source", "")
    if source not in ("FromClass", "FromClaim"):
        raise ValueError(f"{where}.source: not FromClass or FromClaim")
    return ConfigEntry(
        index=index,
        source=source,
        requests=tuple(requests),
        parameters=_object(entry, "opaque", f"{where}.").get("parameters"),
    )
