"""Health and claim device status through a real driver process: the kubelet's health stream
over gRPC on the unix socket, and the status writes the fake API server receives."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc

from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2 as pb
from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2_grpc
from tests.fakeapi import FakeApi, claim_object, result
from tests.integration.conftest import DRIVER, NODE, DriverFactory, DriverProcess

MANAGER = f"{DRIVER}/{NODE}"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _claim(api: FakeApi, name: str, uid: str, *devices: str) -> tuple[str, str, str]:
    api.add_claim(claim_object(name, uid, [result(d) for d in devices]))
    return ("default", name, uid)


def _until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _flip(driver: DriverProcess, device: str, reason: str | None) -> None:
    path = driver.plugin_dir / "health" / device
    if reason is None:
        path.unlink()
    else:
        path.write_text(reason)


def test_the_health_stream_reports_a_flip_and_the_recovery(driver_proc: DriverProcess) -> None:
    with grpc.insecure_channel(f"unix://{driver_proc.dra_socket}") as channel:
        stub = dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(channel)
        stream = stub.NodeWatchResources(pb.NodeWatchResourcesRequest(), timeout=30)
        first = next(stream)
        assert {d.health for d in first.devices} == {pb.HEALTHY}
        started = time.monotonic()
        _flip(driver_proc, "gpu-2", "ECC errors (test)")
        changed = next(stream)
        flip_s = time.monotonic() - started
        by_name = {d.device.device_name: d for d in changed.devices}
        assert by_name["gpu-2"].health == pb.UNHEALTHY
        assert by_name["gpu-2"].message == "ECC errors (test)"
        assert [n for n, d in by_name.items() if d.health != pb.HEALTHY] == ["gpu-2"]
        assert flip_s < 3.0  # polled every second, sent at once
        _flip(driver_proc, "gpu-2", None)
        healed = {d.device.device_name: d.health for d in next(stream).devices}
        assert set(healed.values()) == {pb.HEALTHY}
        stream.cancel()


def _applies(api: FakeApi, name: str) -> list[tuple[dict[str, list[str]], str, dict[str, Any]]]:
    return [
        (parse_qs(urlsplit(path).query), content_type, body)
        for path, content_type, body in list(api.patches)
        if f"/resourceclaims/{name}/status" in path
    ]


def test_prepare_writes_the_claims_device_status_by_server_side_apply(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url)
    claim = _claim(api, "status", _uid(1), "gpu-1")
    answer = driver.dra("v1").prepare(claim).claims[_uid(1)]
    assert answer.error == ""
    [(query, content_type, body)] = _until(lambda: _applies(api, "status"))
    assert content_type == "application/apply-patch+yaml"
    assert query["fieldManager"] == [MANAGER] and query["force"] == ["true"]
    assert body["metadata"] == {"name": "status", "namespace": "default", "uid": _uid(1)}
    [entry] = body["status"]["devices"]
    assert (entry["driver"], entry["pool"], entry["device"]) == (DRIVER, NODE, "gpu-1")
    [ready] = entry["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Prepared")
    assert entry["data"]["uuid"].startswith("GPU-") and entry["data"]["model"] == "Mock GPU 80GB"
    assert entry["data"]["cdiDeviceIDs"] == list(answer.devices[0].cdi_device_ids)

    _flip(driver, "gpu-1", "XID 79")
    unready = _until(lambda: len(_applies(api, "status")) >= 2 and _applies(api, "status")[-1])
    [condition] = unready[2]["status"]["devices"][0]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Unhealthy")
    assert "XID 79" in condition["message"]
    _flip(driver, "gpu-1", None)
    _until(lambda: len(_applies(api, "status")) >= 3)
    [again] = _applies(api, "status")[-1][2]["status"]["devices"][0]["conditions"]
    assert again["status"] == "True"

    assert driver.dra("v1").unprepare(claim).claims[_uid(1)].error == ""
    cleared = _until(lambda: len(_applies(api, "status")) >= 4 and _applies(api, "status")[-1])
    assert cleared[2]["status"]["devices"] == []  # our entries taken back
    assert api.claims[("default", "status")]["status"]["devices"] == []


def test_status_writes_can_be_turned_off(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url, ["--claim-device-status=false"])
    claim = _claim(api, "quiet", _uid(2), "gpu-0")
    assert driver.dra("v1").prepare(claim).claims[_uid(2)].error == ""
    time.sleep(1.0)
    assert _applies(api, "quiet") == []


def test_a_failing_status_write_never_fails_a_prepare_and_is_logged_once(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    api.patch_fail_with = 403
    driver = make_driver(url)
    for n in range(3):
        claim = _claim(api, f"denied-{n}", _uid(10 + n), f"gpu-{n}")
        assert driver.dra("v1").prepare(claim).claims[_uid(10 + n)].error == ""
    assert _until(lambda: len(api.patches) >= 4)
    log = driver.log()
    lines = [line for line in log.splitlines() if "device status failed" in line]
    assert len(lines) == 1, lines
    assert "resourceclaims/status" in lines[0]
    api.patch_fail_with = None
    assert _until(lambda: "device status works again" in driver.log(), timeout=15)
    for n in range(3):  # each written once its backoff is over
        status: dict[str, Any] = api.claims[("default", f"denied-{n}")]["status"]

        def written(status: dict[str, Any] = status) -> bool:
            return json.dumps(status).count('"Ready"') == 1

        assert _until(written, timeout=15)
