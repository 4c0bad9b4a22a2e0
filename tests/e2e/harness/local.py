"""The ``local`` provider: a one-node Kubernetes made of upstream processes on this machine.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and the kubelet run
as plain host processes, everything under one work directory (``/tmp/dra-e2e-*``): data,
sockets, certificates, logs, the kubelet root, containerd's root and state, the CDI root.
Pods use host networking, so there is no CNI plugin (containerd only needs a config file to
report its network as ready).

``LocalCluster.up()`` needs the binaries in the cache: run ``tests/e2e/local/setup.sh`` first.
``LocalCluster.down()`` stops everything by pid (SIGTERM, then SIGKILL), kills what is left of
the pods (their cgroup subtree and containerd's shims), unmounts everything under the work
directory (lazily, deepest first), removes the cgroups and the directory. A cluster left
behind by a killed run can be torn down with ``tests/e2e/local/cluster.py down DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import config, images, pki, procs

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_node_ip() -> str:
    """The address of the interface holding the default route (the kubelet refuses loopback)."""
    env = os.environ.get("E2E_NODE_IP")
    if env:
        return env
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent for a UDP connect
            ip = str(s.getsockname()[0])
        except OSError as e:
            raise RuntimeError(
                "no default route: set E2E_NODE_IP to a non-loopback address of this machine"
            ) from e
    if ip.startswith("127."):
        raise RuntimeError("only a loopback address found: set E2E_NODE_IP")
    return ip


@dataclass
class Layout:
    """Every path of one local cluster, derived from its work directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cdi_root(self) -> Path:
        return self.root / "cdi"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def registrar_dir(self) -> Path:
        return self.kubelet_root / "plugins_registry"

    def plugin_dir(self, driver: str) -> Path:
        return self.kubelet_root / "plugins" / driver


SECOND_APISERVER = "kube-apiserver-b"


