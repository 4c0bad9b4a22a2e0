"""The image's install steps, run here without a container engine.

deploy/Dockerfile's builder stage copies pyproject.toml, README.md, src/ and
hack/build-venv.sh into /src and runs `hack/build-venv.sh /src /opt/venv`. This test copies
the same paths (read from the Dockerfile's COPY lines) into a clean directory, runs the same
script into a fresh venv, and starts the installed entry point: a wheel that misses a module
(the gRPC stubs, say) or a dependency fails here. It needs the package index (or a warm pip
cache) and takes a minute or so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions per stage, continuation lines joined, comments out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def builder_copies() -> list[str]:
    """Sources of the builder stage's COPY instructions (from the build context)."""
    sources = []
    for line in stages()[0]:
        parts = line.split()
        if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def test_dockerfile_shape() -> None:
    builder, final = stages()
    assert builder[0] == "FROM ${BASE_IMAGE} AS builder"
    assert final[0] == "FROM ${BASE_IMAGE}", "both stages must use the same base (same python3)"
    assert any("hack/build-venv.sh /src /opt/venv" in i for i in builder)
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert 'ENTRYPOINT ["dra-cdi-driver"]' in final
    assert not any(i.upper().startswith("USER ") for i in final)
    (arg,) = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("ARG BASE_")]
    assert re.fullmatch(r"ARG BASE_IMAGE=debian:[a-z]+-slim", arg)
    # The final image's interpreter is Debian's python3, the one the venv was made with, and
    # it gets nothing else: no pip, no venv module, no compiler.
    (install,) = [i for i in final if i.startswith("RUN apt-get update")]
    assert re.search(r"--no-install-recommends\s+python3\s", install), install
    assert "rm -rf /var/lib/apt/lists/*" in install
    # No `# syntax=` line: it would make every build pull a frontend image from Docker Hub.
    assert not DOCKERFILE.read_text().startswith("# syntax")


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    lines = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allow-list"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for source in builder_copies():
        assert source.rstrip("/") in allowed, f"{source} is copied but .dockerignore excludes it"


def test_dockerfile_install_steps_work_in_a_clean_venv(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    context = tmp_path / "src"
    for source in builder_copies():
        src = REPO_ROOT / source
        dst = context / source
        if src.is_dir():
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            )
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    venv = tmp_path / "venv"
    # Only what the image has: no PYTHONPATH, no user site, no editable install in sight.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.executable
    t0 = time.monotonic()
    r = subprocess.run(
        [str(context / "hack" / "build-venv.sh"), str(context), str(venv)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"build-venv.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    print(f"build-venv.sh took {time.monotonic() - t0:.0f}s")

    exe = venv / "bin" / "dra-cdi-driver"
    helped = subprocess.run([str(exe), "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert "--healthz-port" in helped.stdout and "--kubelet-dir" in helped.stdout

    # The venv holds the package from the wheel (not a link to this checkout) and no pip.
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-I",
            "-c",
            "import dra_cdi_driver; print(dra_cdi_driver.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    # The nvidia source's NVML binding is in (it loads libnvidia-ml only when asked).
    nvml = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import pynvml"], env=env, capture_output=True
    )
    assert nvml.returncode == 0, nvml.stderr
    assert not list(venv.glob("lib/python*/site-packages/pip"))

    # It serves: both sockets appear, and SIGTERM removes them and exits 0. (A short dir:
    # unix socket paths are limited to 105 bytes (gRPC).)
    run_dir = Path(tempfile.mkdtemp(prefix="dra-img-"))
    request.addfinalizer(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    proc = subprocess.Popen(
        [
            str(exe),
            "--node-name=image-test",
            f"--kubelet-dir={run_dir / 'kubelet'}",
            f"--cdi-root={run_dir / 'cdi'}",
            "--mock-devices=2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sockets = [
        run_dir / "kubelet" / "plugins_registry" / "gpu.cdi.example.com-reg.sock",
        run_dir / "kubelet" / "plugins" / "gpu.cdi.example.com" / "dra.sock",
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(s.exists() for s in sockets):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the installed driver did not serve: {proc.communicate()[0]}")
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert not any(s.exists() for s in sockets), out
