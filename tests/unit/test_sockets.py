"""Which sockets in the kubelet's dirs are this driver's, and which of them are stale."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from dra_cdi_driver.kubelet.sockets import instance_sockets, serves, sweep
from dra_cdi_driver.settings import MAX_SOCKET_PATH

DRIVER = "gpu.cdi.example.com"
A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    # Short: socket paths have 105 bytes.
    root = Path(tempfile.mkdtemp(prefix="dra-sock-", dir="/tmp"))
    registry, plugins = root / "plugins_registry", root / "plugins" / DRIVER
    registry.mkdir()
    plugins.mkdir(parents=True)
    yield registry, plugins
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()


def _stale(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(path))
    return path


def _live(path: Path) -> socket.socket:
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    return live


def test_serves_tells_a_listening_socket_from_a_left_one(dirs: tuple[Path, Path]) -> None:
    registry, _ = dirs
    with _live(registry / "live.sock"):
        assert serves(registry / "live.sock")
    assert not serves(registry / "live.sock")  # closed: the file stays, nobody listens
    assert not serves(registry / "missing.sock")


def test_only_this_drivers_names_are_ours(dirs: tuple[Path, Path]) -> None:
    registry, plugins = dirs
    ours = [
        registry / f"{DRIVER}-reg.sock",
        registry / f"{DRIVER}-{A}-reg.sock",
        plugins / "dra.sock",
        plugins / f"dra-{B}.sock",
    ]
    for path in ours:
        _stale(path)
    for name in (
        "other.example.com-reg.sock",  # another driver
        f"x{DRIVER}-reg.sock",
        f"{DRIVER}-Not_A_Uid-reg.sock",
        f"{DRIVER.upper()}-reg.sock",
    ):
        _stale(registry / name)
    (plugins / "dra-notes.sock").write_text("not a socket")
    (registry / f"{DRIVER}-{B}-reg.sock").write_text("a file, not a socket")
    assert sorted(instance_sockets(registry, plugins, DRIVER)) == sorted(ours)


def test_sweep_removes_the_stale_and_keeps_what_another_process_serves(
    dirs: tuple[Path, Path],
) -> None:
    registry, plugins = dirs
    stale = [_stale(registry / f"{DRIVER}-{A}-reg.sock"), _stale(plugins / f"dra-{A}.sock")]
    old_version = _stale(plugins / "dra.sock")
    other_driver = _stale(registry / "other.example.com-reg.sock")
    live_paths = [registry / f"{DRIVER}-{B}-reg.sock", plugins / f"dra-{B}.sock"]
    live = [_live(p) for p in live_paths]
    try:
        assert sorted(sweep(registry, plugins, DRIVER)) == sorted(live_paths)
        assert not any(p.exists() for p in [*stale, old_version])
        assert all(p.exists() for p in live_paths) and other_driver.exists()
    finally:
        for s in live:
            s.close()
    assert sweep(registry, plugins, DRIVER) == []  # the other pod gone: its sockets go too
    assert not any(p.exists() for p in live_paths)


@pytest.mark.parametrize(("extra", "binds"), [(0, True), (1, False)])
def test_grpc_binds_a_socket_path_of_max_socket_path_bytes_and_no_more(
    extra: int, binds: bool
) -> None:
    """MAX_SOCKET_PATH is what gRPC's core accepts, not the kernel's 107 bytes: a longer
    path stops the driver at start (cannot listen)."""
    root = Path(tempfile.mkdtemp(prefix="dra-sock-", dir="/tmp"))
    path = root / ("s" * (MAX_SOCKET_PATH + extra - len(str(root)) - 1))
    assert len(str(path)) == MAX_SOCKET_PATH + extra
    server = grpc.server(ThreadPoolExecutor(1))
    try:
        try:
            server.add_insecure_port(f"unix://{path}")
            bound = True
        except RuntimeError:
            bound = False
        assert bound == binds
    finally:
        server.stop(None)
        path.unlink(missing_ok=True)
        root.rmdir()
