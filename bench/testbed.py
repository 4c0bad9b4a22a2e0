"""One API server with a Node and, for each driver under test, its DeviceClass, a namespace
and a set of allocated ResourceClaims (created once, prepared by every configuration)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import cluster
from bench.allocate import ClaimRef, create_allocated_claims
from bench.drivers import DriverKind, DriverProcess

NODE = "bench-node"
# Where the CDI specs go: a tmpfs, like /var/run/cdi on a node (both drivers' deployments use
# it); the kubelet dirs (sockets, checkpoints) stay on disk, like /var/lib/kubelet.
TMPFS = Path("/dev/shm")
DEVICES = 8  # GPUs per node, for both drivers
WARMUP_CLAIMS = 32


@dataclass
class Testbed:
    root: Path
    server: cluster.ApiServer
    version: str
    claims: dict[str, list[ClaimRef]] = field(default_factory=dict)  # by DriverKind.key
    warmup: dict[str, list[ClaimRef]] = field(default_factory=dict)
    setup_s: float = 0.0
    tmpfs: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig()

    def workdir(self, name: str) -> Path:
        """A fresh directory for one driver process (short: unix socket paths are limited)."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))

    def cdi_root(self, name: str) -> Path:
        """A fresh CDI root on the tmpfs, or on disk where there is none."""
        base = self.tmpfs or self.root
        return Path(tempfile.mkdtemp(prefix=f"cdi-{name}-", dir=base))

    def driver(self, kind: DriverKind, node: str = NODE, devices: int = DEVICES) -> DriverProcess:
        """A driver process (not started yet) with fresh dirs, against this API server."""
        return DriverProcess(
            kind,
            self.workdir(kind.key),
            self.kubeconfig,
            node,
            devices,
            cdi_root=self.cdi_root(kind.key),
        )


@contextlib.contextmanager
def testbed(kinds: Sequence[DriverKind], claims: int) -> Iterator[Testbed]:
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="dra-bench-", dir="/tmp"))
        )
        tmpfs = None
        if TMPFS.is_dir() and os.access(TMPFS, os.W_OK):
            tmpfs = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=TMPFS)))
        server = stack.enter_context(cluster.apiserver(tmp / "api"))
        admin = server.client()
        bed = Testbed(tmp, server, cluster.server_version(server), tmpfs=tmpfs)
        cluster.ensure_node(admin, NODE)
        for kind in kinds:
            cluster.ensure_namespace(admin, kind.key)
            cluster.ensure_device_class(admin, kind.driver_name)
            made = create_allocated_claims(
                admin,
                namespace=kind.key,
                driver=kind.driver_name,
                node=NODE,
                devices=DEVICES,
                count=claims + WARMUP_CLAIMS,
            )
            bed.warmup[kind.key] = made[:WARMUP_CLAIMS]
            bed.claims[kind.key] = made[WARMUP_CLAIMS:]
        bed.setup_s = time.perf_counter() - started
        yield bed
