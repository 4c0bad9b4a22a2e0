"""Two instances of the driver on one node, as the old and the new pod of a rolling update:
sockets named with the pod UID, stale ones of gone pods removed and live ones left alone,
one checkpoint shared through the disk, and a claim busy in one instance waited for in the
other, never past the kubelet's deadline. Real processes, real gRPC over unix sockets."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dra_cdi_driver.checkpoint import ClaimLocks
from tests.fakeapi import FakeApi, claim_object, result
from tests.integration.conftest import DRIVER, DriverFactory, DriverProcess

OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
GONE = "33333333-3333-4333-8333-333333333333"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _claim(api: FakeApi, name: str, uid: str, device: str) -> tuple[str, str, str]:
    api.add_claim(claim_object(name, uid, [result(device)]))
    return ("default", name, uid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stale_socket(path: Path) -> None:
    """What a killed process leaves: a bound socket file nobody listens on."""
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(path))
    left.close()


@contextmanager
def _serving(path: Path) -> Iterator[None]:
    """A live socket of some other process (here: the test's)."""
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        yield


def test_with_a_pod_uid_both_sockets_carry_it_and_healthz_dials_them(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    port = _free_port()
    driver = make_driver(fake_api[1], ["--healthz-port", str(port)], pod_uid=NEW)
    assert driver.dra_socket.name == f"dra-{NEW}.sock"
    assert driver.registration_socket.name == f"{DRIVER}-{NEW}-reg.sock"
    assert driver.plugin_info().endpoint == str(driver.dra_socket)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.read() == b"ok\n"
    assert driver.stop(signal.SIGTERM) == 0
    assert not driver.dra_socket.exists() and not driver.registration_socket.exists()


def test_stale_sockets_of_gone_pods_go_and_live_ones_stay(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    first = make_driver(fake_api[1], pod_uid=OLD)
    first.stop(signal.SIGKILL)  # a pod that is gone without cleaning up: its sockets stay
    assert first.dra_socket.exists() and first.registration_socket.exists()
    plugins, registry = first.plugin_dir, first.registrar_dir
    # An older version's plain names, also left behind; another driver's socket; and a
    # live instance (some process serving) under a third pod UID.
    stale = [plugins / "dra.sock", registry / f"{DRIVER}-reg.sock"]
    for path in stale:
        _stale_socket(path)
    foreign = registry / "other.example.com-reg.sock"
    _stale_socket(foreign)
    live = [plugins / f"dra-{GONE}.sock", registry / f"{DRIVER}-{GONE}-reg.sock"]
    with _serving(live[0]), _serving(live[1]):
        second = make_driver(fake_api[1], pod_uid=NEW, beside=first)
        for path in [first.dra_socket, first.registration_socket, *stale]:
            assert not path.exists(), path
        assert all(path.exists() for path in live)
        assert foreign.exists()  # not this driver's to judge
        log = second.log()
        assert log.count('msg="removed stale socket"') == 4
        assert "another instance of the driver serves on this node" in log
        assert second.plugin_info().name == DRIVER


def test_an_instance_refuses_a_socket_another_process_serves(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    first = make_driver(fake_api[1], pod_uid=OLD)
    twin = DriverProcess(root=first.root, kubeconfig=first.kubeconfig, env={"POD_UID": OLD})
    with contextlib.suppress(AssertionError):  # it exits, or first's socket answers
        twin.start()
    assert twin.proc is not None and twin.proc.wait(timeout=20) == 1
    assert "another process serves" in twin.log()  # the same log file as first's
    assert first.plugin_info().name == DRIVER  # and the first one still serves


def test_a_claim_prepared_by_one_instance_is_unprepared_by_the_other(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    old = make_driver(url, pod_uid=OLD)
    new = make_driver(url, pod_uid=NEW, beside=old)
    assert old.plugin_info().name == new.plugin_info().name == DRIVER  # both serve

    claim = _claim(api, "rolled", _uid(1), "gpu-1")
    answer = old.dra("v1").prepare(claim).claims[_uid(1)]
    assert answer.error == "" and answer.devices[0].device_name == "gpu-1"
    api.remove_claim("default", "rolled")  # the new instance must answer from the record
    again = new.dra("v1").prepare(claim).claims[_uid(1)]
    assert again == answer

    assert new.dra("v1").unprepare(claim).claims[_uid(1)].error == ""
    assert old.spec_files() == [] and old.checkpoint_files() == []

    # The claim, allocated anew with another device, is prepared through the old instance
    # again: it must not answer from what it saw before the other one unprepared it.
    _claim(api, "rolled", _uid(1), "gpu-6")
    moved = old.dra("v1").prepare(claim).claims[_uid(1)]
    assert moved.error == "" and moved.devices[0].device_name == "gpu-6"
    assert new.dra("v1beta1").unprepare(claim).claims[_uid(1)].error == ""
    assert old.spec_files() == [] and old.checkpoint_files() == []


def test_a_claim_busy_elsewhere_waits_and_is_timed_out_by_the_deadline(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    """While another instance holds a claim (here the test process takes its lock, as the
    other pod would), a prepare of that claim waits, and answers by the caller's deadline;
    the other claims of the call do not wait."""
    api, url = fake_api
    driver = make_driver(url, pod_uid=NEW)
    busy = _claim(api, "busy", _uid(2), "gpu-2")
    free = _claim(api, "free", _uid(3), "gpu-3")
    other_pod = ClaimLocks(driver.plugin_dir / "locks")
    dra = driver.dra("v1")
    with other_pod.hold(_uid(2), time.monotonic() + 30):
        request = dra.pb.NodePrepareResourcesRequest(claims=dra._claims([busy, free]))
        started = time.monotonic()
        response = dra._stub.NodePrepareResources(request, timeout=4)
        took = time.monotonic() - started
        assert took < 4, f"answered after {took:.1f} s"
        error = response.claims[_uid(2)].error
        assert "default/busy" in error and "timed out waiting for another prepare" in error
        assert response.claims[_uid(3)].error == ""
        assert len(driver.spec_files()) == 1  # nothing of the busy claim was written
        unprepare = dra._stub.NodeUnprepareResources(
            dra.pb.NodeUnprepareResourcesRequest(claims=dra._claims([busy])), timeout=3
        )
        assert "timed out waiting" in unprepare.claims[_uid(2)].error
    # Let go: the kubelet's retry goes through.
    assert dra.prepare(busy).claims[_uid(2)].error == ""
    assert dra.unprepare(busy, free).claims[_uid(2)].error == ""
    assert driver.spec_files() == [] and driver.checkpoint_files() == []
    assert list((driver.plugin_dir / "locks").iterdir()) == []  # no lock held while idle


def test_while_one_instance_reads_a_claim_the_other_waits_for_it(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    """The old pod's prepare hangs in its API read; the new pod's prepare of the same claim
    waits for it instead of preparing it a second time, then answers from its record."""
    api, url = fake_api
    old = make_driver(url, pod_uid=OLD)
    new = make_driver(url, pod_uid=NEW, beside=old)
    claim = _claim(api, "shared", _uid(4), "gpu-4")
    api.hanging = True
    old_dra, new_dra = old.dra("v1"), new.dra("v1")
    old_call = old_dra._stub.NodePrepareResources.future(
        old_dra.pb.NodePrepareResourcesRequest(claims=old_dra._claims([claim])), timeout=30
    )
    try:
        time.sleep(0.5)  # the old instance holds the claim, waiting for the API server
        new_call = new_dra._stub.NodePrepareResources.future(
            new_dra.pb.NodePrepareResourcesRequest(claims=new_dra._claims([claim])), timeout=30
        )
        time.sleep(0.5)
        assert not new_call.done()  # waiting for the claim
        requests = len([r for r in api.requests if "resourceclaims" in r])
    finally:
        api.release()
    first = old_call.result().claims[_uid(4)]
    second = new_call.result().claims[_uid(4)]
    assert first.error == "" and second == first
    # The new instance found the old one's record: it never asked the API server itself.
    assert len([r for r in api.requests if "resourceclaims" in r]) == requests == 1
    assert len(old.spec_files()) == 1 and len(old.checkpoint_files()) == 1
