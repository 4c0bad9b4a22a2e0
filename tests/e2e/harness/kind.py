"""The kind provider: the user's own workflow, hack/kind-*.sh, on a real kind cluster.

What a user runs (deploy/README.md), in that order, with only what a laptop would not need
changed through the scripts' own settings:

- ``KIND_NODE_IMAGE``: a node image built here (tests/e2e/kind/node-image.sh), since no
  registry can be reached; the same Kubernetes version as the local provider;
- ``KIND``, ``KUBECTL``, ``DOCKER``, ``HELM``: the pinned tools from the cache;
- ``KIND_CLUSTER_NAME`` and ``KUBECONFIG``: a cluster and a kubeconfig of the tests' own, so
  that a developer's own ``dra-cdi-driver`` cluster and ~/.kube/config are left alone.

Then: ``kind-up.sh`` (kind-config.yaml as it is), ``kind-load.sh`` (``docker build`` of
deploy/Dockerfile, ``kind load``), ``kind-install.sh`` (the Helm chart); at the end
``kind-down.sh``. Images a user's cluster would pull from Docker Hub (the demo's
``busybox:1.36``) are loaded into the node from local stand-ins first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config, engine, procs

HACK = config.REPO_ROOT / "hack"
KIND_DIR = config.E2E_DIR / "kind"
KIND_VERSION = "v0.32.0"  # the release whose default node image kind-config.yaml pins
CLUSTER_NAME = "dra-cdi-driver-e2e"
RELEASE = "dra-cdi-driver"
NAMESPACE = "dra-cdi-driver"
# Images the demo and the test pods name, and the local images that stand in for them.
STAND_INS = {
    "busybox:1.36": config.TEST_IMAGE,
    config.TEST_IMAGE: config.TEST_IMAGE,
}


class KindError(RuntimeError):
    pass


def kind_binary() -> Path:
    return config.cache_dir() / f"kind-{KIND_VERSION}" / "kind"


def helm_binary() -> str:
    run = subprocess.run([str(HACK / "install-helm.sh")], capture_output=True, text=True)
    if run.returncode:
        raise KindError(f"hack/install-helm.sh failed:\n{run.stderr[-2000:]}")
    return run.stdout.strip()


def node_image(docker_env: dict[str, str]) -> str:
    """The node image's tag; built (cold: tens of minutes) when the engine lacks it."""
    run = subprocess.run(
        [str(KIND_DIR / "node-image.sh")],
        env=procs.env_with(docker_env),
        stdout=subprocess.PIPE,
        text=True,
    )
    if run.returncode:
        raise KindError("tests/e2e/kind/node-image.sh failed (its output is above)")
    return run.stdout.strip().splitlines()[-1]


