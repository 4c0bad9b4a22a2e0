"""A Docker engine for the kind provider: one that already runs, or Debian's dockerd, started
and stopped by pid with everything it leaves behind.

- An engine that already answers (``$DOCKER_HOST``, or the default socket) is used as it is
  and never stopped: on a laptop with Docker, the kind provider changes nothing about it.
- Otherwise ``dockerd`` (apt package docker.io) starts with its own data root in the cache
  (images survive between runs, so a warm run builds nothing), and its own exec root, pid file
  and socket under ``/run/dra-e2e-docker``.
- Host quirks are detected, not assumed. Where root's capability bounding set lacks
  capabilities that Docker grants privileged containers (CAP_SYS_RESOURCE on some sandboxed
  hosts), every kind node fails in runc; then dockerd's default runtime is
  ``tests/e2e/kind/runc-caps-wrapper.py``, which drops those from the container's config.
- ``down`` stops dockerd (SIGTERM, then SIGKILL), kills the shims that still name its exec
  root, unmounts what is left under its roots, and removes the iptables rules and chains and
  the network links that appeared while it ran (a snapshot taken before it started, kept in
  the state dir, says which), so it also cleans up after a run that was killed.

    python -m tests.e2e.harness.engine up      # prints: export DOCKER_HOST=unix://...
    python -m tests.e2e.harness.engine down
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from . import config, procs

STATE_DIR = Path("/run/dra-e2e-docker")
WRAPPER = config.E2E_DIR / "kind" / "runc-caps-wrapper.py"
WRAPPER_RUNTIME = "dra-e2e-runc"
# What a privileged Docker container is given: every capability up to CAP_CHECKPOINT_RESTORE.
DOCKER_CAPS = (1 << 41) - 1
TABLES = ("filter", "nat", "mangle", "raw")


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Engine:
    """A reachable Docker engine: where it listens, and whether we started it."""

    host: str  # a DOCKER_HOST value
    ours: bool

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}


def docker_cli() -> str:
    """The docker client: $DOCKER, else Debian's (it builds with BuildKit unaided), else PATH."""
    for candidate in (os.environ.get("DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise EngineError("no docker client: apt-get install docker.io")


def answers(host: str | None) -> bool:
    env = procs.env_with({"DOCKER_HOST": host} if host else {})
    try:
        run = subprocess.run([docker_cli(), "info"], capture_output=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired, EngineError):
        return False
    return run.returncode == 0


def data_root() -> Path:
    return config.cache_dir() / "docker"


def our_host() -> str:
    return f"unix://{STATE_DIR / 'docker.sock'}"


def missing_capabilities() -> int:
    """The capabilities Docker would grant a privileged container that root cannot have."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return DOCKER_CAPS & ~bounding


def up(timeout: float = 60) -> Engine:
    """An engine that answers: the existing one, else ours (started now, or still running)."""
    existing = os.environ.get("DOCKER_HOST")
    if existing and existing != our_host():
        if answers(existing):
            return Engine(existing, ours=False)
        raise EngineError(f"DOCKER_HOST={existing} does not answer `docker info`")
    if answers(our_host()):
        return Engine(our_host(), ours=True)
    if answers(None):
        return Engine("unix:///var/run/docker.sock", ours=False)
    _start(timeout)
    return Engine(our_host(), ours=True)


def _start(timeout: float) -> None:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise EngineError("no dockerd: apt-get install docker.io")
    down()  # whatever a killed run left behind
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "before.json").write_text(json.dumps(_snapshot()))
    argv = [
        dockerd,
        f"--data-root={data_root()}",
        f"--exec-root={STATE_DIR / 'exec'}",
        f"--pidfile={STATE_DIR / 'dockerd.pid'}",
        f"--host={our_host()}",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    missing = missing_capabilities()
    if missing:
        argv += [
            f"--add-runtime={WRAPPER_RUNTIME}={WRAPPER}",
            f"--default-runtime={WRAPPER_RUNTIME}",
        ]
    env = procs.env_with({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    env.pop("DOCKER_HOST", None)
    proc = procs.Proc("dockerd", argv, STATE_DIR / "dockerd.log", STATE_DIR / "proc.pid", env=env)
    proc.start()
    # Popen's handle dies with this process: `down` finds dockerd again by its pid file.
    procs.wait_for("dockerd to answer", lambda: answers(our_host()), timeout, procs=[proc])
    if missing:
        print(f"[engine] runc wrapper on: root lacks capability mask {missing:#x}", file=sys.stderr)


def down() -> list[str]:
    """Stop our dockerd and remove what it left; what could not be removed is returned."""
    if not STATE_DIR.exists():
        return []
    procs.stop_pidfile(STATE_DIR / "proc.pid", timeout=30)
    exec_root = str(STATE_DIR / "exec")
    procs.kill_pids(procs.processes_mentioning(exec_root))
    time.sleep(0.2)
    left = procs.unmount_all(STATE_DIR) + procs.unmount_all(data_root())
    before_file = STATE_DIR / "before.json"
    if before_file.exists():
        before: Snapshot = json.loads(before_file.read_text())
        left += _restore(before)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    return left


class Snapshot(TypedDict):
    """What the host had before dockerd started: what `down` must not remove."""

    links: list[str]
    iptables: dict[str, list[str]]
    ip_forward: str


def _snapshot() -> Snapshot:
    return {
        "links": sorted(os.listdir("/sys/class/net")),
        "iptables": {t: _iptables_rules(t) for t in TABLES},
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


def _iptables_rules(table: str) -> list[str]:
    """`iptables -S` of a table: '-N CHAIN' and '-A CHAIN ...' lines."""
    run = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
    return run.stdout.splitlines() if run.returncode == 0 else []


def _restore(before: Snapshot) -> list[str]:
    left: list[str] = []
    old_rules = before["iptables"]
    for table in TABLES:
        old = set(old_rules.get(table, []))
        now = _iptables_rules(table)
        for policy in (r for r in old_rules.get(table, []) if r.startswith("-P ")):
            if policy not in now:  # dockerd sets FORWARD to DROP
                subprocess.run(["iptables", "-t", table, *policy.split()], capture_output=True)
        for rule in (r for r in now if r.startswith("-A ") and r not in old and _dockers(r)):
            spec = rule.split()  # iptables -S output needs no shell quoting for docker's rules
            run = subprocess.run(["iptables", "-t", table, "-D", *spec[1:]], capture_output=True)
            if run.returncode:
                left.append(f"iptables -t {table} {rule}")
        new_chains = (r.split()[1] for r in now if r.startswith("-N ") and r not in old)
        for chain in (c for c in new_chains if c.startswith("DOCKER")):
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
            deleted = subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
            if deleted.returncode:
                left.append(f"iptables -t {table} chain {chain}")
    new_links = sorted(set(os.listdir("/sys/class/net")) - set(before["links"]))
    # Only what Docker makes: its bridges and the host ends of container veth pairs.
    for link in (n for n in new_links if n == "docker0" or n.startswith(("br-", "veth"))):
        if subprocess.run(["ip", "link", "delete", link], capture_output=True).returncode:
            left.append(f"link {link}")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if before.get("ip_forward") == "0" and forward.read_text().strip() != "0":
        forward.write_text("0\n")
    return left


def _dockers(rule: str) -> bool:
    """A rule dockerd added: one that jumps to its chains or names its bridges. Rules that
    others added meanwhile (a local kubelet's KUBE-*, say) are not ours to remove."""
    return bool(re.search(r"DOCKER|\bdocker0\b|\bbr-[0-9a-f]{12}\b", rule))


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"]:
        engine = up()
        print(f"export DOCKER_HOST={engine.host}")
        return 0
    if argv[:1] == ["down"]:
        left = down()
        for item in left:
            print(f"engine down: could not remove {item}", file=sys.stderr)
        return 1 if left else 0
    print("usage: python -m tests.e2e.harness.engine up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
