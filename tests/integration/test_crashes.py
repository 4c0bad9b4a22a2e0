"""Crashes at every step, full disks, read-only dirs and damaged records: nothing prepared is
lost, nothing is left half-written, and the kubelet's retry always puts things right.

The real driver process, real gRPC over unix sockets. A crash is a SIGKILL the driver sends
itself at a named step (src/dra_cdi_driver/faults.py, armed only through
DRA_CDI_DRIVER_CRASH_AT); the driver is then started again, as the DaemonSet would, and the
kubelet's retry is played.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from dra_cdi_driver.faults import STEPS
from tests.fakeapi import FakeApi, claim_object, result
from tests.integration.conftest import DRIVER, DriverFactory, DriverProcess

KIND = f"{DRIVER}/gpu"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _claim(api: FakeApi, name: str, n: int, devices: list[str]) -> tuple[str, str, str]:
    api.add_claim(claim_object(name, _uid(n), [result(d) for d in devices]))
    return ("default", name, _uid(n))


def spec_uids(driver: DriverProcess) -> set[str]:
    prefix = f"{DRIVER}_gpu-"
    return {p.name[len(prefix) : -len(".json")] for p in driver.spec_files()}


def record_uids(driver: DriverProcess) -> set[str]:
    return {p.stem for p in driver.checkpoint_files()}


def assert_consistent(driver: DriverProcess) -> None:
    """No spec without a prepared claim, no prepared claim without its spec, no temporaries."""
    assert spec_uids(driver) == record_uids(driver)
    leftovers = [
        p.name
        for d in (driver.cdi_root, driver.plugin_dir / "checkpoint")
        for p in d.iterdir()
        if p.name.endswith(".tmp")
    ]
    assert leftovers == []


def restart(driver: DriverProcess) -> None:
    """Start the driver again without a crash point, as the DaemonSet restarts its pod."""
    if driver.proc is not None:
        driver.proc.wait(timeout=20)  # it killed itself
        driver.proc = None
    driver.env.pop("DRA_CDI_DRIVER_CRASH_AT", None)
    driver.start()


@pytest.mark.parametrize("step", [s for s in STEPS if s.startswith("prepare:")])
def test_a_crash_while_preparing_is_healed_by_the_retry(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str], step: str
) -> None:
    api, url = fake_api
    claim = _claim(api, "crashy", 1, ["gpu-1", "gpu-2"])
    driver = make_driver(url)
    fresh = driver.dra("v1").prepare(_claim(api, "reference", 2, ["gpu-1", "gpu-2"]))
    driver.dra("v1").unprepare(("default", "reference", _uid(2)))
    driver.stop(signal.SIGTERM)
    driver.env["DRA_CDI_DRIVER_CRASH_AT"] = step
    driver.start()

    with pytest.raises(grpc.RpcError) as dropped:
        driver.dra("v1").prepare(claim)
    assert dropped.value.code() == grpc.StatusCode.UNAVAILABLE  # the process died mid-call
    assert driver.proc is not None and driver.proc.wait(timeout=20) == -signal.SIGKILL

    restart(driver)
    assert_consistent(driver)  # at start already: the crash left nothing half-done
    answer = driver.dra("v1").prepare(claim).claims[_uid(1)]  # the kubelet's retry
    assert answer.error == ""
    ids = sorted(i for d in answer.devices for i in d.cdi_device_ids)
    reference = sorted(i for d in fresh.claims[_uid(2)].devices for i in d.cdi_device_ids)
    assert ids == [i.replace(_uid(2), _uid(1)) for i in reference]  # what a clean run gives
    assert spec_uids(driver) == {_uid(1)}
    assert_consistent(driver)

    assert driver.dra("v1").unprepare(claim).claims[_uid(1)].error == ""
    assert spec_uids(driver) == set() and record_uids(driver) == set()


def test_a_crash_while_unpreparing_is_healed_by_the_retry(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    claim = _claim(api, "crashy", 3, ["gpu-4"])
    driver = make_driver(url)
    assert driver.dra("v1").prepare(claim).claims[_uid(3)].error == ""
    driver.stop(signal.SIGTERM)
    driver.env["DRA_CDI_DRIVER_CRASH_AT"] = "unprepare:after-spec-remove"
    driver.start()

    with pytest.raises(grpc.RpcError):
        driver.dra("v1").unprepare(claim)
    restart(driver)
    assert_consistent(driver)  # the record still says prepared: its spec is back
    api.remove_claim("default", "crashy")  # unprepare must not need the API
    assert driver.dra("v1").unprepare(claim).claims[_uid(3)].error == ""
    assert spec_uids(driver) == set() and record_uids(driver) == set()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: text.replace('"gpu-5"', '"gpu-6"'), id="wrong-checksum"),
        pytest.param(
            lambda text: json.dumps({**json.loads(text), "version": 99}), id="wrong-schema"
        ),
    ],
)
def test_a_damaged_record_is_dropped_with_one_line_and_the_claim_prepared_again(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str], damage: object
) -> None:
    api, url = fake_api
    claim = _claim(api, "damaged", 4, ["gpu-5"])
    driver = make_driver(url)
    before = driver.dra("v1").prepare(claim)
    driver.stop(signal.SIGKILL)
    [record] = driver.checkpoint_files()
    record.write_text(damage(record.read_text()))  # type: ignore[operator]
    log_start = len(driver.log())

    driver.start()
    lines = [
        ln
        for ln in driver.log()[log_start:].splitlines()
        if "discarding unreadable checkpoint" in ln
    ]
    assert len(lines) == 1 and str(record) in lines[0], lines
    assert_consistent(driver)  # the record is gone, and so is the spec it covered
    assert spec_uids(driver) == set()
    assert driver.dra("v1").prepare(claim) == before  # the kubelet's retry
    assert spec_uids(driver) == record_uids(driver) == {_uid(4)}


# --- full and read-only filesystems ---------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextmanager
def tmpfs_at(path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted over `path` (a dir the driver already uses), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Take every free byte of the filesystem of `directory`."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


@needs_root
def test_a_full_cdi_root_is_a_per_claim_error_and_leaves_no_partial_file(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url)
    with tmpfs_at(driver.cdi_root) as tiny_tmpfs:
        full_cdi_root(driver, api, tiny_tmpfs)


def full_cdi_root(driver: DriverProcess, api: FakeApi, tiny_tmpfs: Path) -> None:
    ok = _claim(api, "fits", 5, ["gpu-0"])
    assert driver.dra("v1").prepare(ok).claims[_uid(5)].error == ""
    fill(tiny_tmpfs)
    full = _claim(api, "nospace", 6, ["gpu-1", "gpu-2", "gpu-3"])
    error = driver.dra("v1").prepare(full).claims[_uid(6)].error
    assert "default/nospace" in error and "No space left on device" in error, error
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == [
        "filler",
        f"{DRIVER}_gpu-{_uid(5)}.json",
    ]
    assert record_uids(driver) == {_uid(5)}
    (tiny_tmpfs / "filler").unlink()
    assert driver.dra("v1").prepare(full).claims[_uid(6)].error == ""  # the retry, with room


@needs_root
def test_a_full_checkpoint_dir_is_a_per_claim_error_and_leaves_no_spec(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url)
    with tmpfs_at(driver.plugin_dir / "checkpoint") as records:
        fill(records)
        claim = _claim(api, "norecord", 7, ["gpu-1"])
        error = driver.dra("v1").prepare(claim).claims[_uid(7)].error
        assert "default/norecord" in error and "cannot record the claim in the checkpoint" in error
        assert "No space left on device" in error, error
        assert driver.spec_files() == []
        assert [p.name for p in records.iterdir()] == ["filler"]


@needs_root
def test_a_cdi_root_turned_read_only_is_a_per_claim_error(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url)
    with tmpfs_at(driver.cdi_root) as cdi_root:
        subprocess.run(["mount", "-o", "remount,ro", str(cdi_root)], check=True)
        claim = _claim(api, "readonly", 8, ["gpu-1"])
        error = driver.dra("v1").prepare(claim).claims[_uid(8)].error
        assert "default/readonly" in error and "Read-only file system" in error, error
        assert list(cdi_root.iterdir()) == [] and record_uids(driver) == set()
        subprocess.run(["mount", "-o", "remount,rw", str(cdi_root)], check=True)
        assert driver.dra("v1").prepare(claim).claims[_uid(8)].error == ""
