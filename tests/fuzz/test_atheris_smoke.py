"""A short run of each atheris harness (tests/fuzz/atheris): they start, find nothing in a
few seconds of coverage-guided fuzzing, and really fuzz (libFuzzer reports every run done).

ATHERIS_RUNS sets the runs of each harness (default: ~10-20 s each on two cores). Long
campaigns are run by hand: `python -m tests.fuzz.atheris.<name> -max_total_time=3600 DIR`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
# Runs that take ~10-20 s each: the JSON parsers run thousands a second, the spec readers
# (two files written and read, YAML in pure Python) about a hundred and fifty.
RUNS = {"allocation": 120_000, "opaque": 100_000, "checkpoint": 25_000, "spec": 3_000}


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(RUNS))
def test_harness_runs_clean(name: str, tmp_path: Path) -> None:
    runs = int(os.environ.get("ATHERIS_RUNS", RUNS[name]))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    command = [sys.executable, "-m", f"tests.fuzz.atheris.fuzz_{name}", f"-runs={runs}"]
    command += ["-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)]
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=600,
    )
    output = done.stdout
    finding = output.find("=== Uncaught Python exception")  # the traceback, then the input
    tail = output[finding : finding + 6000] if finding >= 0 else output[-6000:]
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0, f"fuzz_{name} exited {done.returncode}, {crashes}:\n{tail}"
    match = re.search(r"^Done (\d+) runs", output, re.MULTILINE)
    assert match, f"fuzz_{name}: libFuzzer did not report its runs:\n{tail}"
    assert int(match.group(1)) == runs, f"fuzz_{name} stopped early:\n{tail}"
