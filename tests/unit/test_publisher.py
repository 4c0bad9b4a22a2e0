"""The publisher against an in-memory API that behaves like the server where it matters:
resourceVersions and conflicts, field-selected lists, watch events, canonical quantities.

The same behaviour is checked against a real kube-apiserver in
tests/integration/test_publisher_apiserver.py when its binaries are cached.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.publisher import Publisher
from dra_cdi_driver.kubeapi.slice_api import KubeSliceApi, SliceApiError, WatchEvent
from dra_cdi_driver.kubeapi.slices import (
    CONSUMABLE_CAPACITY,
    PARTITIONABLE,
    Slice,
    slice_name,
    without,
)

DRIVER = "gpu.cdi.example.com"
NODE = "node-1"


class FakeSliceApi:
    """A `SliceApi` over a dict of every slice "in the cluster" (ours and others')."""

    def __init__(self, version: str = "v1") -> None:
        self.driver_name = DRIVER
        self.node_name = NODE
        self.version = version
        self.objects: dict[str, Slice] = {}
        self.writes: Counter[str] = Counter()
        # method -> what its next calls do, in turn: raise the error, or (None) succeed
        self.fail: dict[str, list[SliceApiError | None]] = {}
        self.node = "node-uid-1"
        self._rv = 0
        self._lock = threading.Lock()
        self._watchers: list[queue.Queue[WatchEvent | None]] = []
        self.watch_calls: list[str | None] = []
        self.drops: set[str] = set()  # DRA features whose fields this "server" drops

    # -- test helpers --

    def ours(self) -> dict[str, Slice]:
        with self._lock:
            return {n: copy.deepcopy(s) for n, s in self.objects.items() if self._ours(s)}

    def _ours(self, s: Slice) -> bool:
        spec = s.get("spec") or {}
        return bool(spec.get("driver") == DRIVER and spec.get("nodeName") == NODE)

    def put(self, obj: Slice, event: str = "MODIFIED") -> None:
        """Someone else writes an object (the kubelet, an admin, another driver)."""
        with self._lock:
            self._store(copy.deepcopy(obj), event)

    def remove(self, name: str) -> None:
        with self._lock:
            obj = self.objects.pop(name)
            self._emit("DELETED", obj)

    def _store(self, obj: Slice, event: str) -> Slice:
        obj = without(obj, self.drops)  # a gate that is off: the server drops its fields
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        obj["metadata"].setdefault("uid", f"uid-{self._rv}")
        # What the real server does to what we send: canonical quantities.
        for device in obj.get("spec", {}).get("devices") or []:
            body = device.get("basic", device)
            for entry in (body.get("capacity") or {}).values():
                if entry.get("value") == "1024Mi":
                    entry["value"] = "1Gi"
        self.objects[obj["metadata"]["name"]] = obj
        self._emit(event, obj)
        return obj

    def _emit(self, kind: str, obj: Slice) -> None:
        if self._ours(obj):
            event = WatchEvent(kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"])
            for q in self._watchers:
                q.put(event)

    def _maybe_fail(self, method: str) -> None:
        errors = self.fail.get(method)
        error = errors.pop(0) if errors else None
        if error is not None:
            raise error

    # -- SliceApi --

    def api_version(self) -> str:
        self._maybe_fail("api_version")
        return self.version

    def node_uid(self) -> str:
        self._maybe_fail("node_uid")
        return self.node

    def list_slices(self) -> list[Slice]:
        self._maybe_fail("list")
        return list(self.ours().values())

    def watch_slices(self, resource_version: str | None, timeout_s: int) -> Iterator[WatchEvent]:
        self.watch_calls.append(resource_version)
        self._maybe_fail("watch")
        q: queue.Queue[WatchEvent | None] = queue.Queue()
        with self._lock:
            if resource_version is None:
                for s in self.objects.values():
                    if self._ours(s):
                        q.put(
                            WatchEvent(
                                "ADDED", s["metadata"]["name"], s["metadata"]["resourceVersion"]
                            )
                        )
            self._watchers.append(q)
        try:
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    event = q.get(timeout=left)
                except queue.Empty:
                    return
                if event is None:
                    return
                yield event
        finally:
            with self._lock:
                self._watchers.remove(q)

    def create_slice(self, body: Slice) -> None:
        self._maybe_fail("create")
        with self._lock:
            name = body["metadata"]["name"]
            if name in self.objects:
                raise SliceApiError(f"create {name}: already exists", 409)
            self.writes["create"] += 1
            self._store(copy.deepcopy(body), "ADDED")

    def replace_slice(self, body: Slice) -> None:
        self._maybe_fail("replace")
        with self._lock:
            name = body["metadata"]["name"]
            current = self.objects.get(name)
            if current is None:
                raise SliceApiError(f"update {name}: not found", 404)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise SliceApiError(f"update {name}: the object has been modified", 409)
            self.writes["replace"] += 1
            self._store(copy.deepcopy(body), "MODIFIED")

    def delete_slice(self, name: str, resource_version: str | None) -> None:
        self._maybe_fail("delete")
        with self._lock:
            current = self.objects.get(name)
            if current is None:
                return
            if resource_version and resource_version != current["metadata"]["resourceVersion"]:
                raise SliceApiError(f"delete {name}: the object has been modified", 409)
            self.writes["delete"] += 1
            del self.objects[name]
            self._emit("DELETED", current)

    def close(self) -> None:
        with self._lock:
            for q in self._watchers:
                q.put(None)


class Devices(MockSource):
    """A mock source whose device count the test changes."""

    def __init__(self, count: int) -> None:
        super().__init__(NODE, count, dev_dir=Path("/nonexistent"), lib_dir=Path("/nonexistent"))


def inventory(count: int) -> Inventory:
    inv = Inventory(Devices(count))
    inv.refresh()
    return inv


def set_devices(inv: Inventory, count: int) -> None:
    assert isinstance(inv.source, Devices)
    inv.source.count = count
    inv.refresh()


def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def pool(api: FakeSliceApi) -> tuple[set[int], set[int], int]:
    """(generations, slice counts, devices) of our slices on the server."""
    ours = api.ours().values()
    return (
        {s["spec"]["pool"]["generation"] for s in ours},
        {s["spec"]["pool"]["resourceSliceCount"] for s in ours},
        sum(len(s["spec"]["devices"]) for s in ours),
    )


# --- sync_once --------------------------------------------------------------------------


def test_first_sync_publishes_the_pool() -> None:
    api = FakeSliceApi()
    result = Publisher(api, inventory(129)).sync_once()
    assert result.generation == 1
    assert len(result.created) == 2 and result.writes == 2
    assert pool(api) == ({1}, {2}, 129)
    for s in api.ours().values():
        assert s["metadata"]["ownerReferences"][0]["uid"] == "node-uid-1"


def test_steady_state_writes_nothing() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(300))
    publisher.sync_once()
    before = sum(api.writes.values())
    for _ in range(5):
        assert publisher.sync_once().writes == 0
    assert sum(api.writes.values()) == before


def test_inventory_change_bumps_the_generation_of_every_slice() -> None:
    api, inv = FakeSliceApi(), inventory(129)
    publisher = Publisher(api, inv)
    publisher.sync_once()
    set_devices(inv, 130)
    result = publisher.sync_once()
    assert result.generation == 2 and len(result.updated) == 2
    assert pool(api) == ({2}, {2}, 130)
    set_devices(inv, 5)
    result = publisher.sync_once()
    assert result.generation == 3 and result.deleted == [slice_name(DRIVER, NODE, 1)]
    assert pool(api) == ({3}, {1}, 5)


def test_restart_continues_from_the_published_generation() -> None:
    api = FakeSliceApi()
    for _ in range(3):  # three driver lifetimes with a change each time
        set_count = 10 + sum(api.writes.values())
        Publisher(api, inventory(set_count)).sync_once()
    generations, _, _ = pool(api)
    assert generations == {3}
    # An unchanged restart writes nothing and keeps the generation.
    count = pool(api)[2]
    assert Publisher(api, inventory(count)).sync_once().writes == 0
    assert pool(api)[0] == {3}


def test_deleted_slice_is_put_back_as_a_new_generation() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(200))
    publisher.sync_once()
    api.remove(slice_name(DRIVER, NODE, 0))  # what the kubelet does when it starts
    result = publisher.sync_once()
    assert result.created == [slice_name(DRIVER, NODE, 0)]
    assert result.updated == [slice_name(DRIVER, NODE, 1)]
    assert pool(api) == ({2}, {2}, 200)


