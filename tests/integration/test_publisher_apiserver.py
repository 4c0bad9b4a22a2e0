"""The publisher against a real kube-apiserver (with etcd): the same binaries the e2e local
provider runs, from its cache (tests/e2e/local/setup.sh). Skipped when they are missing.

No controller-manager, scheduler or kubelet: this checks what only a real server can tell —
field selectors, validation of our slices in every API version, canonical forms that must
not cause writes, resourceVersion conflicts, RBAC errors and watches — in seconds.
"""

from __future__ import annotations

import copy
import json
import logging
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from dra_cdi_driver.devices import Inventory
from dra_cdi_driver.devices.mock import MockSource
from dra_cdi_driver.kubeapi.publisher import Publisher, delete_node_slices
from dra_cdi_driver.kubeapi.slice_api import KubeSliceApi, SliceApiError
from dra_cdi_driver.kubeapi.slices import Slice, slice_name
from tests.e2e.harness import config as e2e_config
from tests.e2e.harness import pki, procs

DRIVER = "gpu.cdi.example.com"
NODE = "publisher-node"
GROUP = "resource.k8s.io"


def missing_binaries() -> list[str]:
    bins = e2e_config.binaries()
    return [str(p) for p in (bins.kube_apiserver, bins.etcd) if not p.exists()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    """etcd + kube-apiserver on loopback ports, with an admin and a node identity."""

    root: Path
    url: str
    pki: pki.Pki
    procs: list[procs.Proc] = field(default_factory=list)

    def kubeconfig(self, user: str = "admin") -> Path:
        path = self.root / f"{user}.kubeconfig"
        if not path.exists():
            pki.write_kubeconfig(path, server=self.url, pki=self.pki, user=user, name=user)
        return path

    def client(self, user: str = "admin") -> client.ApiClient:
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(self.kubeconfig(user)), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = 8
        return client.ApiClient(configuration)

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        with urllib.request.urlopen(self.url + "/readyz", context=context, timeout=5) as r:
            return bool(r.status == 200)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A raw request as admin (for calls the client lacks, e.g. DeleteCollection with a
        field selector, which is how the kubelet wipes a node's slices)."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.crt("admin")), str(self.pki.key("admin")))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=context, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{method} {path}: {err.code} {err.read().decode()}") from None


@contextmanager
def local_apiserver(root: Path) -> Iterator[ApiServer]:
    """Start etcd and a kube-apiserver serving resource.k8s.io v1, v1beta2 and v1beta1."""
    bins = e2e_config.binaries()
    ports = {name: _free_port() for name in ("etcd", "peer", "api")}
    keys = pki.make_pki(root / "pki", node_name=NODE, node_ip="127.0.0.1", service_ip="10.0.0.1")
    server = ApiServer(root, f"https://127.0.0.1:{ports['api']}", keys)
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['peer']}"
    etcd = procs.Proc(
        "etcd",
        [
            str(bins.etcd),
            "--name=p",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=p={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        root / "logs" / "etcd.log",
        root / "run" / "etcd.pid",
    )
    apiserver = procs.Proc(
        "kube-apiserver",
        [
            str(bins.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['api']}",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={root / 'certs'}",
            f"--tls-cert-file={keys.crt('apiserver')}",
            f"--tls-private-key-file={keys.key('apiserver')}",
            f"--client-ca-file={keys.ca}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={keys.sa_pub}",
            f"--service-account-signing-key-file={keys.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",  # no Node authorizer: the node identity has no rights
            f"--runtime-config={GROUP}/v1beta1=true,{GROUP}/v1beta2=true",
            "--profiling=false",
            "--v=1",
        ],
        root / "logs" / "kube-apiserver.log",
        root / "run" / "kube-apiserver.pid",
    )
    server.procs = [etcd, apiserver]
    try:
        etcd.start()
        apiserver.start()
        procs.wait_for(
            "kube-apiserver /readyz", server.ready, 120, interval=0.5, procs=server.procs
        )
        yield server
    finally:
        for p in reversed(server.procs):
            p.stop()


pytestmark = pytest.mark.skipif(
    bool(missing_binaries()),
    reason="kube-apiserver/etcd not cached (run tests/e2e/local/setup.sh): "
    + ", ".join(missing_binaries()),
)


@pytest.fixture(scope="module")
def apiserver() -> Iterator[ApiServer]:
    with (
        tempfile.TemporaryDirectory(prefix="dra-publisher-") as tmp,
        local_apiserver(Path(tmp)) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def admin(apiserver: ApiServer) -> client.ApiClient:
    return apiserver.client()


@pytest.fixture
def node(admin: client.ApiClient) -> Iterator[str]:
    """A fresh Node object (the slices' owner), and none of its slices left afterwards."""
    core = client.CoreV1Api(admin)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE)))
    yield NODE
    delete_node_slices(admin, DRIVER, NODE)
    core.delete_node(NODE)


class CountingApi(KubeSliceApi):
    """Counts the writes the publisher makes (the figure steady state must keep at 0)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.writes: Counter[str] = Counter()

    def create_slice(self, body: Slice) -> None:
        self.writes["create"] += 1
        super().create_slice(body)

    def replace_slice(self, body: Slice) -> None:
        self.writes["update"] += 1
        super().replace_slice(body)

    def delete_slice(self, name: str, resource_version: str | None) -> None:
        self.writes["delete"] += 1
        super().delete_slice(name, resource_version)


def inventory(count: int) -> Inventory:
    inv = Inventory(
        MockSource(NODE, count, dev_dir=Path("/nonexistent"), lib_dir=Path("/nonexistent"))
    )
    inv.refresh()
    return inv


def set_count(inv: Inventory, count: int) -> None:
    assert isinstance(inv.source, MockSource)
    inv.source.count = count
    inv.refresh()


def server_slices(admin: client.ApiClient, version: str = "v1") -> dict[str, Slice]:
    listed: Any = client.CustomObjectsApi(admin).list_cluster_custom_object(
        GROUP, version, "resourceslices"
    )
    return {s["metadata"]["name"]: s for s in listed["items"]}


def our_pool(admin: client.ApiClient) -> tuple[set[int], set[int], int]:
    ours = [
        s
        for s in server_slices(admin).values()
        if s["spec"]["driver"] == DRIVER and s["spec"]["nodeName"] == NODE
    ]
    return (
        {s["spec"]["pool"]["generation"] for s in ours},
        {s["spec"]["pool"]["resourceSliceCount"] for s in ours},
        sum(len(s["spec"].get("devices") or []) for s in ours),
    )


def one_generation(admin: client.ApiClient, slices: int, devices: int) -> bool:
    """The pool is complete and consistent (how many generations it took is timing)."""
    generations, counts, published = our_pool(admin)
    return len(generations) == 1 and counts == {slices} and published == devices


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_discovery_picks_v1(admin: client.ApiClient) -> None:
    assert KubeSliceApi(admin, DRIVER, NODE).api_version() == "v1"


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1beta1"])
def test_each_version_is_accepted_and_steady(
    admin: client.ApiClient, node: str, version: str
) -> None:
    api = CountingApi(admin, DRIVER, node, api_version=version)
    publisher = Publisher(api, inventory(129))
    result = publisher.sync_once()
    assert result.generation == 1 and len(result.created) == 2
    # Read back in v1: the server converted our shape, so it understood it.
    assert our_pool(admin) == ({1}, {2}, 129)
    device = server_slices(admin)[slice_name(DRIVER, node, 0)]["spec"]["devices"][0]
    assert device["attributes"]["driverVersion"] == {"version": "1.0.0"}
    assert device["capacity"]["memory"] == {"value": "80Gi"}
    # What the server stored compares equal to what we want: no more writes.
    for _ in range(3):
        assert publisher.sync_once().writes == 0
    assert sum(api.writes.values()) == 2


def test_server_canonical_quantities_cause_no_writes(
    admin: client.ApiClient, node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dra_cdi_driver.devices.mock.MEMORY", "1024Mi")
    api = CountingApi(admin, DRIVER, node)
    publisher = Publisher(api, inventory(2))
    publisher.sync_once()
    stored = server_slices(admin)[slice_name(DRIVER, node, 0)]
    assert stored["spec"]["devices"][0]["capacity"]["memory"]["value"] == "1Gi"
    assert publisher.sync_once().writes == 0


def test_field_selectors_select_only_our_pool(admin: client.ApiClient, node: str) -> None:
    objects = client.CustomObjectsApi(admin)
    for name, driver, node_name in (
        ("other-node", DRIVER, "elsewhere"),
        ("other-driver", "other.example.com", node),
    ):
        objects.create_cluster_custom_object(
            GROUP,
            "v1",
            "resourceslices",
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": name},
                "spec": {
                    "driver": driver,
                    "nodeName": node_name,
                    "pool": {"name": node_name, "generation": 1, "resourceSliceCount": 1},
                    "devices": [],
                },
            },
        )
    try:
        api = KubeSliceApi(admin, DRIVER, node)
        Publisher(api, inventory(3)).sync_once()
        assert [s["metadata"]["name"] for s in api.list_slices()] == [slice_name(DRIVER, node, 0)]
        assert {"other-node", "other-driver"} <= set(server_slices(admin))
    finally:
        for name in ("other-node", "other-driver"):
            objects.delete_cluster_custom_object(GROUP, "v1", "resourceslices", name)


def test_drift_is_repaired_through_the_watch(
    apiserver: ApiServer, admin: client.ApiClient, node: str
) -> None:
    api = CountingApi(admin, DRIVER, node)
    publisher = Publisher(api, inventory(200), max_backoff_s=0.5)
    publisher.start()
    try:
        assert publisher.synced.wait(10)
        eventually(lambda: our_pool(admin) == ({1}, {2}, 200))
        objects = client.CustomObjectsApi(admin)
        # The kubelet wipes the node's slices when it starts, in one DeleteCollection.
        apiserver.request(
            "DELETE", f"/apis/{GROUP}/v1/resourceslices?fieldSelector=spec.nodeName={node}"
        )
        eventually(lambda: one_generation(admin, slices=2, devices=200))
        # An admin edits one; a copy appears under another name.
        name = slice_name(DRIVER, node, 0)
        edited = server_slices(admin)[name]
        edited["spec"]["devices"][0]["attributes"]["model"] = {"string": "edited"}
        objects.replace_cluster_custom_object(GROUP, "v1", "resourceslices", name, edited)
        duplicate = copy.deepcopy(edited)
        duplicate["metadata"] = {"name": "a-copy"}
        objects.create_cluster_custom_object(GROUP, "v1", "resourceslices", duplicate)

        def repaired() -> bool:
            now = server_slices(admin)
            return (
                "a-copy" not in now
                and name in now
                and now[name]["spec"]["devices"][0]["attributes"]["model"]
                == {"string": "Mock GPU 80GB"}
                and one_generation(admin, slices=2, devices=200)
            )

        eventually(repaired)
        writes = sum(api.writes.values())
        time.sleep(2)
        assert sum(api.writes.values()) == writes, "steady state writes nothing"
    finally:
        publisher.stop()
    assert our_pool(admin)[2] == 200, "the slices stay after stop"


def test_forbidden_names_the_missing_rule(
    apiserver: ApiServer,
    admin: client.ApiClient,
    node: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The node identity may read slices and nodes but not create slices."""
    rbac = client.RbacAuthorizationV1Api(admin)
    user = f"system:node:{NODE}"
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name="publisher-test-read-only"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[GROUP], resources=["resourceslices"], verbs=["get", "list", "watch"]
                ),
                client.V1PolicyRule(api_groups=[""], resources=["nodes"], verbs=["get"]),
            ],
        )
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="publisher-test-read-only"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="publisher-test-read-only",
            ),
            subjects=[
                client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")
            ],
        )
    )
    try:
        api = KubeSliceApi(apiserver.client("kubelet-client"), DRIVER, node)
        with pytest.raises(
            SliceApiError,
            match=r"needs `create` on "
            r"resourceslices\.resource\.k8s\.io",
        ):
            Publisher(api, inventory(1)).sync_once()
        # In the background: logged once, not once per retry.
        caplog.set_level(logging.WARNING, logger="dra_cdi_driver.kubeapi.publisher")
        publisher = Publisher(api, inventory(1), max_backoff_s=0.2)
        publisher.start()
        time.sleep(2)
        publisher.stop()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [json.dumps(getattr(r, "fields", {})) for r in warnings]
    finally:
        rbac.delete_cluster_role_binding("publisher-test-read-only")
        rbac.delete_cluster_role("publisher-test-read-only")