@dataclass
class KindCluster:
    engine: engine.Engine
    image: str
    name: str = CLUSTER_NAME
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dra-e2e-kind-")))
    timings: dict[str, float] = field(default_factory=dict)  # seconds, per step
    figures: dict[str, str] = field(default_factory=dict)  # what the tests measured

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def node(self) -> str:
        """The node's name, which is also its container's name."""
        return f"{self.name}-control-plane"

    def hack(self, name: str) -> Path:
        return HACK / name

    def image_tag(self) -> str:
        """The tag hack/kind-load.sh builds by default: the chart's appVersion."""
        chart = (config.REPO_ROOT / "deploy" / "helm" / "dra-cdi-driver" / "Chart.yaml").read_text()
        match = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', chart, re.M)
        if not match:
            raise KindError("no appVersion in the chart")
        return match[1]

    def summary(self) -> list[str]:
        image = self.docker(
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            f"dra-cdi-driver:{self.image_tag()}",
            check=False,
        ).strip()
        lines = [f"{step}: {seconds:.1f} s" for step, seconds in self.timings.items()]
        if image.isdigit():
            lines.append(f"driver image size: {int(image) / 1e6:.0f} MB")
        lines += [f"{what}: {value}" for what, value in self.figures.items()]
        return lines

    def env(self) -> dict[str, str]:
        """What the hack/ scripts get: the user's environment plus the settings above."""
        return procs.env_with(
            {
                # kind runs `docker` from PATH: make it the client chosen for the engine.
                "PATH": f"{self._docker_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
                **self.engine.env,
                "DOCKER": engine.docker_cli(),
                "KIND": str(kind_binary()),
                "KUBECTL": config.kubectl_path(),
                "HELM": helm_binary(),
                "KIND_CLUSTER_NAME": self.name,
                "KIND_NODE_IMAGE": self.image,
                "KUBECONFIG": str(self.kubeconfig),
                "KUBE_CONTEXT": f"kind-{self.name}",
                "RELEASE": RELEASE,
                "NAMESPACE": NAMESPACE,
            }
        )

    def _docker_dir(self) -> Path:
        bin_dir = self.workdir / "bin"
        if not (bin_dir / "docker").exists():
            bin_dir.mkdir(parents=True, exist_ok=True)
            (bin_dir / "docker").symlink_to(engine.docker_cli())
        return bin_dir

    def script(self, name: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Run hack/<name>; its output goes to logs/<name>.log and comes back."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name.removesuffix('.sh')}.log"
        t0 = time.monotonic()
        run = subprocess.run(
            [str(HACK / name), *args],
            env={**self.env(), **(env or {})},
            cwd=config.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        took = time.monotonic() - t0
        self.timings[name] = self.timings.get(name, 0.0) + took
        with log.open("a") as f:
            f.write(f"==== hack/{name} {' '.join(args)} ({took:.1f}s, rc {run.returncode})\n")
            f.write(run.stdout + run.stderr)
        if run.returncode:
            raise KindError(
                f"hack/{name} failed (rc {run.returncode}):\n"
                f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            )
        return run.stdout + run.stderr

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        run = subprocess.run(
            [engine.docker_cli(), *args],
            env=procs.env_with(self.engine.env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and run.returncode:
            raise KindError(f"docker {' '.join(args)} failed: {run.stderr.strip()}")
        return run.stdout

    def node_exec(self, *cmd: str, check: bool = True) -> str:
        """A command on the node (the kind node is a container of the engine)."""
        return self.docker("exec", self.node, *cmd, check=check)

    def up(self) -> None:
        self.script("kind-up.sh")
        self.load_stand_ins()
        self.script("kind-load.sh")
        t0 = time.monotonic()
        self.script("kind-install.sh")
        self.timings["helm install to slices"] = time.monotonic() - t0

    def load_stand_ins(self) -> None:
        """Images a user's node would pull, loaded from local stand-ins under their names."""
        t0 = time.monotonic()
        images = config.images_dir()
        self.docker("load", "-i", str(images / "busybox.tar"))
        for wanted, local in STAND_INS.items():
            if wanted != local:
                self.docker("tag", local, wanted)
        kind = [str(kind_binary()), "load", "docker-image", *STAND_INS, "--name", self.name]
        run = subprocess.run(kind, env=self.env(), capture_output=True, text=True)
        if run.returncode:
            raise KindError(f"kind load of the stand-in images failed: {run.stderr}")
        self.timings["stand-in images"] = time.monotonic() - t0

    def collect_logs(self) -> dict[str, Path]:
        """The node's kubelet and containerd journals and the driver's pod log, as files."""
        self.logs.mkdir(parents=True, exist_ok=True)
        files = {}
        for unit in ("kubelet", "containerd"):
            path = self.logs / f"{unit}.log"
            path.write_text(self.node_exec("journalctl", "-u", unit, "--no-pager", check=False))
            files[unit] = path
        path = self.logs / "driver.log"
        kubectl = [config.kubectl_path(), f"--kubeconfig={self.kubeconfig}"]
        run = subprocess.run(
            [*kubectl, "-n", NAMESPACE, "logs", f"daemonset/{RELEASE}", "--tail=400"],
            capture_output=True,
            text=True,
        )
        path.write_text(run.stdout + run.stderr)
        files["driver"] = path
        for script in self.logs.glob("kind-*.log"):
            files[script.stem] = script
        return files

    def down(self) -> None:
        try:
            self.script("kind-down.sh")
        finally:
            if self.engine.ours:
                left = engine.down()
                if left:
                    raise KindError(f"the Docker engine left behind: {left}")
            shutil.rmtree(self.workdir, ignore_errors=True)


def available() -> str | None:
    """Why the kind provider cannot run here, or None when it can."""
    if os.geteuid() != 0 and not os.environ.get("DOCKER_HOST"):
        return "kind provider: needs root to start its own Docker engine (or DOCKER_HOST)"
    if not kind_binary().exists():
        return f"kind provider: {kind_binary()} missing; run tests/e2e/kind/setup.sh"
    if not shutil.which("dockerd") and not os.environ.get("DOCKER_HOST"):
        return "kind provider: no Docker engine (apt-get install docker.io)"
    return None