def test_all_slices_wiped_are_republished() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(200))
    publisher.sync_once()
    for name in list(api.ours()):
        api.remove(name)
    result = publisher.sync_once()
    # Nothing to go on: generation 1 again is fine, nobody holds an older pool.
    assert len(result.created) == 2 and pool(api) == ({1}, {2}, 200)


def test_edited_slice_is_repaired() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(4))
    publisher.sync_once()
    name = slice_name(DRIVER, NODE, 0)
    edited = api.ours()[name]
    edited["spec"]["devices"][0]["attributes"]["model"] = {"string": "fake"}
    edited["spec"]["devices"].pop()
    edited["metadata"]["labels"] = {"team": "x"}
    api.put(edited)
    result = publisher.sync_once()
    assert result.updated == [name] and result.generation == 2
    fixed = api.ours()[name]
    assert fixed["spec"]["devices"][0]["attributes"]["model"] == {"string": "Mock GPU 80GB"}
    assert len(fixed["spec"]["devices"]) == 4
    assert fixed["metadata"]["labels"] == {"team": "x"}, "others' labels survive"


def test_duplicate_and_stray_slices_are_deleted_and_others_left_alone() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(4))
    publisher.sync_once()
    ours = api.ours()[slice_name(DRIVER, NODE, 0)]
    duplicate = copy.deepcopy(ours)
    duplicate["metadata"] = {"name": "copy-of-ours"}
    api.put(duplicate, "ADDED")
    stray = copy.deepcopy(ours)
    stray["metadata"] = {"name": slice_name(DRIVER, NODE, 7)}  # e.g. from a larger past
    stray["spec"]["pool"]["generation"] = 1
    api.put(stray, "ADDED")
    other_node = copy.deepcopy(ours)
    other_node["metadata"] = {"name": "other-node-slice"}
    other_node["spec"]["nodeName"] = "node-2"
    other_node["spec"]["pool"]["name"] = "node-2"
    api.put(other_node, "ADDED")
    other_driver = copy.deepcopy(ours)
    other_driver["metadata"] = {"name": "other-driver-slice"}
    other_driver["spec"]["driver"] = "other.example.com"
    api.put(other_driver, "ADDED")

    result = publisher.sync_once()
    assert sorted(result.deleted) == sorted(["copy-of-ours", slice_name(DRIVER, NODE, 7)])
    assert list(api.ours()) == [slice_name(DRIVER, NODE, 0)]
    assert {"other-node-slice", "other-driver-slice"} <= set(api.objects)
    assert pool(api) == ({2}, {1}, 4)


