"""The cluster itself works: what every other scenario relies on."""

from __future__ import annotations

import pytest

from .harness import config, kube
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e


def test_plain_pod_runs_and_its_logs_are_readable(k: kube.Kube, ns: str) -> None:
    k.create(kube.env_dump_pod("plain"), ns=ns)
    k.wait_pod_running(ns, "plain", timeout=120)
    assert "ENV-DONE" in k.wait("log of plain", lambda: k.logs(ns, "plain"), 30)
    assert k.exec(ns, "plain", ["sh", "-c", "echo exec-ok"]).strip() == "exec-ok"


def test_dra_api_is_served(k: kube.Kube) -> None:
    assert "v1" in k.served_versions("resource.k8s.io")
    names = k.api_resources("resource.k8s.io")
    for kind in ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices"):
        assert any(n.startswith(kind + ".") for n in names), names
    dc = k.get("deviceclass", config.DRIVER_NAME)
    assert config.DRIVER_NAME in dc["spec"]["selectors"][0]["cel"]["expression"]


def test_kubelet_registered_the_driver(cluster: E2ECluster) -> None:
    if not cluster.can_restart_kubelet:
        pytest.skip("needs the kubelet log (local provider)")
    assert cluster.registrations() >= 1
