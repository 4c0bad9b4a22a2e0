"""The API server the driver talks to goes down for 60 s: prepare fails fast and clearly, and
everything heals by itself when it comes back.

Local provider only. The control plane gets a second kube-apiserver on the same etcd, as a
highly available one has, and the driver is pointed at it alone; the kubelet, scheduler and
controllers keep the first. Stopping the second one is then an outage of exactly the API
server the driver uses. (The kubelet reads each claim itself before it asks the driver to
prepare it: when the kubelet's own API server is down too, it asks nothing, and there is no
driver behaviour to see.)

During the outage a new pod's prepare must fail at once with "cannot reach the API server"
(the kubelet posts it as an event); when the API server is back the pod starts with no one
touching the driver, the publisher writes nothing it need not, and nothing leaks.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .harness import kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

OUTAGE_S = 60
KUBELET_TIMEOUT_S = 45


def _prepare_lines(log: Path, offset: int) -> list[str]:
    text = log.read_bytes()[offset:].decode(errors="replace")
    return [ln for ln in text.splitlines() if "prepare failed" in ln or "claim prepared" in ln]


def test_an_api_server_outage_gives_fast_clear_errors_and_heals_without_help(
    cluster: E2ECluster, k: kube.Kube, ns: str
) -> None:
    if cluster.local is None or cluster.driver is None:
        pytest.skip("needs to run a second kube-apiserver and restart the driver (local)")
    from .harness.driver import LocalDriver
    from .harness.local import SECOND_APISERVER, LocalCluster

    local, driver = cluster.local, cluster.driver
    assert isinstance(local, LocalCluster) and isinstance(driver, LocalDriver)
    argv = driver.proc.argv
    at = argv.index("--kubeconfig") + 1
    original = argv[at]
    argv[at] = str(local.second_apiserver())
    driver.restart()
    try:
        driver.wait_sockets()
        outage(local, driver, k, ns, SECOND_APISERVER)
    finally:
        argv[at] = original
        driver.restart()
        driver.wait_sockets()
        local.stop_apiserver(SECOND_APISERVER)


def outage(local: object, driver: object, k: kube.Kube, ns: str, name: str) -> None:
    from .harness.driver import LocalDriver
    from .harness.local import LocalCluster

    assert isinstance(local, LocalCluster) and isinstance(driver, LocalDriver)
    log = driver.proc.log
    k.wait(
        "the driver's slices published", lambda: "published ResourceSlices" in log.read_text(), 60
    )

    local.stop_apiserver(name)
    down_at = time.monotonic()
    offset = log.stat().st_size
    k.apply(kube.claim_template("one", 1), ns=ns)
    pod = kube.env_dump_pod("during", claims=[("gpu", {"resourceClaimTemplateName": "one"})])
    k.create(pod, ns=ns)
    created_at = time.monotonic()

    failures = k.wait("the driver's first prepare failure", lambda: _prepare_lines(log, offset), 45)
    first_error_s = time.monotonic() - created_at
    assert all("prepare failed" in ln and "cannot reach the API server" in ln for ln in failures)
    assert all(f"{ns}/" in ln for ln in failures), failures
    events = k.wait(
        "a prepare error event on the pod",
        lambda: "cannot reach the API server" in (text := k.events_text(ns, "during")) and text,
        KUBELET_TIMEOUT_S,
    )
    assert "FailedPrepareDynamicResources" in events or "Failed" in events, events
    assert k.get("pod", "during", ns)["status"]["phase"] == "Pending"

    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    local.start_apiserver(name)
    back_at = time.monotonic()
    offset_back = log.stat().st_size

    k.wait_pod_running(ns, "during", timeout=180)
    running_s = time.monotonic() - back_at
    assert len(kube.gpu_devices(k.container_env(ns, "during"))) == 1
    print(
        f"\n[outage] {OUTAGE_S} s: first prepare error {first_error_s:.1f} s after the pod was "
        f"created; pod running {running_s:.1f} s after the API server came back"
    )

    # The slices did not change: the publisher's re-sync needs no write.
    text = log.read_bytes()[offset_back:].decode(errors="replace")
    writes = [ln for ln in text.splitlines() if "published ResourceSlices" in ln]
    assert all(re.search(r"created=0 updated=0 deleted=0", ln) for ln in writes), writes

    # Nothing leaks: the pod's spec and record go with it.
    k.run("delete", "pod", "during", "-n", ns, "--wait=true", "--timeout=120s", timeout=150)
    k.wait("no CDI spec left", lambda: not list(driver.cdi_root.glob("*.json")), 60)
    assert not list(driver.checkpoint_dir.glob("*.json"))
