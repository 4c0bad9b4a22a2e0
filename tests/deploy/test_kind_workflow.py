"""What the user's kind workflow must show on the cluster it made (E2E_PROVIDER=kind only).

The kind provider (tests/e2e/harness/kind.py) has already run hack/kind-up.sh,
kind-load.sh and kind-install.sh: the driver runs as the chart's DaemonSet, from the image
`docker build` made of deploy/Dockerfile. Here:

- the driver's pod became Ready through its probes, registered with the kubelet, runs
  confined as the chart says, and logs one structured line per event;
- `helm upgrade` to a rebuilt image rolls the DaemonSet while a pod holds a claim: that pod
  keeps running, a pod created during the roll gets its device, and the new driver
  unprepares the claims the old one prepared;
- `helm uninstall` leaves no sockets, no CDI specs and (once the kubelet has noticed) no
  ResourceSlices on the node; installing again brings the driver back.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import kube
from tests.e2e.harness.kind import NAMESPACE, RELEASE, KindCluster
from tests.e2e.harness.providers import E2ECluster

from .conftest import Obj

pytestmark = pytest.mark.e2e

DRIVER = "gpu.cdi.example.com"
# The chart gives the driver its pod's UID, which names its sockets (seamless upgrades).
SOCKETS = (
    f"/var/lib/kubelet/plugins_registry/{DRIVER}-*-reg.sock",
    f"/var/lib/kubelet/plugins/{DRIVER}/dra-*.sock",
)
LOGFMT = re.compile(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


@pytest.fixture
def kind(cluster: E2ECluster) -> KindCluster:
    if not isinstance(cluster.kind, KindCluster):
        pytest.skip("the kind provider's cluster only (E2E_PROVIDER=kind)")
    return cluster.kind


def driver_pods(k: kube.Kube) -> list[Obj]:
    selector = f"-l=app.kubernetes.io/instance={RELEASE}"
    return [
        p for p in k.items("pods", NAMESPACE, selector) if "deletionTimestamp" not in p["metadata"]
    ]


def ready_driver_pod(k: kube.Kube, timeout: float = 120) -> Obj:
    def one_ready() -> Obj | None:
        pods = driver_pods(k)
        if len(pods) != 1:
            return None
        conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
        return pods[0] if conditions.get("Ready") == "True" else None

    return k.wait("the driver's pod Ready", one_ready, timeout)  # type: ignore[no-any-return]


def parse_logfmt(line: str) -> dict[str, str]:
    return {m[1]: m[2].strip('"') for m in LOGFMT.finditer(line)}


def node_files(kind: KindCluster, *patterns: str) -> list[str]:
    """The files on the node that match `patterns` (shell globs)."""
    script = 'for p in $@; do [ -e "$p" ] && echo "$p"; done; true'
    return kind.node_exec("sh", "-c", script, "sh", *patterns).split()


def our_specs(kind: KindCluster) -> list[str]:
    listing = kind.node_exec("sh", "-c", "ls /var/run/cdi 2>/dev/null; true").split()
    return [name for name in listing if name.startswith(f"{DRIVER}_")]


def test_driver_pod_is_ready_registered_confined_and_logs_structured(
    kind: KindCluster, k: kube.Kube
) -> None:
    pod = ready_driver_pod(k)
    name = pod["metadata"]["name"]
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0
    assert status["image"].endswith("dra-cdi-driver:" + kind.image_tag())

    # Confined as the chart says: no capability at all, and a root it cannot write.
    proc_status = k.exec(NAMESPACE, name, ["cat", "/proc/1/status"])
    caps = dict(re.findall(r"^(Cap\w+):\s+(\w+)$", proc_status, re.M))
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapBnd"], 16) == 0, caps
    with pytest.raises(kube.KubectlError, match="Read-only file system"):
        k.exec(NAMESPACE, name, ["sh", "-c", "echo x > /usr/x"])
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB$", proc_status, re.M)[1])  # type: ignore[index]
    kind.figures["driver pod RSS"] = f"{rss_kib / 1024:.1f} MiB"

    lines = [ln for ln in k.logs(NAMESPACE, name).splitlines() if ln.strip()]
    records = [parse_logfmt(ln) for ln in lines]
    for line, record in zip(lines, records, strict=True):
        assert {"time", "level", "logger", "msg"} <= record.keys(), f"not logfmt: {line}"
        assert record["level"] in ("debug", "info", "warning", "error"), line
    messages = [r["msg"] for r in records]
    assert "serving the kubelet" in messages
    # Logged when the kubelet calls NotifyRegistrationStatus(registered=true).
    assert "registered with the kubelet" in messages, "the kubelet never confirmed registration"


@pytest.fixture
def rebuilt_tag(kind: KindCluster) -> Iterator[str]:
    """A second build of the image under a new tag (its version label differs, so its ID
    does); afterwards the chart goes back to the first one."""
    tag = kind.image_tag() + "-rebuilt"
    kind.script("kind-load.sh", env={"IMAGE_TAG": tag})
    yield tag
    kind.script("kind-install.sh")


def one_gpu_pod(k: kube.Kube, ns: str, name: str) -> None:
    k.apply(kube.claim_template(f"{name}-gpu", 1), ns=ns)
    pod = kube.env_dump_pod(name, claims=[("gpu", {"resourceClaimTemplateName": f"{name}-gpu"})])
    k.create(pod, ns=ns)


def test_helm_upgrade_rolls_the_driver_while_a_pod_holds_a_claim(
    kind: KindCluster, k: kube.Kube, ns: str, rebuilt_tag: str
) -> None:
    old_driver = ready_driver_pod(k)
    one_gpu_pod(k, ns, "holder")
    holder = k.wait_pod_running(ns, "holder", timeout=180)
    holder_gpus = kube.gpu_devices(k.container_env(ns, "holder"))
    assert len(holder_gpus) == 1

    upgrade = subprocess.Popen(
        [str(kind.hack("kind-install.sh"))],
        env={**kind.env(), "IMAGE_TAG": rebuilt_tag},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The roll has begun once the old pod is terminating; a pod created then must wait
        # for the new driver and still get its GPU.
        k.wait(
            "the old driver pod to terminate",
            lambda: all(
                p["metadata"]["uid"] != old_driver["metadata"]["uid"] for p in driver_pods(k)
            ),
            120,
            interval=0.2,
        )
        one_gpu_pod(k, ns, "newcomer")
        out = upgrade.communicate(timeout=400)[0]
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
    assert upgrade.returncode == 0, out

    new_driver = ready_driver_pod(k)
    assert new_driver["metadata"]["uid"] != old_driver["metadata"]["uid"]
    assert new_driver["status"]["containerStatuses"][0]["image"].endswith(rebuilt_tag)
    newcomer_gpus = kube.gpu_devices(k.container_env(ns, "newcomer", timeout=180))
    assert len(newcomer_gpus) == 1 and newcomer_gpus != holder_gpus

    after = k.get("pod", "holder", ns)
    (before_status,) = holder["status"]["containerStatuses"]
    (after_status,) = after["status"]["containerStatuses"]
    assert after_status["containerID"] == before_status["containerID"]
    assert after_status["restartCount"] == 0 and after["status"]["phase"] == "Running"

    # The new driver unprepares what the old one prepared: no spec outlives its pod.
    assert len(our_specs(kind)) == 2
    k.run("delete", "pods", "--all", "-n", ns, "--wait=true", "--timeout=120s", timeout=150)
    k.wait("every CDI spec removed", lambda: our_specs(kind) == [], 60)


def test_helm_uninstall_leaves_nothing_behind_and_install_brings_it_back(
    kind: KindCluster, k: kube.Kube
) -> None:
    uid = ready_driver_pod(k)["metadata"]["uid"]
    assert [f.replace(uid, "UID") for f in node_files(kind, *SOCKETS)] == [
        s.replace("*", "UID") for s in SOCKETS
    ]
    slices = f"--field-selector=spec.driver={DRIVER}"
    assert k.items("resourceslices", None, slices)

    helm = kind.env()["HELM"]
    subprocess.run(
        [helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "2m",
         "--kube-context", f"kind-{kind.name}"],
        env=kind.env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    gone = time.monotonic()
    k.wait("the driver's pods gone", lambda: driver_pods(k) == [], 120)
    # A pod being deleted may still be shutting down: SIGTERM removes both sockets within
    # the 30 s grace period (a SIGKILL after it would leave them for good).
    k.wait("SIGTERM removing both sockets", lambda: node_files(kind, *SOCKETS) == [], 45)
    kind.figures["helm uninstall to sockets gone"] = f"{time.monotonic() - gone:.1f} s"
    assert our_specs(kind) == []
    # The kubelet deletes the slices of a driver that stays unregistered (~30 s).
    k.wait(
        "the driver's ResourceSlices gone", lambda: not k.items("resourceslices", None, slices), 180
    )
    kind.figures["helm uninstall to slices gone"] = f"{time.monotonic() - gone:.0f} s"

    kind.script("kind-install.sh")
    uid = ready_driver_pod(k)["metadata"]["uid"]
    k.wait("the driver's ResourceSlices back", lambda: k.items("resourceslices", None, slices), 60)
    assert len(node_files(kind, *SOCKETS)) == 2 and all(
        uid in f for f in node_files(kind, *SOCKETS)
    )
