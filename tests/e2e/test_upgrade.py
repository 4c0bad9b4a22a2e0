"""A rolling update of the driver on a real kubelet (local provider): a second instance with
its own pod UID starts while pods are being created, the kubelet registers it beside the
first, the first stops. No prepare fails, every pod runs, and every claim is unprepared
afterwards, whichever instance prepared it. Then the roll back to the first instance."""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from .harness import kube
from .harness.driver import LocalDriver, driver_command
from .harness.providers import E2ECluster

pytestmark = pytest.mark.e2e

PODS = 6  # of the 8 mock GPUs, one each


def _pod(name: str) -> kube.Obj:
    return kube.env_dump_pod(name, claims=[("gpu", {"resourceClaimTemplateName": "one"})])


def _kubelet_lines(cluster: E2ECluster, message: str, endpoint: str) -> list[str]:
    pattern = re.compile(rf'"{message}".*endpoint="{re.escape(endpoint)}"')
    return [line for line in cluster.kubelet_log().splitlines() if pattern.search(line)]


def _uids(k: kube.Kube, ns: str) -> set[str]:
    return {c["metadata"]["uid"] for c in k.items("resourceclaims", ns)}


def _claims_logged(driver: LocalDriver, message: str, ns: str) -> set[str]:
    """The claims of namespace `ns` that `driver` logged `message` for."""
    pattern = re.compile(rf'msg="{message}" claim="{re.escape(ns)}/([^ ]+) ')
    return set(pattern.findall(driver.proc.log.read_text(errors="replace")))


def _left_on_node(cluster: E2ECluster, uids: set[str]) -> list[str]:
    assert cluster.cdi_root is not None
    specs = [p.name for p in cluster.cdi_root.iterdir() if any(u in p.name for u in uids)]
    records = [p.name for p in cluster.checkpoint_dir.glob("*.json") if p.stem in uids]
    return specs + records


def test_a_roll_of_the_driver_while_pods_start(cluster: E2ECluster, k: kube.Kube, ns: str) -> None:
    from .harness.local import LocalCluster

    old = cluster.driver
    local = cluster.local
    if not isinstance(old, LocalDriver) or not isinstance(local, LocalCluster):
        pytest.skip("starts a second driver process next to the kubelet (local provider)")
    command = driver_command()
    assert command is not None
    # A pod UID is a 36-character UUID; under the local cluster's long /tmp dirs the driver
    # would name its sockets with only the start of one: a short one keeps the names plain.
    new = LocalDriver(local, command, env={"POD_UID": uuid.uuid4().hex[:12]})
    # The same mock GPUs as the first instance (providers.py adds these to its argv).
    new.proc.argv += [a for a in old.proc.argv if a.startswith("--mock-") and "=" in a]
    cluster.log_files[new.name] = new.proc.log
    k.apply(kube.claim_template("one", 1), ns=ns)

    # One pod before the roll (the first instance prepares its claim), then pods keep coming
    # throughout it: during the overlap and after the first instance is gone.
    k.create(_pod("p0"), ns=ns)
    k.wait_pod_running(ns, "p0")
    created = ["p0"]
    failed: list[BaseException] = []
    stop_creating = threading.Event()

    def create_pods() -> None:
        try:
            for i in range(1, PODS):
                k.create(_pod(f"p{i}"), ns=ns)
                created.append(f"p{i}")
                if stop_creating.wait(1.5):
                    return
        except BaseException as err:  # reported by the test below
            failed.append(err)

    creator = threading.Thread(target=create_pods)
    registered = cluster.registrations()
    creator.start()
    try:
        new.start()
        new.wait_sockets()
        cluster.wait_registered(registered)
        both = _kubelet_lines(cluster, "Registered DRA plugin", str(new.dra_socket))
        assert both and "numPlugins=2" in both[-1], both  # beside the first, not instead
        print(f"\n[e2e] kubelet: {both[-1]}")
        # Earlier tests restarted the session's driver on the same socket: only what the
        # kubelet logs from now on is this unregistration.
        seen = len(_kubelet_lines(cluster, "Unregistered DRA plugin", str(old.dra_socket)))
        old.stop()
        gone = k.wait(
            "the kubelet unregistering the first instance",
            lambda: _kubelet_lines(cluster, "Unregistered DRA plugin", str(old.dra_socket))[seen:],
            60,
        )
        assert "numPlugins=1" in gone[-1], gone
        print(f"[e2e] kubelet: {gone[-1]}")
        creator.join(60)
        assert not failed, failed
        assert len(created) == PODS

        for name in created:
            k.wait_pod_running(ns, name, timeout=180)
        # Not one FailedPrepareDynamicResources, nor any other warning, on any pod.
        warnings = [
            f"{e.get('reason')} {e['involvedObject'].get('name')}: {e.get('message', '')}"
            for e in k.events(ns)
            if e.get("type") == "Warning"
        ]
        assert warnings == []
        uids = _uids(k, ns)
        assert len(uids) == PODS
        assert "another instance of the driver serves on this node" in new.proc.log.read_text()
        by_old = _claims_logged(old, "claim prepared", ns)
        by_new = _claims_logged(new, "claim prepared", ns)
        print(
            f"[e2e] prepared by the first instance: {sorted(by_old)}, by the second: "
            f"{sorted(by_new)}"
        )
        assert by_old and by_new and len(by_old | by_new) == PODS

        # Every claim is unprepared by the instance left, whichever one prepared it.
        for name in created:
            k.delete("pod", name, ns, wait=False)
        k.wait("every claim unprepared", lambda: not _left_on_node(cluster, uids), 120)
        # ...the first instance's claims included, from the records it left in the plugin dir.
        assert by_old <= _claims_logged(new, "claim unprepared", ns)
    finally:
        stop_creating.set()
        creator.join(60)
        # Roll back to the session's driver, the same way round.
        registered = cluster.registrations()
        if not old.proc.running():
            old.start()
            old.wait_sockets()
            cluster.wait_registered(registered)
        new.stop()
        del cluster.log_files[new.name]
    assert not new.dra_socket.exists() and not new.registration_socket.exists()