def test_mixed_generations_are_made_one() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(200))
    publisher.sync_once()
    name = slice_name(DRIVER, NODE, 1)
    behind = api.ours()[name]
    behind["spec"]["pool"]["generation"] = 9  # someone wrote a newer generation
    api.put(behind)
    result = publisher.sync_once()
    assert result.generation == 10 and pool(api) == ({10}, {2}, 200)


def test_node_recreated_means_new_owner_reference() -> None:
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(2))
    publisher.sync_once()
    api.node = "node-uid-2"
    assert publisher.sync_once().writes == 1
    assert (
        api.ours()[slice_name(DRIVER, NODE, 0)]["metadata"]["ownerReferences"][0]["uid"]
        == "node-uid-2"
    )


def test_canonicalized_quantities_do_not_cause_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dra_cdi_driver.devices.mock.MEMORY", "1024Mi")
    api = FakeSliceApi()
    publisher = Publisher(api, inventory(2))
    publisher.sync_once()
    stored = api.ours()[slice_name(DRIVER, NODE, 0)]
    assert stored["spec"]["devices"][0]["capacity"]["memory"]["value"] == "1Gi"
    assert publisher.sync_once().writes == 0


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1beta1"])
def test_each_version_gets_its_shape(version: str) -> None:
    api = FakeSliceApi(version)
    publisher = Publisher(api, inventory(1))
    publisher.sync_once()
    (s,) = api.ours().values()
    assert s["apiVersion"] == f"resource.k8s.io/{version}"
    device = s["spec"]["devices"][0]
    body = device["basic"] if version == "v1beta1" else device
    assert body["attributes"]["index"] == {"int": 0}
    assert ("basic" in device) == (version == "v1beta1")
    assert publisher.sync_once().writes == 0