def test_watch_starts_from_the_state_then_resumes(admin: client.ApiClient, node: str) -> None:
    api = KubeSliceApi(admin, DRIVER, node)
    publisher = Publisher(api, inventory(1))
    publisher.sync_once()
    events = [e for e in api.watch_slices(None, timeout_s=1) if e.type != "BOOKMARK"]
    assert [e.type for e in events] == ["ADDED"]
    resume_from = events[0].resource_version
    assert resume_from
    set_count(publisher.inventory, 2)
    publisher.sync_once()
    later = [e for e in api.watch_slices(resume_from, timeout_s=1) if e.type != "BOOKMARK"]
    assert [e.type for e in later] == ["MODIFIED"]


def test_close_interrupts_a_watch(admin: client.ApiClient, node: str) -> None:
    api = KubeSliceApi(admin, DRIVER, node)
    done = threading.Event()

    def watch() -> None:
        try:
            for _ in api.watch_slices(None, timeout_s=60):
                pass
        except SliceApiError:
            pass
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.5)
    api.close()
    assert done.wait(5)


def test_missing_node_says_so(admin: client.ApiClient) -> None:
    api = KubeSliceApi(admin, DRIVER, "no-such-node")
    with pytest.raises(SliceApiError, match="--node-name"):
        Publisher(api, inventory(1)).sync_once()


