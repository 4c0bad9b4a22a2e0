"""Fixtures of the deploy tests: the pinned helm, the chart rendered with given values.

helm comes from $HELM, else from hack/install-helm.sh (a no-op when cached; a cold build
needs Go and takes minutes). Without helm and without Go the chart tests skip, except in CI
(CI set), where they fail: CI must not pass by skipping them.

The cluster tests (test_cluster_*.py) use the e2e fixtures `cluster`, `k` and `ns` of
tests/e2e/conftest.py, imported below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

# The e2e cluster (one per session) and its per-test namespace; and the hook that attaches
# the components' logs to a failed test's report.
from tests.e2e.conftest import (  # noqa: F401
    cluster,
    k,
    ns,
    pytest_runtest_makereport,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "dra-cdi-driver"
HACK = REPO_ROOT / "hack"
# What `helm template` and `helm lint` assume of the cluster; a helm built with `go install`
# would otherwise assume v1.20.
KUBE_VERSION = ("--kube-version", "1.34.0")

Obj = dict[str, Any]
Render = Callable[..., list[Obj]]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every deploy check must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: this check must not be skipped)", pytrace=False)
    pytest.skip(reason)


def _find_helm() -> str:
    env = os.environ.get("HELM")
    if env:
        return env
    if shutil.which("go") is None:
        skip_or_fail("helm: HELM is not set and Go is absent to build it (hack/install-helm.sh)")
    r = subprocess.run(
        [str(HACK / "install-helm.sh")], capture_output=True, text=True, timeout=1200
    )
    if r.returncode != 0:
        skip_or_fail(f"hack/install-helm.sh failed: {r.stderr.strip()[-2000:]}")
    return r.stdout.strip()


@pytest.fixture(scope="session")
def helm() -> str:
    return _find_helm()


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def template(
    helm: str,
    values: Mapping[str, object] | None = None,
    *,
    release: str = "dra-cdi-driver",
    namespace: str = "dra-cdi-driver",
    extra: tuple[str, ...] = (),
) -> list[Obj]:
    """`helm template` with --set values; the rendered objects (empty documents dropped)."""
    args = ["template", release, str(CHART), "--namespace", namespace, *KUBE_VERSION, *extra]
    for key, value in (values or {}).items():
        args += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    r = run_helm(helm, *args)
    assert r.returncode == 0, f"helm template failed:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.fixture(scope="session")
def rendered(helm: str) -> list[Obj]:
    """The chart with its default values."""
    return template(helm)


def one(objs: list[Obj], kind: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