# --- the background threads -------------------------------------------------------------


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[FakeSliceApi, Inventory, Publisher]]]:
    started: list[Publisher] = []

    def start(
        count: int = 4, api: FakeSliceApi | None = None, **kw: Any
    ) -> tuple[FakeSliceApi, Inventory, Publisher]:
        api = api or FakeSliceApi()
        inv = inventory(count)
        publisher = Publisher(api, inv, max_backoff_s=0.2, **kw)
        publisher.start()
        started.append(publisher)
        return api, inv, publisher

    yield start
    for p in started:
        p.stop()


def test_start_publishes_and_then_stays_quiet(running: Any) -> None:
    api, _, publisher = running(1024)
    assert publisher.synced.wait(5)
    eventually(lambda: pool(api) == ({1}, {8}, 1024))
    writes = sum(api.writes.values())
    time.sleep(0.5)  # the watch reports our own writes; they must not cause more
    assert sum(api.writes.values()) == writes == 8


def test_kubelet_wipe_is_repaired_without_being_asked(running: Any) -> None:
    api, _, _ = running(200)
    eventually(lambda: pool(api)[2] == 200)
    for name in list(api.ours()):
        api.remove(name)
    eventually(lambda: pool(api) == ({1}, {2}, 200))


def test_inventory_change_is_published(running: Any) -> None:
    api, inv, _ = running(4)
    eventually(lambda: pool(api)[2] == 4)
    set_devices(inv, 6)
    eventually(lambda: pool(api) == ({2}, {1}, 6))