def test_cleanup_deletes_only_this_nodes_slices(admin: client.ApiClient, node: str) -> None:
    Publisher(KubeSliceApi(admin, DRIVER, node), inventory(300)).sync_once()
    assert delete_node_slices(admin, DRIVER, node) == 3
    assert our_pool(admin) == (set(), set(), 0)
    assert delete_node_slices(admin, DRIVER, node) == 0


REPO = Path(__file__).resolve().parents[2]
PATHS = {
    "DeviceClass": "/apis/resource.k8s.io/v1/deviceclasses",
    "ResourceClaimTemplate": "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates",
    "Pod": "/api/v1/namespaces/{ns}/pods",
}


@pytest.fixture(scope="module")
def examples_ns(admin: client.ApiClient) -> str:
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="examples")))
    # No controller-manager here to make it; pods are refused without it.
    core.create_namespaced_service_account(
        "examples", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    return "examples"


@pytest.mark.parametrize(
    "manifest",
    sorted(
        str(p.relative_to(REPO))
        for p in [
            REPO / "deploy" / "deviceclass.yaml",
            *(REPO / "deploy" / "examples").glob("*.yaml"),
        ]
    ),
)
def test_deploy_manifests_are_valid(apiserver: ApiServer, examples_ns: str, manifest: str) -> None:
    """The DeviceClass and the examples pass the server's validation (CEL included)."""
    docs = [d for d in yaml.safe_load_all((REPO / manifest).read_text()) if d]
    assert docs
    for doc in docs:
        path = PATHS[doc["kind"]].format(ns=examples_ns) + "?dryRun=All&fieldValidation=Strict"
        apiserver.request("POST", path, doc)