class LocalCluster:
    """A running (or to-be-started) local cluster. Use as a context manager or up()/down()."""

    name = "local"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        node_name: str = config.NODE_NAME,
        verbosity: int | None = None,
        kubelet_verbosity: int | None = None,
    ) -> None:
        self.bins = config.binaries()
        self.workdir = workdir
        self.node_name = node_name
        # Control plane at 1 keeps its logs short; the kubelet at 4 logs every DRA call
        # (NodePrepareResources requests and responses) and every plugin registration.
        self.verbosity = verbosity if verbosity is not None else int(os.environ.get("E2E_V", "1"))
        self.kubelet_verbosity = (
            kubelet_verbosity
            if kubelet_verbosity is not None
            else int(os.environ.get("E2E_KUBELET_V", "4"))
        )
        self.layout: Layout | None = None
        self.procs: dict[str, procs.Proc] = {}
        self.node_ip = ""
        self.cgroup_root = ""
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.api_server = ""

    # ---------------------------------------------------------------- public surface
    @property
    def L(self) -> Layout:
        assert self.layout is not None, "cluster not started"
        return self.layout

    @property
    def kubeconfig(self) -> Path:
        return self.L.admin_kubeconfig

    @property
    def cdi_root(self) -> Path:
        return self.L.cdi_root

    @property
    def kubelet_root(self) -> Path:
        return self.L.kubelet_root

    @property
    def registrar_dir(self) -> Path:
        return self.L.registrar_dir

    def plugin_dir(self, driver: str = config.DRIVER_NAME) -> Path:
        return self.L.plugin_dir(driver)

    def log_files(self) -> dict[str, Path]:
        return {name: p.log for name, p in self.procs.items()}

    def __enter__(self) -> LocalCluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        missing = self.bins.missing()
        if missing:
            raise RuntimeError(
                "local provider binaries missing (run tests/e2e/local/setup.sh):"
                "\n  " + "\n  ".join(missing)
            )
        t0 = time.monotonic()
        root = self.workdir or Path(tempfile.mkdtemp(prefix="dra-e2e-"))
        root.mkdir(parents=True, exist_ok=True)
        self.layout = Layout(root)
        self.node_ip = default_node_ip()
        self.cgroup_root = "/" + root.name
        for d in (
            self.L.logs,
            self.L.run,
            self.L.cdi_root,
            self.L.pod_logs,
            self.L.kubelet_root,
            self.L.registrar_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)
        for name in (
            "etcd",
            "etcd_peer",
            "apiserver",
            "kcm",
            "scheduler",
            "kubelet",
            "kubelet_healthz",
        ):
            self.ports[name] = free_port()
        self.api_server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self._save_state()

        self.pki = pki.make_pki(
            self.L.pki, node_name=self.node_name, node_ip=self.node_ip, service_ip=SERVICE_IP
        )
        pki.write_kubeconfig(
            self.L.admin_kubeconfig,
            server=self.api_server,
            pki=self.pki,
            user="admin",
            name="e2e-admin",
        )
        pki.write_kubeconfig(
            self.L.kubelet_kubeconfig,
            server=self.api_server,
            pki=self.pki,
            user="kubelet-client",
            name=f"system:node:{self.node_name}",
        )

        self._start_etcd()
        self._start_containerd()
        self._wait_etcd()
        self._start_apiserver()
        self._wait_containerd()
        self._import_images()
        self._wait_apiserver()
        self.timings["apiserver_ready"] = time.monotonic() - t0
        self._start_controller_manager()
        self._start_scheduler()
        self._make_cgroup_root()
        self.start_kubelet()
        self.wait_node_ready()
        self._wait_default_service_account()
        self.timings["cluster_ready"] = time.monotonic() - t0

    def down(self) -> None:
        if self.layout is None:
            return
        teardown(self.L.root, procs_=self.procs, cgroup_root=self.cgroup_root)
        self.procs.clear()

    # ---------------------------------------------------------------- kubelet
    def start_kubelet(self) -> None:
        cfg = self.L.root / "kubelet-config.yaml"
        cfg.write_text(yaml.safe_dump(self._kubelet_config(), sort_keys=False))
        argv = [
            str(self.bins.kubelet),
            f"--config={cfg}",
            f"--kubeconfig={self.L.kubelet_kubeconfig}",
            f"--root-dir={self.L.kubelet_root}",
            f"--cert-dir={self.L.kubelet_root / 'pki'}",
            f"--hostname-override={self.node_name}",
            f"--node-ip={self.node_ip}",
            f"--v={self.kubelet_verbosity}",
        ]
        self._start("kubelet", argv)

    def stop_kubelet(self) -> None:
        self.procs["kubelet"].stop()

    def restart_kubelet(self) -> None:
        self.stop_kubelet()
        self.procs["kubelet"].start()

    def second_apiserver(self) -> Path:
        """Start a second kube-apiserver on the same etcd, as a highly available control
        plane has; returns an admin kubeconfig that talks to it alone. Stop and start it
        with stop_apiserver/start_apiserver(SECOND_APISERVER)."""
        if SECOND_APISERVER not in self.procs:
            self.ports["apiserver-b"] = free_port()
            self._save_state()
            self._start_apiserver(SECOND_APISERVER, "apiserver-b")
            self._wait_apiserver(SECOND_APISERVER, "apiserver-b")
        kubeconfig = self.L.root / "admin-b.kubeconfig"
        pki.write_kubeconfig(
            kubeconfig,
            server=f"https://127.0.0.1:{self.ports['apiserver-b']}",
            pki=self.pki,
            user="admin",
            name="e2e-admin",
        )
        return kubeconfig

    def stop_apiserver(self, name: str = "kube-apiserver") -> None:
        """An outage of an API server: its clients get connection refused."""
        self.procs[name].stop()

    def start_apiserver(self, name: str = "kube-apiserver") -> None:
        self.procs[name].start()
        port_name = "apiserver" if name == "kube-apiserver" else "apiserver-b"
        self._wait_apiserver(name, port_name)

    def wait_node_ready(self, timeout: float = 120) -> None:
        procs.wait_for(
            f"node {self.node_name} Ready",
            self._node_ready,
            timeout,
            procs=[self.procs["kubelet"], self.procs["containerd"]],
        )

    def _node_ready(self) -> bool:
        node = self.api_get(f"/api/v1/nodes/{self.node_name}")
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def _kubelet_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1; 1.35+ refuses to start on v1 unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.L.containerd_sock}",
            "address": self.node_ip,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet_healthz"],
            "tlsCertFile": str(self.pki.crt("kubelet-serving")),
            "tlsPrivateKeyFile": str(self.pki.key("kubelet-serving")),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.L.pod_logs),
            # Never garbage-collect the images we imported (there is no registry).
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "maxPods": 50,
        }

    # ---------------------------------------------------------------- components
    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> procs.Proc:
        p = procs.Proc(name, argv, self.L.logs / f"{name}.log", self.L.run / f"{name}.pid", env=env)
        self.procs[name] = p
        return p.start()

    def _start_etcd(self) -> None:
        c = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._start(
            "etcd",
            [
                str(self.bins.etcd),
                "--name=e2e",
                f"--data-dir={self.L.etcd_data}",
                f"--listen-client-urls={c}",
                f"--advertise-client-urls={c}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _wait_etcd(self) -> None:
        url = f"http://127.0.0.1:{self.ports['etcd']}/health"
        procs.wait_for(
            "etcd",
            lambda: json.load(urllib.request.urlopen(url, timeout=2)).get("health") == "true",
            60,
            procs=[self.procs["etcd"]],
        )

    def _start_apiserver(self, name: str = "kube-apiserver", port_name: str = "apiserver") -> None:
        p = self.pki
        self._start(
            name,
            [
                str(self.bins.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports[port_name]}",
                # The kubernetes Service's endpoint must not be loopback; nothing uses it (no
                # kube-proxy, pods use host networking), so do not maintain it.
                f"--advertise-address={self.node_ip}",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.L.root / f'{name}-certs'}",
                f"--tls-cert-file={p.crt('apiserver')}",
                f"--tls-private-key-file={p.key('apiserver')}",
                f"--client-ca-file={p.ca}",
                # Published in kube-system/extension-apiserver-authentication, which the
                # controller-manager and scheduler read for delegated authentication.
                f"--requestheader-client-ca-file={p.ca}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--kubelet-client-certificate={p.crt('admin')}",
                f"--kubelet-client-key={p.key('admin')}",
                f"--kubelet-certificate-authority={p.ca}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    def _wait_apiserver(self, name: str = "kube-apiserver", port_name: str = "apiserver") -> None:
        procs.wait_for(
            f"{name} /readyz",
            lambda: self._https_ok(self.ports[port_name], "/readyz"),
            180,
            interval=1,
            procs=[self.procs[name], self.procs["etcd"]],
        )

    def _start_controller_manager(self) -> None:
        kc = str(self.L.admin_kubeconfig)
        self._start(
            "kube-controller-manager",
            [
                str(self.bins.kube_controller_manager),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}",
                f"--cert-dir={self.L.root / 'kcm-certs'}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca}",
                f"--cluster-signing-cert-file={self.pki.ca}",
                f"--cluster-signing-key-file={self.pki.key('ca')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--controllers=*",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    def _start_scheduler(self) -> None:
        kc = str(self.L.admin_kubeconfig)
        self._start(
            "kube-scheduler",
            [
                str(self.bins.kube_scheduler),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                f"--cert-dir={self.L.root / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    def _containerd_config(self) -> str:
        d = self.L.containerd
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        snapshotter = os.environ.get("E2E_SNAPSHOTTER", "overlayfs")
        return f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.L.containerd_sock}"

[ttrpc]
  address = "{self.L.containerd_sock}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri}]
  sandbox_image = "{config.PAUSE_IMAGE}"
  enable_cdi = true
  cdi_spec_dirs = ["{self.L.cdi_root}"]
  # No CAP_SYS_RESOURCE here: runc would fail with "oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "{snapshotter}"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{self.bins.runc}"
  Root = "{d / "runc"}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{self.L.root / "cni" / "bin"}"
  conf_dir = "{self.L.cni_conf}"
"""

    def _start_containerd(self) -> None:
        d = self.L.containerd
        d.mkdir(parents=True, exist_ok=True)
        # Pods use host networking; containerd only needs a network config to call itself
        # ready. The plugin named here does not exist and is never invoked.
        self.L.cni_conf.mkdir(parents=True, exist_ok=True)
        (self.L.root / "cni" / "bin").mkdir(parents=True, exist_ok=True)
        (self.L.cni_conf / "10-hostnetwork-only.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "hostnetwork-only",
                    "plugins": [{"type": "e2e-hostnetwork-only"}],
                }
            )
        )
        cfg = d / "config.toml"
        cfg.write_text(self._containerd_config())
        env = procs.env_with(
            {"PATH": f"{self.bins.containerd_shim_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        )
        self._start("containerd", [str(self.bins.containerd), f"--config={cfg}"], env=env)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        r = subprocess.run(
            [
                str(self.bins.ctr),
                f"--address={self.L.containerd_sock}",
                "--namespace=k8s.io",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def _wait_containerd(self) -> None:
        procs.wait_for(
            "containerd",
            lambda: self.L.containerd_sock.exists() and self.ctr("version", timeout=10),
            60,
            procs=[self.procs["containerd"]],
        )

    def _import_images(self) -> None:
        idir = config.images_dir()
        tars = {config.PAUSE_IMAGE: idir / "pause.tar", config.TEST_IMAGE: idir / "busybox.tar"}
        if not all(t.exists() for t in tars.values()):
            images.build(idir)
        for tar in tars.values():
            self.import_image(tar)
        have = self.ctr("images", "ls", "-q").split()
        for ref in tars:
            if ref not in have:
                raise RuntimeError(f"image {ref} missing after import; have {have}")

    def import_image(self, tar: Path) -> None:
        """Load an image tar (images.py) into the CRI namespace."""
        snapshotter = os.environ.get("E2E_SNAPSHOTTER", "overlayfs")
        self.ctr(
            "images", "import", f"--snapshotter={snapshotter}", "--platform=linux/amd64", str(tar)
        )

    def _make_cgroup_root(self) -> None:
        """The kubelet puts all pods under --cgroup-root, which must exist in every hierarchy.

        A cgroup of our own (named after the work directory) makes it easy to find and kill
        every container process at teardown.
        """
        for base in procs._cgroup_hierarchies():
            top = base / self.cgroup_root.strip("/")
            top.mkdir(exist_ok=True)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if (base / f).exists() and not (top / f).read_text().strip():
                    (top / f).write_text((base / f).read_text())

    # ---------------------------------------------------------------- API helpers
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.load_cert_chain(str(self.pki.crt("admin")), str(self.pki.key("admin")))
        return ctx

    def _https_ok(self, port: int, path: str) -> bool:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}{path}", context=self._ssl(), timeout=5
        ) as r:
            return bool(r.status == 200)

    def api_get(self, path: str) -> dict:  # type: ignore[type-arg]
        with urllib.request.urlopen(self.api_server + path, context=self._ssl(), timeout=10) as r:
            return json.load(r)  # type: ignore[no-any-return]

    def _wait_default_service_account(self) -> None:
        procs.wait_for(
            "default service account",
            lambda: self.api_get("/api/v1/namespaces/default/serviceaccounts/default"),
            60,
            procs=[self.procs["kube-controller-manager"]],
        )

    def _save_state(self) -> None:
        self.L.state_file.write_text(
            json.dumps(
                {
                    "cgroup_root": self.cgroup_root,
                    "ports": self.ports,
                    "node_ip": self.node_ip,
                    "containerd_sock": str(self.L.containerd_sock),
                },
                indent=1,
            )
        )


# Stop order: consumers before what they consume.
STOP_ORDER = [
    "dra-cdi-driver",
    "kubelet",
    "containerd",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
]


def teardown(
    root: Path,
    *,
    procs_: dict[str, procs.Proc] | None = None,
    cgroup_root: str = "",
    remove: bool | None = None,
) -> list[str]:
    """Tear down the cluster in root; works from the directory alone (pid files, state.json).

    Returns a list of problems (things that could not be cleaned), empty when all went well.
    """
    problems: list[str] = []
    if remove is None:
        remove = os.environ.get("E2E_KEEP", "") in ("", "0")
    state = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((root / "state.json").read_text())
    cgroup_root = cgroup_root or state.get("cgroup_root", "")
    live = dict(procs_ or {})
    order = STOP_ORDER + sorted(set(live) - set(STOP_ORDER))
    for name in order:
        if name == "containerd":
            _kill_containers(root, cgroup_root)
        p = live.get(name)
        if p is not None:
            p.stop(timeout=10)
        else:
            procs.stop_pidfile(root / "run" / f"{name}.pid")
    # Anything still holding the directory: shims, containers, a stray child.
    _kill_containers(root, cgroup_root)
    left = procs.unmount_all(root)
    if left:
        problems.append(f"still mounted: {left}")
    if cgroup_root:
        time.sleep(0.2)
        rest = procs.remove_cgroups(cgroup_root)
        if rest:
            problems.append(f"cgroups not removed: {rest[:5]}")
    _remove_pod_log_links(root)
    if remove and not left:
        shutil.rmtree(root, ignore_errors=True)
    return problems


def _kill_containers(root: Path, cgroup_root: str) -> None:
    for _ in range(3):
        pids = procs.processes_mentioning(str(root / "containerd" / "containerd.sock"))
        if cgroup_root:
            pids += procs.cgroup_procs(cgroup_root)
        pids = [p for p in set(pids) if p != os.getpid()]
        if not pids:
            return
        procs.kill_pids(pids)
        time.sleep(0.3)


def _remove_pod_log_links(root: Path) -> None:
    """The kubelet links container logs into /var/log/containers (not configurable)."""
    d = Path("/var/log/containers")
    if not d.is_dir():
        return
    for link in d.iterdir():
        try:
            if link.is_symlink() and os.readlink(link).startswith(str(root) + "/"):
                link.unlink()
        except OSError:
            pass
