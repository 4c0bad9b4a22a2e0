"""The ResourceSlice API as the publisher needs it: list, watch, create, replace, delete.

`SliceApi` is the interface (an in-memory fake implements it in unit tests);
`KubeSliceApi` speaks to the server through the kubernetes client, in the
resource.k8s.io version it serves, and turns API errors into messages that say
what to do (a 403 names the missing RBAC rule).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.kubeapi.client import (
    REQUEST_TIMEOUT_S,
    RESOURCE_GROUP,
    NoApiError,
    ResourceApiVersion,
)
from dra_cdi_driver.kubeapi.slices import Slice

PLURAL = "resourceslices"
SLICES = f"{PLURAL}.{RESOURCE_GROUP}"  # as RBAC rules name it
FIELD_MANAGER = "dra-cdi-driver"


class SliceApiError(Exception):
    """A failed API call, with a message that says what to do; `status` is the HTTP code
    (None when the server was not reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    name: str
    resource_version: str | None


class SliceApi(Protocol):
    """The calls the publisher makes, for one (driver, node). A fake implements it in
    tests; `KubeSliceApi` implements it with the kubernetes client. Every method raises
    SliceApiError on failure."""

    driver_name: str
    node_name: str

    def api_version(self) -> str:
        """The resource.k8s.io version to speak (discovered once)."""

    def node_uid(self) -> str:
        """The uid of the Node object of `node_name`."""

    def list_slices(self) -> list[Slice]:
        """The slices with spec.driver == driver_name and spec.nodeName == node_name."""

    def watch_slices(self, resource_version: str | None, timeout_s: int) -> Iterator[WatchEvent]:
        """Changes to those slices after `resource_version`; from the current state (one
        ADDED per existing slice first) when it is None. Raises status 410 when expired."""

    def create_slice(self, body: Slice) -> None: ...

    def replace_slice(self, body: Slice) -> None:
        """Update; body.metadata.resourceVersion makes it fail (409) if changed meanwhile."""

    def delete_slice(self, name: str, resource_version: str | None) -> None:
        """Delete (a slice already gone is fine)."""

    def close(self) -> None:
        """Interrupt a watch in progress (called from another thread on stop)."""


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _unreachable(err: Exception) -> SliceApiError:
    # urllib3 messages embed object addresses; strip them so one outage logs once.
    return SliceApiError(f"cannot reach the API server: {_ADDRESS.sub('', str(err))}")


def _status_message(err: ApiException) -> str:
    try:
        body = json.loads(err.body or "")
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or err.reason or "")


class KubeSliceApi:
    """`SliceApi` through the official client; objects are plain dicts in every version."""

    def __init__(
        self,
        api: client.ApiClient,
        driver_name: str,
        node_name: str,
        api_version: str | None = None,  # None: discover (v1, else v1beta2, else v1beta1)
    ) -> None:
        self.driver_name = driver_name
        self.node_name = node_name
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._discovery = ResourceApiVersion(api)
        self._forced_version = api_version
        self._watch: watch.Watch | None = None
        self._lock = threading.Lock()

    @property
    def field_selector(self) -> str:
        return f"spec.driver={self.driver_name},spec.nodeName={self.node_name}"

    def _call(self, verb: str, resource: str, fn: Callable[[], Any], name: str = "") -> Any:
        """Run one request; turn every failure into a SliceApiError that says what to do."""
        try:
            return fn()
        except ApiException as err:
            raise self._explain(err, verb, resource, name) from None
        except NoApiError as err:
            raise SliceApiError(str(err)) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _unreachable(err) from None

    def _explain(self, err: ApiException, verb: str, resource: str, name: str) -> SliceApiError:
        status = int(err.status or 0)
        message = _status_message(err)
        if status == 401:
            return SliceApiError(
                "unauthorized: the API server does not accept the driver's credentials "
                f"(expired token, or a kubeconfig for another cluster): {message}",
                status,
            )
        if status == 403:
            return SliceApiError(
                f"forbidden: the driver's service account needs `{verb}` on {resource} "
                f"(add it to the driver's ClusterRole): {message}",
                status,
            )
        if status == 404 and resource == "nodes":
            return SliceApiError(
                f"Node {self.node_name!r} does not exist: --node-name must be this node's "
                "name in the API server (ResourceSlices are owned by their Node)",
                status,
            )
        what = f"{verb} {resource}" + (f" {name}" if name else "")
        if status == 422:
            return SliceApiError(f"{what}: the API server rejected the slice: {message}", status)
        return SliceApiError(f"{what}: HTTP {status}: {message}", status)

    def api_version(self) -> str:
        if self._forced_version:
            return self._forced_version
        version: str = self._call("get", "the API discovery (/apis)", self._discovery.get)
        return version

    def node_uid(self) -> str:
        node = self._call(
            "get",
            "nodes",
            lambda: self._core.read_node(self.node_name, _request_timeout=REQUEST_TIMEOUT_S),
            self.node_name,
        )
        return str(node.metadata.uid)

    def list_slices(self) -> list[Slice]:
        version = self.api_version()
        listed = self._call(
            "list",
            SLICES,
            lambda: self._objects.list_cluster_custom_object(
                RESOURCE_GROUP,
                version,
                PLURAL,
                field_selector=self.field_selector,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )
        return list(listed.get("items") or [])

    def watch_slices(self, resource_version: str | None, timeout_s: int) -> Iterator[WatchEvent]:
        version = self.api_version()
        w = watch.Watch()
        with self._lock:
            self._watch = w
        kwargs: dict[str, Any] = {
            "field_selector": self.field_selector,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_s,
            # A read timeout past the server's own end of the watch: a dead connection
            # surfaces as an error instead of a watch that silently never reports.
            "_request_timeout": (REQUEST_TIMEOUT_S, timeout_s + 30),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        stream = w.stream(
            self._objects.list_cluster_custom_object, RESOURCE_GROUP, version, PLURAL, **kwargs
        )
        try:
            while True:
                event = self._call("watch", SLICES, lambda: next(stream, None))
                if event is None:
                    return
                obj = event.get("raw_object") or {}
                meta = obj.get("metadata") or {}
                yield WatchEvent(
                    str(event.get("type")), str(meta.get("name") or ""), meta.get("resourceVersion")
                )
        finally:
            with self._lock:
                self._watch = None
            w.stop()

    def create_slice(self, body: Slice) -> None:
        name = body["metadata"]["name"]
        self._call(
            "create",
            SLICES,
            lambda: self._objects.create_cluster_custom_object(
                RESOURCE_GROUP,
                self.api_version(),
                PLURAL,
                body,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
            name,
        )

    def replace_slice(self, body: Slice) -> None:
        name = body["metadata"]["name"]
        self._call(
            "update",
            SLICES,
            lambda: self._objects.replace_cluster_custom_object(
                RESOURCE_GROUP,
                self.api_version(),
                PLURAL,
                name,
                body,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
            name,
        )

    def delete_slice(self, name: str, resource_version: str | None) -> None:
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version)
            if resource_version
            else None
        )
        try:
            self._call(
                "delete",
                SLICES,
                lambda: self._objects.delete_cluster_custom_object(
                    RESOURCE_GROUP,
                    self.api_version(),
                    PLURAL,
                    name,
                    body=options,
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
                name,
            )
        except SliceApiError as err:
            if err.status != 404:
                raise

    def close(self) -> None:
        with self._lock:
            w = self._watch
        if w is not None:
            w.stop()
