"""/metrics of the driver serving a real kubelet: a pod's claim is counted once prepared,
once unprepared, and is in the prepared gauge while the pod runs. Local provider only: its
driver is a host process that is restarted here with --healthz-port."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_url(cluster: E2ECluster) -> Iterator[str]:
    from .harness.driver import LocalDriver

    driver = cluster.driver
    if not isinstance(driver, LocalDriver):
        pytest.skip("needs to restart the driver with --healthz-port (local provider)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flag = ["--healthz-port", str(port)]
    driver.proc.argv += flag
    registered = cluster.registrations()
    cluster.restart_driver()
    cluster.wait_registered(registered)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        del driver.proc.argv[-len(flag) :]
        registered = cluster.registrations()
        cluster.restart_driver()
        cluster.wait_registered(registered)


def _scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _claims(samples: Samples, operation: str, outcome: str) -> float:
    key = frozenset({("operation", operation), ("result", outcome)})
    return samples[("dra_cdi_driver_claim_operations_total", key)]


def _gauge(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_a_pods_claim_is_counted_prepared_then_unprepared(
    metrics_url: str, k: kube.Kube, ns: str
) -> None:
    _, before = _scrape(metrics_url)
    k.apply(kube.claim_template("one", 1), ns=ns)
    k.create(
        kube.env_dump_pod("user", claims=[("gpu", {"resourceClaimTemplateName": "one"})]), ns=ns
    )
    k.wait_pod_running(ns, "user")
    text, running = _scrape(metrics_url)
    assert _claims(running, "prepare", "success") == _claims(before, "prepare", "success") + 1
    assert _claims(running, "prepare", "error") == _claims(before, "prepare", "error")
    prepared = "dra_cdi_driver_prepared_claims"
    assert _gauge(running, prepared) == _gauge(before, prepared) + 1
    assert _gauge(running, "dra_cdi_driver_prepared_devices") >= 1
    assert _gauge(running, "dra_cdi_driver_devices", health="healthy") == 8
    # What the README shows: the claim series and the gauges of this scrape.
    print("\n[e2e] /metrics while the pod runs:")
    for line in text.splitlines():
        if line.startswith(
            (
                "dra_cdi_driver_claim_operations_total",
                "dra_cdi_driver_prepared_",
                "dra_cdi_driver_devices",
                "dra_cdi_driver_resourceslice_writes_total",
                "dra_cdi_driver_api_errors_total",
                "dra_cdi_driver_build_info",
                'dra_cdi_driver_claim_operation_duration_seconds_bucket{le="0.01",operation="prepare",result="success"}',
                'dra_cdi_driver_claim_operation_duration_seconds_count{operation="prepare",result="success"}',
            )
        ):
            print(line)

    k.delete("pod", "user", ns)
    k.wait(
        "the claim unprepared",
        lambda: (
            _claims(_scrape(metrics_url)[1], "unprepare", "success")
            >= _claims(before, "unprepare", "success") + 1
        ),
        60,
    )
    _, after = _scrape(metrics_url)
    assert _gauge(after, prepared) == _gauge(before, prepared)
    assert _claims(after, "unprepare", "error") == _claims(before, "unprepare", "error")