def test_failures_are_retried_and_logged_once(
    running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeSliceApi()
    forbidden = SliceApiError(
        "forbidden: the driver's service account needs `create` on resourceslices.resource.k8s.io",
        403,
    )
    api.fail["create"] = [*[forbidden] * 6, *[SliceApiError("boom", 500)] * 3]
    caplog.set_level(logging.INFO, logger="dra_cdi_driver.kubeapi.publisher")
    running(4, api=api)
    eventually(lambda: pool(api)[2] == 4)
    assert not api.fail["create"], "every failure was retried"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    messages = [json.dumps(getattr(r, "fields", {})) for r in warnings]
    assert len(warnings) == 2, messages  # one per distinct error, not one per retry
    assert "needs `create` on resourceslices.resource.k8s.io" in messages[0]
    eventually(lambda: any("works again" in r.getMessage() for r in caplog.records))


def test_a_crash_in_sync_is_contained(running: Any, caplog: pytest.LogCaptureFixture) -> None:
    api = FakeSliceApi()
    bug = RuntimeError("bug")

    def broken() -> list[Slice]:  # a bug, not an API error
        raise bug

    original = api.list_slices
    api.list_slices = broken  # type: ignore[method-assign]
    running(2, api=api)
    eventually(lambda: any(r.exc_info and r.exc_info[1] is bug for r in caplog.records))
    api.list_slices = original  # type: ignore[method-assign]
    eventually(lambda: pool(api)[2] == 2)


def test_expired_watch_restarts_from_the_current_state(running: Any) -> None:
    api = FakeSliceApi()
    api.fail["watch"] = [None, SliceApiError("too old resource version", 410)]
    running(2, api=api, watch_timeout_s=1)
    eventually(lambda: len(api.watch_calls) >= 3)
    first, expired, again = api.watch_calls[:3]
    assert first is None and expired is not None and again is None


def test_watch_resumes_from_the_last_resource_version(running: Any) -> None:
    api, _, _ = running(2, watch_timeout_s=1)
    eventually(lambda: pool(api)[2] == 2)
    eventually(lambda: len(api.watch_calls) >= 2, timeout_s=5)
    assert api.watch_calls[0] is None and api.watch_calls[1] is not None


class RewritingServer(FakeSliceApi):
    """A server (or another writer) that always changes our slices after we write them."""

    def _store(self, obj: Slice, event: str) -> Slice:
        for device in obj["spec"]["devices"]:
            device["taints"] = [{"key": "fight", "effect": "NoSchedule"}]
        return super()._store(obj, event)


def test_a_fight_slows_down_instead_of_looping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = RewritingServer()
    publisher = Publisher(api, inventory(2))  # default backoff limits
    publisher.start()
    try:
        time.sleep(2.0)
    finally:
        publisher.stop()
    # Unpaced this is a write every few milliseconds; paced, a handful in two seconds.
    assert 3 <= sum(api.writes.values()) <= 8
    assert sum("keep changing" in r.getMessage() for r in caplog.records) == 1


def test_stop_leaves_the_slices(running: Any) -> None:
    api, _, publisher = running(3)
    eventually(lambda: pool(api)[2] == 3)
    publisher.stop()
    assert pool(api) == ({1}, {1}, 3)
    assert not any(t.is_alive() for t in publisher._threads)


# --- KubeSliceApi error messages --------------------------------------------------------


def api_error(status: int, message: str) -> ApiException:
    err = ApiException(status=status, reason="x")
    err.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return err


def kube_api() -> KubeSliceApi:
    return KubeSliceApi(client.ApiClient(client.Configuration()), DRIVER, NODE, "v1")


@pytest.mark.parametrize(
    ("verb", "rule"),
    [
        ("create", "needs `create` on resourceslices.resource.k8s.io"),
        ("update", "needs `update` on resourceslices.resource.k8s.io"),
        ("delete", "needs `delete` on resourceslices.resource.k8s.io"),
        ("list", "needs `list` on resourceslices.resource.k8s.io"),
    ],
)
def test_forbidden_names_the_missing_rule(verb: str, rule: str) -> None:
    def denied() -> None:
        raise api_error(403, "resourceslices is forbidden: User cannot ...")

    with pytest.raises(SliceApiError, match=rule) as caught:
        kube_api()._call(verb, "resourceslices.resource.k8s.io", denied)
    assert caught.value.status == 403


def test_expired_watch_keeps_its_status() -> None:
    def expired() -> None:  # what kubernetes.watch raises for an ERROR event with code 410
        raise ApiException(status=410, reason="Expired: too old resource version")

    with pytest.raises(SliceApiError) as caught:
        kube_api()._call("watch", "resourceslices.resource.k8s.io", expired)
    assert caught.value.status == 410


def test_missing_node_says_what_to_fix() -> None:
    def missing() -> None:
        raise api_error(404, 'nodes "node-1" not found')

    with pytest.raises(SliceApiError, match="--node-name"):
        kube_api()._call("get", "nodes", missing, NODE)


def test_unreachable_server_message_is_stable() -> None:
    import urllib3

    def down() -> None:
        raise urllib3.exceptions.NewConnectionError(
            urllib3.connection.HTTPConnection("localhost"), "Failed to establish a new connection"
        )

    messages = set()
    for _ in range(2):
        with pytest.raises(SliceApiError) as caught:
            kube_api()._call("list", "x", down)
        messages.add(str(caught.value))
    assert len(messages) == 1 and "0x" not in messages.pop()


@pytest.mark.parametrize(
    ("mode", "feature", "devices"),
    [("partitioned", PARTITIONABLE, 2), ("shared", CONSUMABLE_CAPACITY, 2)],
)
def test_a_feature_the_server_drops_is_given_up_with_one_log_line(
    mode: str, feature: str, devices: int, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeSliceApi()
    api.drops = {feature}
    nowhere = Path("/nonexistent")
    inv = Inventory(MockSource(NODE, 2, dev_dir=nowhere, lib_dir=nowhere, mode=mode))
    inv.refresh()
    publisher = Publisher(api, inv)
    publisher.sync_once()  # written with the feature's fields; the server drops them
    publisher.sync_once()  # noticed: written again without the feature
    assert publisher.sync_once().writes == 0  # and then steady, not a rewrite loop
    assert publisher.features_off == {feature}
    lines = [r for r in caplog.records if "drops the fields of a DRA feature" in r.getMessage()]
    assert len(lines) == 1 and lines[0].fields["feature"] == feature  # type: ignore[attr-defined]
    ours = list(api.ours().values())
    published = [d for s in ours for d in s["spec"].get("devices", [])]
    assert len(published) == devices  # whole GPUs: without counters, parts would overlap
    assert not any(s["spec"].get("sharedCounters") for s in ours)
    assert not any(d.get("allowMultipleAllocations") for d in published)
