"""The driver as the kubelet sees it: real gRPC over real unix sockets, v1 and v1beta1."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.checkpoint import _checksum
from tests.fakeapi import FakeApi, claim_object, result, serve
from tests.integration.conftest import DRIVER, NODE, DriverFactory, DriverProcess

VERSIONS = ["v1", "v1beta1"]
KIND = f"{DRIVER}/gpu"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _add(api: FakeApi, name: str, uid: str, devices: list[str], **kw: Any) -> tuple[str, str, str]:
    api.add_claim(claim_object(name, uid, [result(d) for d in devices], **kw))
    return ("default", name, uid)


def _spec(driver: DriverProcess, uid: str) -> dict[str, Any]:
    path = driver.cdi_root / f"{DRIVER}_gpu-{uid}.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _spec_env(spec: dict[str, Any]) -> set[str]:
    env = set(spec.get("containerEdits", {}).get("env", []))
    for device in spec["devices"]:
        env |= set(device["containerEdits"].get("env", []))
    return env


# --- registration ----------------------------------------------------------------------


def test_registration_info_names_the_dra_socket_and_both_versions(
    driver_proc: DriverProcess,
) -> None:
    info = driver_proc.plugin_info()
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(driver_proc.dra_socket)
    assert Path(info.endpoint).is_absolute()
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]


def test_rejected_registration_is_logged_as_an_error_quoting_the_kubelet(
    driver_proc: DriverProcess,
) -> None:
    driver_proc.notify(True)
    driver_proc.notify(False, error="plugin name already registered")
    log = driver_proc.log()
    assert 'msg="registered with the kubelet"' in log
    rejected = [line for line in log.splitlines() if "rejected the plugin" in line]
    assert rejected and "level=error" in rejected[0]
    assert "plugin name already registered" in rejected[0]


def test_permissions_keep_others_out(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    driver_proc.dra("v1").prepare(_add(api, "perm", _uid(2), ["gpu-0"]))
    # Anyone who can connect to the sockets can prepare and unprepare: root and its group only.
    for sock in (driver_proc.dra_socket, driver_proc.registration_socket):
        mode = sock.stat().st_mode
        assert stat.S_ISSOCK(mode) and mode & 0o007 == 0, (sock, oct(mode))
    # Nobody else may plant or replace a file the runtime or a restarted driver trusts.
    [spec] = driver_proc.spec_files()
    for path in (driver_proc.plugin_dir, driver_proc.plugin_dir / "checkpoint", spec):
        assert path.stat().st_mode & 0o022 == 0, (path, oct(path.stat().st_mode))
    # A record holds a claim's devices and spec: root's alone.
    [record] = driver_proc.checkpoint_files()
    assert record.stat().st_mode & 0o777 == 0o600 and record.stat().st_uid == os.getuid()


def test_sigterm_removes_sockets_and_a_stale_socket_is_replaced(
    driver_proc: DriverProcess,
) -> None:
    assert driver_proc.stop(signal.SIGTERM) == 0
    assert not driver_proc.dra_socket.exists()
    assert not driver_proc.registration_socket.exists()

    # A socket left behind by a killed process: bound, never unlinked.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(driver_proc.registration_socket))
    stale.close()
    driver_proc.start()
    assert driver_proc.plugin_info().name == DRIVER
    assert "removed stale socket" in driver_proc.log()


# --- prepare / unprepare -----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_prepare_then_unprepare_one_claim(
    version: str, driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "one", _uid(1), ["gpu-3"])
    dra = driver_proc.dra(version)

    answer = dra.prepare(claim).claims[_uid(1)]
    assert answer.error == ""
    [device] = answer.devices
    assert list(device.request_names) == ["gpu"]
    assert device.pool_name == NODE
    assert device.device_name == "gpu-3"
    assert list(device.cdi_device_ids) == [f"{KIND}=gpu-3-{_uid(1)}"]

    spec = _spec(driver_proc, _uid(1))
    assert spec["cdiVersion"] == "0.3.0"
    assert spec["kind"] == KIND
    assert [d["name"] for d in spec["devices"]] == [f"gpu-3-{_uid(1)}"]
    assert all(d["containerEdits"] for d in spec["devices"])
    assert "GPU_DEVICE_3=gpu-3" in _spec_env(spec)
    assert f"DRA_NODE_NAME={NODE}" in _spec_env(spec)
    assert len(driver_proc.checkpoint_files()) == 1

    assert dra.unprepare(claim).claims[_uid(1)].error == ""
    assert driver_proc.spec_files() == []
    assert driver_proc.checkpoint_files() == []


@pytest.mark.parametrize("version", VERSIONS)
def test_several_claims_in_one_call(
    version: str, driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claims = [_add(api, f"c{i}", _uid(10 + i), [f"gpu-{i}"]) for i in range(4)]
    response = driver_proc.dra(version).prepare(*claims)
    assert set(response.claims) == {c[2] for c in claims}
    for i, claim in enumerate(claims):
        assert response.claims[claim[2]].error == ""
        assert [d.device_name for d in response.claims[claim[2]].devices] == [f"gpu-{i}"]
    assert len(driver_proc.spec_files()) == 4

    response = driver_proc.dra(version).unprepare(*claims)
    assert all(response.claims[c[2]].error == "" for c in claims)
    assert driver_proc.spec_files() == []


def test_claim_with_several_devices_requests_and_subrequests(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    uid = _uid(20)
    api.add_claim(
        claim_object(
            "multi",
            uid,
            [
                result("gpu-0", "big"),
                result("gpu-1", "big"),
                result("gpu-5", "small/fallback"),
                result("gpu-7", "other", driver="other.example.com"),
            ],
        )
    )
    answer = driver_proc.dra("v1").prepare(("default", "multi", uid)).claims[uid]
    assert answer.error == ""
    got = {d.device_name: list(d.request_names) for d in answer.devices}
    assert got == {"gpu-0": ["big"], "gpu-1": ["big"], "gpu-5": ["small"]}
    spec = _spec(driver_proc, uid)
    assert len(spec["devices"]) == 3
    env = _spec_env(spec)
    assert {"GPU_DEVICE_0=gpu-0", "GPU_DEVICE_1=gpu-1", "GPU_DEVICE_5=gpu-5"} <= env
    assert not any(e.startswith("GPU_DEVICE_7=") for e in env)  # not our driver's result


def test_share_id_is_returned_on_v1_only(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    uid = _uid(21)
    shared = {**result("gpu-2"), "shareID": "7d3c2e1a-0000-4000-8000-000000000001"}
    api.add_claim(claim_object("shared", uid, [shared]))
    claim = ("default", "shared", uid)
    [v1] = driver_proc.dra("v1").prepare(claim).claims[uid].devices
    assert v1.share_id == shared["shareID"]
    [v1beta1] = driver_proc.dra("v1beta1").prepare(claim).claims[uid].devices
    assert v1beta1.device_name == "gpu-2"
    assert "share_id" not in v1beta1.DESCRIPTOR.fields_by_name


def test_opaque_config_reaches_the_cdi_spec_and_the_claim_wins_over_the_class(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    uid = _uid(22)

    def gpu_config(**fields: Any) -> dict[str, Any]:
        return {"apiVersion": f"{DRIVER}/v1alpha1", "kind": "GpuConfig", **fields}

    config = [
        {
            "source": "FromClass",
            "requests": [],
            "opaque": {"driver": DRIVER, "parameters": gpu_config(env={"WHO": "class"})},
        },
        {
            "source": "FromClaim",
            "requests": ["gpu"],
            "opaque": {
                "driver": DRIVER,
                "parameters": gpu_config(
                    env={"WHO": "claim"}, sharing={"strategy": "TimeSlicing", "timeSlice": "Short"}
                ),
            },
        },
    ]
    _add(api, "configured", uid, ["gpu-1"], config=config)
    answer = driver_proc.dra("v1").prepare(("default", "configured", uid)).claims[uid]
    assert answer.error == ""
    env = _spec_env(_spec(driver_proc, uid))
    assert "WHO=claim" in env and "WHO=class" not in env
    assert "GPU_DEVICE_1_SHARING_STRATEGY=TimeSlicing" in env
    assert "GPU_DEVICE_1_TIMESLICE_INTERVAL=Short" in env


@pytest.mark.parametrize("version", VERSIONS)
def test_preparing_twice_gives_the_same_answer_and_one_file(
    version: str, driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "twice", _uid(30), ["gpu-1", "gpu-2"])
    dra = driver_proc.dra(version)
    first = dra.prepare(claim)
    second = dra.prepare(claim)
    assert first == second
    assert len(driver_proc.spec_files()) == 1
    assert len(driver_proc.checkpoint_files()) == 1


def test_many_concurrent_prepares_of_different_claims(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claims = [_add(api, f"par{i}", _uid(100 + i), [f"gpu-{i % 8}"]) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda c: driver_proc.dra("v1").prepare(c), claims))
    for claim, response in zip(claims, responses, strict=True):
        assert response.claims[claim[2]].error == ""
        assert response.claims[claim[2]].devices[0].cdi_device_ids[0].endswith(claim[2])
    assert len(driver_proc.spec_files()) == 48
    assert len(driver_proc.checkpoint_files()) == 48


def test_many_concurrent_prepares_of_the_same_claim(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "same", _uid(200), ["gpu-4"])
    versions = VERSIONS * 8
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda v: driver_proc.dra(v).prepare(claim), versions))
    answers = {r.claims[_uid(200)].SerializeToString() for r in responses}
    assert len(answers) == 1  # v1 and v1beta1 answers are identical bytes without a share ID
    assert all(r.claims[_uid(200)].error == "" for r in responses)
    assert len(driver_proc.spec_files()) == 1
    claim_gets = [p for p in api.requests if "/resourceclaims/same" in p]
    assert len(claim_gets) == 1  # the rest were answered from the checkpoint


def test_unprepare_of_a_claim_never_prepared_succeeds(driver_proc: DriverProcess) -> None:
    response = driver_proc.dra("v1").unprepare(("default", "ghost", _uid(300)))
    assert response.claims[_uid(300)].error == ""


# --- bad input -----------------------------------------------------------------------------


def _prepare_error(driver: DriverProcess, claim: tuple[str, str, str]) -> str:
    answer = driver.dra("v1").prepare(claim).claims[claim[2]]
    assert answer.error, "expected an error"
    assert not answer.devices
    assert driver.spec_files() == [], "a failed prepare left a CDI spec behind"
    assert driver.checkpoint_files() == [], "a failed prepare left a checkpoint record"
    return str(answer.error)


def test_uid_mismatch_is_an_error_naming_the_claim(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    _add(api, "recreated", _uid(401), ["gpu-0"])
    error = _prepare_error(driver_proc, ("default", "recreated", _uid(400)))
    assert "default/recreated" in error and _uid(400) in error
    assert "UID mismatch" in error and _uid(401) in error


def test_unallocated_claim_is_an_error(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    api.add_claim(claim_object("pending", _uid(402), None))
    error = _prepare_error(driver_proc, ("default", "pending", _uid(402)))
    assert "default/pending" in error and "not allocated" in error


def test_missing_claim_is_an_error(driver_proc: DriverProcess) -> None:
    error = _prepare_error(driver_proc, ("team-a", "gone", _uid(403)))
    assert "team-a/gone" in error and "does not exist" in error


def test_device_this_node_does_not_have_is_an_error(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    _add(api, "nodevice", _uid(404), ["gpu-0", "gpu-99"])
    error = _prepare_error(driver_proc, ("default", "nodevice", _uid(404)))
    assert "default/nodevice" in error and "gpu-99" in error and "does not exist" in error


def test_device_of_another_nodes_pool_is_an_error(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    api.add_claim(claim_object("elsewhere", _uid(405), [result("gpu-0", pool="node-2")]))
    error = _prepare_error(driver_proc, ("default", "elsewhere", _uid(405)))
    assert "gpu-0" in error and "node-2" in error and "another node" in error


def test_invalid_opaque_config_is_an_error_naming_the_field(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    bad = {
        "apiVersion": f"{DRIVER}/v1alpha1",
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeslice": "Short"},
    }
    config = [
        {"source": "FromClaim", "requests": [], "opaque": {"driver": DRIVER, "parameters": bad}}
    ]
    _add(api, "badconfig", _uid(406), ["gpu-0"], config=config)
    error = _prepare_error(driver_proc, ("default", "badconfig", _uid(406)))
    assert "default/badconfig" in error
    assert "parameters.sharing.timeslice: unknown field" in error


def test_malformed_request_is_an_error(driver_proc: DriverProcess) -> None:
    error = _prepare_error(driver_proc, ("default", "", _uid(407)))
    assert "malformed request" in error and "name: not a DNS subdomain" in error


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): None if p.is_dir() or p.is_socket() else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.name != "driver.log"
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_a_uid_with_path_segments_touches_no_file_anywhere(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str], version: str
) -> None:
    """`<plugin-dir>/checkpoint/<uid>.json` with uid `../../../victim` is <root>/victim.json."""
    api, _ = fake_api
    victim = driver_proc.root / "victim.json"
    victim.write_text("{}")
    good = _add(api, "good", _uid(412), ["gpu-0"])
    driver_proc.dra(version).prepare(good)
    before = _tree(driver_proc.root)
    hostile = [
        ("default", "c", "../../../victim"),
        ("default", "c", f"{_uid(413)}/../../../../victim"),
        ("../../..", "c", _uid(414)),
        ("default", "../../../victim", _uid(415)),
    ]
    dra = driver_proc.dra(version)
    unprepared = dra.unprepare(*hostile).claims
    prepared = dra.prepare(*hostile).claims
    assert set(unprepared) == set(prepared) == {uid for _, _, uid in hostile}
    for _, _, uid in hostile:
        for answer in (unprepared[uid], prepared[uid]):
            assert "malformed request" in answer.error, answer.error
    assert "uid: not a UUID" in unprepared["../../../victim"].error
    assert "namespace: not a DNS label" in unprepared[_uid(414)].error
    assert "name: not a DNS subdomain" in unprepared[_uid(415)].error
    assert _tree(driver_proc.root) == before
    assert dra.unprepare(good).claims[_uid(412)].error == ""
    assert driver_proc.spec_files() == [] and victim.read_text() == "{}"


def test_api_server_errors_are_per_claim_errors(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    _add(api, "flaky", _uid(408), ["gpu-0"])
    api.fail_with = 500
    error = _prepare_error(driver_proc, ("default", "flaky", _uid(408)))
    assert "default/flaky" in error and "HTTP 500" in error


def test_a_call_answers_by_its_deadline_while_the_api_hangs(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    """16 workers x a 10 s GET timeout would take 70 s for 100 claims; the kubelet waits
    45 s. The driver answers every claim by the caller's deadline (here 8 s) instead."""
    api, _ = fake_api
    claims = [_add(api, f"slow{i}", _uid(600 + i), ["gpu-0"]) for i in range(100)]
    api.hanging = True
    dra = driver_proc.dra("v1")
    request = dra.pb.NodePrepareResourcesRequest(claims=dra._claims(claims))
    started = time.monotonic()
    try:
        response = dra._stub.NodePrepareResources(request, timeout=8)
    finally:
        took = time.monotonic() - started
        api.release()
    assert took < 8, f"answered after {took:.1f} s"
    assert set(response.claims) == {uid for _, _, uid in claims}
    for _, name, uid in claims:
        error = response.claims[uid].error
        assert f"default/{name}" in error
        assert "timed out reading the claim from the API server" in error, error
    assert driver_proc.spec_files() == [] and driver_proc.checkpoint_files() == []


