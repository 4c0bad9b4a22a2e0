"""Fixtures of the end-to-end tests: one cluster per session, one namespace per test.

The provider comes from E2E_PROVIDER (local | existing | kind; default local). When a test
fails, the tail of every component's log is attached to its
report. See tests/e2e/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .harness import config, kube, logs, providers
from .harness.providers import E2ECluster

_cluster: E2ECluster | None = None
_users = 0  # fixture instances using _cluster (tests/deploy imports this fixture too)
_stack = ExitStack()


@pytest.fixture(scope="session")
def cluster() -> Iterator[E2ECluster]:
    """One cluster for the whole run. tests/deploy/conftest.py imports this fixture, which
    makes pytest keep a second instance of it for tests/deploy: both share the cluster, and
    the last one to finish tears it down."""
    global _cluster, _users
    if _cluster is None:
        _cluster = _start_cluster()
    _users += 1
    try:
        yield _cluster
    finally:
        _users -= 1
        if _users == 0:
            _save_artifacts(_cluster)
            _cluster = None
            _stack.close()


def _start_cluster() -> E2ECluster:
    name = providers.provider_name()
    # SIGTERM (a CI timeout, `kill`) would end the session without tearing the cluster down;
    # turn it into an interrupt so that the fixture finalizers still run.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    _stack.callback(signal.signal, signal.SIGTERM, previous)
    t0 = time.monotonic()
    try:
        c = _stack.enter_context(providers.provide(name))
    except providers.ProviderUnavailable as e:
        _stack.close()
        if config.e2e_required():
            pytest.fail(f"E2E_REQUIRE is set but {e}", pytrace=False)
        pytest.skip(str(e))
    print(f"\n[e2e] provider={name} node={c.node_name} ready in {time.monotonic() - t0:.1f}s")
    return c


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _save_artifacts(c: E2ECluster) -> None:
    """Copy the component logs to $E2E_ARTIFACTS (CI keeps them) before teardown."""
    dest = os.environ.get("E2E_ARTIFACTS")
    if not dest:
        return
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    for name, path in c.current_log_files().items():
        if path.exists():
            shutil.copy(path, d / f"{name}.log")


@pytest.fixture
def k(cluster: E2ECluster) -> kube.Kube:
    return cluster.kube


@pytest.fixture
def ns(cluster: E2ECluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace; deleted (and waited for) after the test, so every claim of the
    test is unprepared and deallocated before the next test starts."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    name = f"{base}-{uuid.uuid4().hex[:5]}".strip("-")
    k = cluster.kube
    k.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    k.wait(
        f"service account default in {name}",
        lambda: k.get_or_none("serviceaccount", "default", name),
        60,
    )
    yield name
    if os.environ.get("E2E_KEEP_NAMESPACES"):
        return
    k.run("delete", "pods", "--all", "-n", name, "--wait=true", "--timeout=120s", timeout=150)
    k.delete("namespace", name, timeout=180)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.failed and rep.when in ("call", "setup") and _cluster is not None:
        for title, text in logs.tails(_cluster.current_log_files()):
            rep.sections.append((title, text))
    return rep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if providers.SUMMARY:
        terminalreporter.section("e2e figures")
        for line in providers.SUMMARY:
            terminalreporter.write_line(line)
