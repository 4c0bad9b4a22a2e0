"""The chart against a real API server, and the driver running with the chart's identity.

Uses the e2e cluster (tests/e2e: E2E_PROVIDER, default local; skipped when none can run).
The chart is installed under its own release, namespace and driver name
(deploy-test.example.com), with its DaemonSet pinned to no node: the cluster's own driver
keeps serving gpu.cdi.example.com undisturbed. Checked here:

- the plain manifests pass a server-side dry run;
- the ValidatingAdmissionPolicy's CEL type-checks, and with a token of a pod on the node the
  driver's service account may write that node's ResourceSlices and no other's;
- the service account can do exactly what the driver needs;
- the driver, started with the DaemonSet's environment and that token (what it gets in the
  pod), and confined as the container is (no capabilities, no privilege escalation, a
  read-only root with only the hostPath dirs writable), publishes its slices, answers
  /healthz, prepares a claim for a pod and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import kube
from tests.e2e.harness.driver import driver_command
from tests.e2e.harness.providers import E2ECluster

from .conftest import REPO_ROOT, Obj, one, template

pytestmark = pytest.mark.e2e

DRIVER = "deploy-test.example.com"
RELEASE = "deploy-test"
MANIFESTS = REPO_ROOT / "deploy" / "manifests" / "dra-cdi-driver.yaml"
OTHER_NODE = "no-such-node"


@dataclass
class Install:
    namespace: str
    objects: list[Obj]
    service_account: str
    token_pod: str
    kubeconfig: Path  # the driver's identity: a token bound to token_pod, on the node
    unbound_kubeconfig: Path  # the same service account, token bound to nothing
    driver: kube.Kube
    node: str


def token_kubeconfig(admin: Path, token: str, dest: Path) -> Path:
    """A kubeconfig with the admin's server and CA, authenticating with `token` only.

    The CA is a file next to it, as in a pod (the in-cluster config reads
    /var/run/secrets/kubernetes.io/serviceaccount/ca.crt): with certificate-authority-data
    the Kubernetes client would write it to a temporary file first.
    """
    cfg = yaml.safe_load(admin.read_text())
    cluster = dict(cfg["clusters"][0]["cluster"])
    ca_file = dest.with_suffix(".ca.crt")
    if "certificate-authority-data" in cluster:
        ca_file.write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
    else:
        ca = Path(cluster.pop("certificate-authority"))
        ca_file.write_bytes((ca if ca.is_absolute() else admin.parent / ca).read_bytes())
    cluster["certificate-authority"] = str(ca_file)
    dest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    dest.chmod(0o600)
    return dest


def cluster_scoped(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if "namespace" not in o["metadata"]]


@pytest.fixture(scope="module")
def installed(
    cluster: E2ECluster, helm: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    k = cluster.kube
    namespace = f"deploy-test-{uuid.uuid4().hex[:5]}"
    objs = template(
        helm,
        {"driverName": DRIVER, "nodeSelector.dra-cdi-driver/test": "no-node-has-this"},
        release=RELEASE,
        namespace=namespace,
    )
    k.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        k.run("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(objs))
        sa = one(objs, "ServiceAccount")["metadata"]["name"]
        # A pod of the service account on the node: its token carries the node's name.
        pod = kube.env_dump_pod("token-holder", node_name=cluster.node_name)
        pod["spec"]["serviceAccountName"] = sa
        k.create(pod, ns=namespace)
        k.wait_pod_running(namespace, "token-holder", timeout=120)
        tmp = tmp_path_factory.mktemp("deploy")
        admin = Path(str(k.kubeconfig))
        bound = k.run(
            "create", "token", sa, "-n", namespace, "--duration=2h",
            "--bound-object-kind=Pod", "--bound-object-name=token-holder",
        ).strip()  # fmt: skip
        unbound = k.run("create", "token", sa, "-n", namespace, "--duration=1h").strip()
        kc = token_kubeconfig(admin, bound, tmp / "driver.kubeconfig")
        yield Install(
            namespace=namespace,
            objects=objs,
            service_account=sa,
            token_pod="token-holder",
            kubeconfig=kc,
            unbound_kubeconfig=token_kubeconfig(admin, unbound, tmp / "unbound.kubeconfig"),
            driver=kube.Kube(kc, kubectl=k.kubectl),
            node=cluster.node_name,
        )
    finally:
        for o in cluster_scoped(objs):
            k.delete(o["kind"].lower(), o["metadata"]["name"], wait=False)
        k.run("delete", "resourceslices", f"--field-selector=spec.driver={DRIVER}", check=False)
        k.delete("namespace", namespace, timeout=120)


def resource_slice(name: str, node: str, generation: int = 1) -> Obj:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": [],
        },
    }


def refused(k: kube.Kube, *args: str, input: str | None = None) -> str:
    with pytest.raises(kube.KubectlError) as err:
        k.run(*args, input=input)
    return err.value.stderr


# ---------------------------------------------------------------------------------------


def test_plain_manifests_pass_a_server_side_dry_run(k: kube.Kube) -> None:
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    namespace = docs[0]["metadata"]["name"]
    created = k.get_or_none("namespace", namespace) is None
    if created:  # a dry run cannot create objects in a namespace that does not exist
        k.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        out = k.run("apply", "--dry-run=server", "-f", str(MANIFESTS))
    finally:
        if created:
            k.delete("namespace", namespace, wait=False)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == len(docs), out
    assert all(ln.endswith("(server dry run)") for ln in lines), out


def test_nvidia_variant_passes_a_server_side_dry_run(
    k: kube.Kube, helm: str, installed: Install
) -> None:
    objs = template(
        helm,
        {"deviceSource": "nvidia", "nvidia.cdiMode": "toolkit", "driverName": DRIVER},
        release="deploy-nvidia",  # a new DaemonSet: the API validates it whole
        namespace=installed.namespace,
    )
    ds = one(objs, "DaemonSet")
    out = k.run("apply", "--dry-run=server", "-f", "-", input=json.dumps(ds))
    assert out.strip().endswith("(server dry run)"), out


@pytest.mark.parametrize("suffix", ["-resourceslices", "-resourceclaim-status"])
def test_admission_policy_type_checks_cleanly(
    k: kube.Kube, installed: Install, suffix: str
) -> None:
    [name] = [
        o["metadata"]["name"]
        for o in installed.objects
        if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"].endswith(suffix)
    ]

    def checked() -> Obj | None:
        p = k.get("validatingadmissionpolicy", name)
        status = p.get("status", {})
        done = status.get("observedGeneration") == p["metadata"]["generation"]
        return status if done and "typeChecking" in status else None

    status = k.wait("type checking of the policy", checked, 60)
    assert not status["typeChecking"].get("expressionWarnings"), status


def _apply_status(d: kube.Kube, ns: str, uid: str, devices: list[Obj]) -> None:
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "status-test", "namespace": ns, "uid": uid},
        "status": {"devices": devices},
    }
    d.run(
        "apply", "--server-side", "--force-conflicts", "--subresource=status",
        f"--field-manager={DRIVER}/test", "-f", "-", input=json.dumps(body),
    )  # fmt: skip


def test_driver_may_write_only_its_own_nodes_claim_status(
    k: kube.Kube, installed: Install, ns: str
) -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "status-test"},
        "spec": {
            "devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": DRIVER}}]}
        },
    }
    k.create(claim, ns=ns)
    results = [
        {"request": "gpu", "driver": DRIVER, "pool": node, "device": "gpu-0"}
        for node in (installed.node, OTHER_NODE)
    ]
    allocation = {"devices": {"results": results}, "nodeSelector": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [installed.node]}]}
    ]}}  # fmt: skip
    k.run(
        "patch", "resourceclaim", "status-test", "-n", ns, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"allocation": allocation}}),
    )  # fmt: skip
    uid = k.get("resourceclaim", "status-test", ns)["metadata"]["uid"]
    ready = [{"type": "Ready", "status": "True", "reason": "Prepared", "message": "",
              "lastTransitionTime": "2026-01-01T00:00:00Z"}]  # fmt: skip

    def entry(pool: str) -> Obj:
        return {"driver": DRIVER, "pool": pool, "device": "gpu-0", "conditions": ready}

    _apply_status(installed.driver, ns, uid, [entry(installed.node)])  # its own node: fine
    err = refused(
        installed.driver, "apply", "--server-side", "--force-conflicts", "--subresource=status",
        f"--field-manager={DRIVER}/test", "-f", "-",
        input=json.dumps({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "status-test", "namespace": ns, "uid": uid},
            "status": {"devices": [entry(installed.node), entry(OTHER_NODE)]},
        }),
    )  # fmt: skip
    assert "may write only the status of its own devices" in err, err
    _apply_status(installed.driver, ns, uid, [])  # and it takes its entries back
    assert not k.get("resourceclaim", "status-test", ns)["status"].get("devices")


def test_node_token_carries_the_node_name(installed: Install) -> None:
    me = json.loads(installed.driver.run("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert me["username"] == (
        f"system:serviceaccount:{installed.namespace}:{installed.service_account}"
    )
    assert me["extra"]["authentication.kubernetes.io/node-name"] == [installed.node]


def test_driver_may_write_only_its_own_nodes_slices(k: kube.Kube, installed: Install) -> None:
    d = installed.driver
    own = resource_slice(f"{installed.namespace}-own", installed.node)
    other = resource_slice(f"{installed.namespace}-other", OTHER_NODE)
    try:
        # Its own node: create, update, delete.
        d.create(own)
        own["metadata"]["resourceVersion"] = d.get("resourceslice", own["metadata"]["name"])[
            "metadata"
        ]["resourceVersion"]
        own["spec"]["pool"]["generation"] = 2
        d.run("replace", "-f", "-", input=json.dumps(own))

        # Another node: no create...
        err = refused(d, "create", "-f", "-", input=json.dumps(other))
        assert "ValidatingAdmissionPolicy" in err
        assert f"may not write a ResourceSlice of node {OTHER_NODE}" in err
        # ... no update and no delete of the slice an admin made for it.
        k.create(other)
        current = k.get("resourceslice", other["metadata"]["name"])
        current["spec"]["pool"]["generation"] = 2
        err = refused(d, "replace", "-f", "-", input=json.dumps(current))
        assert f"may not write a ResourceSlice of node {OTHER_NODE}" in err
        err = refused(d, "delete", "resourceslice", other["metadata"]["name"], "--wait=false")
        assert f"may not delete a ResourceSlice of node {OTHER_NODE}" in err
        assert k.get_or_none("resourceslice", other["metadata"]["name"]) is not None

        d.run("delete", "resourceslice", own["metadata"]["name"])
    finally:
        for s in (own, other):
            k.delete("resourceslice", s["metadata"]["name"], wait=False)


def test_token_without_a_node_may_not_write_slices(installed: Install) -> None:
    unbound = kube.Kube(installed.unbound_kubeconfig, kubectl=installed.driver.kubectl)
    own = resource_slice(f"{installed.namespace}-unbound", installed.node)
    err = refused(unbound, "create", "-f", "-", input=json.dumps(own))
    assert "carries no node name" in err


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "resourceclaims.resource.k8s.io", True),
        ("list", "resourceclaims.resource.k8s.io", False),
        ("update", "resourceclaims.resource.k8s.io", False),
        ("update", "resourceclaims.resource.k8s.io/status", True),  # claimDeviceStatus
        ("patch", "resourceclaims.resource.k8s.io/status", True),
        ("patch", "resourceclaims.resource.k8s.io", False),
        ("get", "resourceslices.resource.k8s.io", True),
        ("list", "resourceslices.resource.k8s.io", True),
        ("watch", "resourceslices.resource.k8s.io", True),
        ("create", "resourceslices.resource.k8s.io", True),
        ("update", "resourceslices.resource.k8s.io", True),
        ("delete", "resourceslices.resource.k8s.io", True),
        ("patch", "resourceslices.resource.k8s.io", False),
        ("deletecollection", "resourceslices.resource.k8s.io", False),
        ("get", "nodes", True),
        ("list", "nodes", False),
        ("update", "nodes", False),
        ("get", "secrets", False),
        ("create", "pods", False),
        ("create", "deviceclasses.resource.k8s.io", False),
    ],
)
def test_service_account_rights(
    installed: Install, verb: str, resource: str, allowed: bool
) -> None:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, "-n", "default"]
    if sub:
        args.append(f"--subresource={sub}")
    answer = installed.driver.run(*args, check=False).strip()
    assert answer == ("yes" if allowed else "no")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemonset_env(objs: list[Obj], node: str) -> dict[str, str]:
    """The driver container's environment as the kubelet would give it, downward API in."""
    container = one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    fields = {"spec.nodeName": node, "metadata.uid": str(uuid.uuid4())}
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


