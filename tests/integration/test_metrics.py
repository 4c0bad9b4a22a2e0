"""GET /metrics of the real driver process, after real prepares and unprepares over gRPC:
the counts are those of what the kubelet was answered, claim by claim."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from dra_cdi_driver import __version__
from dra_cdi_driver.checkpoint import ClaimLocks
from tests.fakeapi import FakeApi, claim_object, result
from tests.integration.conftest import DriverFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _claim(api: FakeApi, name: str, uid: str, *devices: str) -> tuple[str, str, str]:
    api.add_claim(claim_object(name, uid, [result(d) for d in devices]))
    return ("default", name, uid)


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_each_claim_as_the_kubelet_was_answered(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = make_driver(url, ["--healthz-port", str(port)])
    dra = driver.dra("v1")
    one = _claim(api, "one", _uid(1), "gpu-0")
    two = _claim(api, "two", _uid(2), "gpu-1", "gpu-2")
    broken = _claim(api, "broken", _uid(3), "gpu-3")
    busy = _claim(api, "busy", _uid(4), "gpu-4")

    assert all(a.error == "" for a in dra.prepare(one, two).claims.values())  # 2 successes
    assert dra.prepare(("default", "missing", _uid(5))).claims[_uid(5)].error  # 404: error
    api.fail_with = 500
    assert dra.prepare(broken).claims[_uid(3)].error  # 500: error
    api.fail_with = None
    with ClaimLocks(driver.plugin_dir / "locks").hold(_uid(4), time.monotonic() + 30):
        request = dra.pb.NodePrepareResourcesRequest(claims=dra._claims([busy]))
        timed_out = dra._stub.NodePrepareResources(request, timeout=3).claims[_uid(4)]
        assert "timed out" in timed_out.error  # timeout
    assert dra.prepare(one).claims[_uid(1)].error == ""  # again: from the checkpoint
    assert dra.unprepare(one, ("default", "never", _uid(6))).claims[_uid(6)].error == ""

    samples = _scrape(port)
    claims = "dra_cdi_driver_claim_operations_total"
    seconds = "dra_cdi_driver_claim_operation_duration_seconds_count"
    expected = {
        ("prepare", "success"): 3,
        ("prepare", "error"): 2,
        ("prepare", "timeout"): 1,
        ("unprepare", "success"): 2,
        ("unprepare", "error"): 0,
        ("unprepare", "timeout"): 0,
    }
    for (operation, outcome), count in expected.items():
        assert _value(samples, claims, operation=operation, result=outcome) == count
        assert _value(samples, seconds, operation=operation, result=outcome) == count
    calls = "dra_cdi_driver_kubelet_call_duration_seconds_count"
    assert _value(samples, calls, operation="prepare") == 5
    assert _value(samples, calls, operation="unprepare") == 1
    # What is prepared now, from the checkpoint: claim "two", with its two devices.
    assert _value(samples, "dra_cdi_driver_prepared_claims") == 1
    assert _value(samples, "dra_cdi_driver_prepared_devices") == 2
    assert _value(samples, "dra_cdi_driver_devices", health="healthy") == 8
    assert _value(samples, "dra_cdi_driver_devices", health="unhealthy") == 0
    # The injected 500; the 404s (the missing claim, and the publisher's against this fake
    # API, which serves no slices) count as 4xx.
    assert _value(samples, "dra_cdi_driver_api_errors_total", kind="5xx") == 1
    assert _value(samples, "dra_cdi_driver_api_errors_total", kind="4xx") >= 1
    assert _value(samples, "dra_cdi_driver_api_errors_total", kind="timeout") == 0
    info = [labels for (name, labels) in samples if name == "dra_cdi_driver_build_info"]
    assert len(info) == 1 and ("version", __version__) in info[0]
    assert _value(samples, "process_resident_memory_bytes") > 0


def test_metrics_speak_openmetrics_when_asked(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_driver(fake_api[1], ["--healthz-port", str(port)])
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        body = response.read().decode()
    assert body.endswith("# EOF\n")
    assert "dra_cdi_driver_claim_operations_total" in body
