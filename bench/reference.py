"""The reference driver, sigs.k8s.io/dra-example-driver: its kubelet plugin built from the Go
module pinned in bench/go/go.mod, through the Go module proxy, and cached by version.

    .venv/bin/python -m bench.reference     # build (or find) it and print its path

Nothing of its source is kept here: `go build` fetches the pinned module like any dependency.
Cold: ~2 min on 2 cores; warm: instant.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
MODULE = "sigs.k8s.io/dra-example-driver"
PACKAGE = f"{MODULE}/cmd/dra-example-kubeletplugin"
BINARY = "dra-example-kubeletplugin"


class ReferenceUnavailable(RuntimeError):
    """The reference driver can be neither found in the cache nor built (says why)."""


def version() -> str:
    """The pinned version of the reference module (bench/go/go.mod is the source of truth)."""
    text = (GO_DIR / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULE)}\s+(v\S+)", text, re.M)
    if not m:
        raise ReferenceUnavailable(f"no {MODULE} requirement in {GO_DIR / 'go.mod'}")
    return m.group(1)


def cache_dir() -> Path:
    return Path(
        os.environ.get("DRA_BENCH_CACHE") or Path.home() / ".cache" / "dra-cdi-driver-bench"
    )


def binary_path() -> Path:
    """Where the binary of this pin lives: keyed by version and by go.mod + go.sum."""
    pins = hashlib.sha256(
        (GO_DIR / "go.mod").read_bytes() + (GO_DIR / "go.sum").read_bytes()
    ).hexdigest()[:12]
    return cache_dir() / f"dra-example-driver-{version()}-{pins}" / BINARY


def ensure_built() -> Path:
    """The cached binary, built first when missing."""
    path = binary_path()
    if path.exists():
        return path
    go = shutil.which("go") or next(
        (g for g in ("/usr/local/go/bin/go",) if Path(g).exists()), None
    )
    if go is None:
        raise ReferenceUnavailable("go not found: Go >= 1.26 builds the reference driver")
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {PACKAGE}@{version()} (cold: ~2 min) ...", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
        flags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": flags}
        done = subprocess.run(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", f"{tmp}/", PACKAGE],
            cwd=GO_DIR,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ReferenceUnavailable(f"go build {PACKAGE} failed:\n{done.stderr[-3000:]}")
        os.replace(Path(tmp) / BINARY, path)
    print(f"built in {time.monotonic() - started:.0f} s: {path}", flush=True)
    return path


def main() -> None:
    print(ensure_built())


if __name__ == "__main__":
    main()
