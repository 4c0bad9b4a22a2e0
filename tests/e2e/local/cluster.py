#!/usr/bin/env python3
"""Run the local e2e cluster by hand (debugging), or clean up one a killed run left behind.

  cluster.py up [--no-driver]   start it (and the driver), print how to use it, wait for ^C
  cluster.py down DIR           tear down the cluster whose work dir is DIR (/tmp/dra-e2e-*)
  cluster.py down --all         ... every /tmp/dra-e2e-* work dir

Needs the cache filled by tests/e2e/local/setup.sh. Run from the repo root with the e2e venv:
  .venv/bin/python tests/e2e/local/cluster.py up
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.e2e.harness import config, local, providers


def up(args: argparse.Namespace) -> int:
    if args.no_driver:
        cluster = local.LocalCluster()
        with cluster:
            _announce(cluster)
            _wait()
        return 0
    with providers.provide("local") as c:
        assert isinstance(c.local, local.LocalCluster)
        _announce(c.local)
        print(f"driver log:  {c.log_files.get('dra-cdi-driver')}")
        _wait()
    return 0


def _announce(cluster: local.LocalCluster) -> None:
    print(f"cluster dir: {cluster.L.root}")
    print(f"timings:     {', '.join(f'{k}={v:.1f}s' for k, v in cluster.timings.items())}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"kubectl:     {config.binaries().kubectl}")
    print("logs:        " + " ".join(str(p) for p in cluster.log_files().values()))
    print("^C to tear it down", flush=True)


def _wait() -> None:
    # Set both explicitly: a background job of a non-interactive shell starts with SIGINT
    # ignored, and then ^C / kill -INT would never reach Python.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def down(args: argparse.Namespace) -> int:
    dirs = sorted(Path(tempfile.gettempdir()).glob("dra-e2e-*")) if args.all else args.dirs
    rc = 0
    for d in dirs:
        problems = local.teardown(Path(d), remove=True)
        print(f"{d}: {'; '.join(problems) or 'torn down'}")
        rc |= bool(problems)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--no-driver", action="store_true", help="cluster only")
    d = sub.add_parser("down")
    d.add_argument("dirs", nargs="*", type=Path)
    d.add_argument("--all", action="store_true")
    args = ap.parse_args()
    return up(args) if args.cmd == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