# Runs a command the way the DaemonSet's container runs: in its own mount namespace with
# the root filesystem read-only (readOnlyRootFilesystem) but the hostPath dirs writable, as
# uid 0 with no capabilities at all (drop: [ALL]) and no_new_privs
# (allowPrivilegeEscalation: false). Stricter than the pod in one way: /tmp stays read-only.
SANDBOX = """
set -e
while [ "$1" != -- ]; do mount --bind "$1" "$1"; shift; done
shift
mount -o remount,bind,ro /
exec setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs -- "$@"
"""


def sandboxed(objs: list[Obj], command: list[str]) -> list[str]:
    """`command` confined as the chart's container is (checked against its spec)."""
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == 0
    writable = []
    for v in pod["volumes"]:
        if "hostPath" not in v:
            continue
        path = Path(v["hostPath"]["path"])
        if v["hostPath"]["type"] == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)  # what the kubelet does for the pod
        assert path.is_dir(), f"hostPath {path} ({v['hostPath']['type']}) is missing"
        writable.append(str(path))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sh",
            *writable, "--", *command]  # fmt: skip


def test_driver_serves_with_the_charts_environment_and_service_account(
    cluster: E2ECluster, installed: Install, helm: str, k: kube.Kube, ns: str, tmp_path: Path
) -> None:
    if cluster.local is None:
        pytest.skip("needs the kubelet's dirs on this machine (local provider)")
    command = driver_command()
    assert command is not None
    from tests.e2e.harness.local import LocalCluster

    local = cluster.local
    assert isinstance(local, LocalCluster)
    assert cluster.cdi_root is not None
    port = free_port()
    # The DaemonSet's environment, for this node's kubelet and CDI dirs.
    objs = template(
        helm,
        {
            "driverName": DRIVER,
            "kubeletDir": str(local.kubelet_root),
            "cdiRoot": str(cluster.cdi_root),
            "mockDevices": 2,
            "healthzPort": port,
            "logLevel": "debug",
        },
        release=RELEASE,
        namespace=installed.namespace,
    )
    env = daemonset_env(objs, installed.node)
    # In the pod, the in-cluster config reads the service account token; here: the same
    # identity (a token bound to a pod on this node) through a kubeconfig.
    env["KUBECONFIG"] = str(installed.kubeconfig)
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs unshare and setpriv (util-linux) to confine the driver")
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            sandboxed(objs, command),
            env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _check_driver(k, ns, installed, port, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Forbidden" not in text and " 403" not in text, text[-3000:]


def _check_driver(
    k: kube.Kube, ns: str, installed: Install, port: int, proc: subprocess.Popen[bytes], log: Path
) -> None:
    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"driver exited {proc.returncode}:\n{log.read_text()[-3000:]}")

    def slices() -> list[Obj] | None:
        alive()
        found = [
            s
            for s in k.items("resourceslices", None, f"--field-selector=spec.driver={DRIVER}")
            if s["spec"].get("nodeName") == installed.node
        ]
        return found or None

    published = k.wait(f"ResourceSlices of {DRIVER}", slices, 60)
    devices = sorted(d["name"] for s in published for d in s["spec"].get("devices", []))
    assert devices == ["gpu-0", "gpu-1"]
    owners = published[0]["metadata"].get("ownerReferences", [])
    assert [(o["kind"], o["name"]) for o in owners] == [("Node", installed.node)]

    def healthy() -> bool:
        alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(r.status == 200)

    assert k.wait("driver /healthz 200", healthy, 30)

    # A pod with a claim of this driver's class: the driver reads the claim with the
    # service account's token and prepares it.
    k.apply(kube.device_class(DRIVER, DRIVER))
    try:
        k.create(kube.claim_template("one", 1, device_class=DRIVER), ns=ns)
        pod = kube.env_dump_pod("user", claims=[("gpu", {"resourceClaimTemplateName": "one"})])
        script = pod["spec"]["containers"][0]["command"][-1]
        pod["spec"]["containers"][0]["command"][-1] = script.replace("^(GPU_", "^(DRA_|GPU_")
        k.create(pod, ns=ns)
        k.wait_pod_running(ns, "user", timeout=120)
        env = k.container_env(ns, "user")
        assert env["DRA_DRIVER_NAME"] == DRIVER
        assert env["DRA_NODE_NAME"] == installed.node
        assert len(kube.gpu_devices(env)) == 1
        print(f"driver RSS: {_rss_mib(proc.pid):.0f} MiB")
        k.delete("pod", "user", ns, timeout=60)
    finally:
        k.delete("deviceclass", DRIVER, wait=False)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