def test_a_call_with_too_many_claims_is_refused_claim_by_claim(driver_proc: DriverProcess) -> None:
    claims = [("default", f"c{i}", _uid(1000 + i)) for i in range(513)]
    for call in (driver_proc.dra("v1").prepare, driver_proc.dra("v1beta1").unprepare):
        response = call(*claims)
        assert len(response.claims) == 513
        assert all("more than the 512" in a.error for a in response.claims.values())


def test_unreachable_api_server_is_a_per_claim_error(make_driver: DriverFactory) -> None:
    driver = make_driver("http://127.0.0.1:9")  # nothing listens there: connection refused
    error = _prepare_error(driver, ("default", "any", _uid(409)))
    assert "default/any" in error and "cannot reach the API server" in error


def test_unwritable_cdi_root_is_an_error_and_leaves_no_state(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    _add(api, "nowrite", _uid(410), ["gpu-0"])
    driver_proc.cdi_root.rmdir()
    driver_proc.cdi_root.write_text("not a directory")  # even root cannot write below a file
    answer = driver_proc.dra("v1").prepare(("default", "nowrite", _uid(410))).claims[_uid(410)]
    assert "default/nowrite" in answer.error and "cannot write CDI spec" in answer.error
    assert driver_proc.checkpoint_files() == []


def test_one_bad_claim_does_not_stop_the_others(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    good = _add(api, "good", _uid(420), ["gpu-0"])
    bad = ("default", "missing", _uid(421))
    response = driver_proc.dra("v1").prepare(good, bad)
    assert response.claims[_uid(420)].error == ""
    assert "does not exist" in response.claims[_uid(421)].error
    assert len(driver_proc.spec_files()) == 1


# --- restarts --------------------------------------------------------------------------------


def test_sigkill_and_restart_keeps_prepared_claims(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "survivor", _uid(500), ["gpu-6"])
    before = driver_proc.dra("v1").prepare(claim)
    driver_proc.stop(signal.SIGKILL)
    api.remove_claim("default", "survivor")  # the API no longer has it: local state must do
    driver_proc.start()

    assert driver_proc.dra("v1").prepare(claim) == before
    assert driver_proc.dra("v1").unprepare(claim).claims[_uid(500)].error == ""
    assert driver_proc.spec_files() == []
    assert driver_proc.checkpoint_files() == []


def test_a_deleted_cdi_spec_is_rewritten_on_prepare(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "rewrite", _uid(501), ["gpu-2"])
    dra = driver_proc.dra("v1")
    dra.prepare(claim)
    [spec] = driver_proc.spec_files()
    original = spec.read_text()
    spec.unlink()
    assert dra.prepare(claim).claims[_uid(501)].error == ""
    assert spec.read_text() == original


def test_a_changed_boot_id_drops_the_checkpoint(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    claim = _add(api, "rebooted", _uid(502), ["gpu-1"])
    driver_proc.dra("v1").prepare(claim)
    driver_proc.stop(signal.SIGKILL)

    # Make the record look as if it was written during an earlier boot.
    [path] = driver_proc.checkpoint_files()
    record = json.loads(path.read_text())
    record["bootId"] = "00000000-0000-0000-0000-000000000000"
    body = {k: record[k] for k in ("version", "bootId", "claim")}
    record["checksum"] = _checksum(body)
    path.write_text(json.dumps(record))
    driver_proc.start()

    assert driver_proc.checkpoint_files() == []
    assert driver_proc.spec_files() == []  # the spec of a dropped record goes too
    assert "dropping checkpoint record from an earlier boot" in driver_proc.log()
    # The kubelet prepares again after a reboot: that reads the claim anew.
    assert driver_proc.dra("v1").prepare(claim).claims[_uid(502)].error == ""


# --- liveness ------------------------------------------------------------------------------


def test_healthz_fails_when_a_grpc_socket_stops_answering(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = make_driver(fake_api[1], ["--healthz-port", str(port)])
    url = f"http://127.0.0.1:{port}/healthz"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert (response.status, response.read()) == (200, b"ok\n")
    driver.dra_socket.unlink()  # the server runs on, but the kubelet can no longer dial it
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(url, timeout=10)
    assert failed.value.code == 503
    assert b"UNAVAILABLE" in failed.value.read()


@pytest.mark.parametrize("served", [("v1beta2", "v1beta1"), ("v1beta1",)])
def test_claims_are_read_through_the_newest_version_the_server_serves(
    served: tuple[str, ...], make_driver: DriverFactory
) -> None:
    api = FakeApi(versions=served)
    with serve(api) as url:
        driver = make_driver(url)
        claim = _add(api, "older", _uid(600), ["gpu-0"])
        assert driver.dra("v1beta1").prepare(claim).claims[_uid(600)].error == ""
    [read] = [p for p in api.requests if "/resourceclaims/" in p]
    assert read.startswith(f"/apis/resource.k8s.io/{served[0]}/namespaces/default/")


def test_device_health_streams_every_device_as_healthy(driver_proc: DriverProcess) -> None:
    import grpc

    from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2, dra_health_v1alpha1_pb2_grpc

    with grpc.insecure_channel(f"unix://{driver_proc.dra_socket}") as channel:
        stub = dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(channel)
        stream = stub.NodeWatchResources(
            dra_health_v1alpha1_pb2.NodeWatchResourcesRequest(), timeout=10
        )
        first = next(stream)
        stream.cancel()
    assert sorted(d.device.device_name for d in first.devices) == [f"gpu-{i}" for i in range(8)]
    assert {d.device.pool_name for d in first.devices} == {NODE}
    assert {d.health for d in first.devices} == {dra_health_v1alpha1_pb2.HEALTHY}
    assert all(d.health_check_timeout_seconds > 0 for d in first.devices)


def test_sigterm_is_prompt_while_the_kubelet_watches_health(driver_proc: DriverProcess) -> None:
    import time

    import grpc

    from dra_cdi_driver.kubelet.pb import dra_health_v1alpha1_pb2, dra_health_v1alpha1_pb2_grpc

    channel = grpc.insecure_channel(f"unix://{driver_proc.dra_socket}")
    stream = dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(channel).NodeWatchResources(
        dra_health_v1alpha1_pb2.NodeWatchResourcesRequest()
    )
    next(stream)
    started = time.monotonic()
    assert driver_proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 4.0
    channel.close()


def test_unusable_checkpoint_dir_is_an_error_and_leaves_no_spec(
    driver_proc: DriverProcess, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    _add(api, "nocheckpoint", _uid(411), ["gpu-0"])
    checkpoint_dir = driver_proc.plugin_dir / "checkpoint"
    checkpoint_dir.rmdir()
    checkpoint_dir.write_text("not a directory")
    answer = driver_proc.dra("v1").prepare(("default", "nocheckpoint", _uid(411))).claims[_uid(411)]
    assert "default/nocheckpoint" in answer.error
    assert "cannot record the claim in the checkpoint" in answer.error
    assert driver_proc.spec_files() == []
