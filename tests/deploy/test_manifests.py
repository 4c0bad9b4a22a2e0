"""deploy/manifests/ is the chart rendered with its default values, and is kept fresh."""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

import yaml

from .conftest import HACK, REPO_ROOT, Obj, one

MANIFESTS = REPO_ROOT / "deploy" / "manifests" / "dra-cdi-driver.yaml"


def test_plain_manifests_are_the_chart_rendered_with_defaults(helm: str, tmp_path: Path) -> None:
    fresh = tmp_path / "dra-cdi-driver.yaml"
    r = subprocess.run(
        [str(HACK / "render-manifests.sh"), str(fresh)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HELM": helm},
    )
    assert r.returncode == 0, r.stderr
    committed = MANIFESTS.read_text() if MANIFESTS.exists() else ""
    # Blank lines aside: Helm 3 and 4 differ only there.
    if _lines(committed) != _lines(fresh.read_text()):
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                fresh.read_text().splitlines(keepends=True),
                str(MANIFESTS.relative_to(REPO_ROOT)),
                "rendered now",
            )
        )
        raise AssertionError(
            "deploy/manifests/ is stale: run hack/render-manifests.sh\n" + diff[:6000]
        )


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_plain_manifests_create_their_namespace_first() -> None:
    docs: list[Obj] = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    assert docs[0]["kind"] == "Namespace"
    assert docs[0]["metadata"]["name"] == "dra-cdi-driver"
    # hostPath volumes need the privileged Pod Security level.
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for d in docs[1:]:
        if d["kind"] in ("ServiceAccount", "DaemonSet"):
            assert d["metadata"]["namespace"] == "dra-cdi-driver"
    assert one(docs, "DaemonSet")["metadata"]["name"] == "dra-cdi-driver"
