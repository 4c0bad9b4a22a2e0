"""The ldcache hook: installed into the plugin dir, named in each NVIDIA claim's CDI spec, and,
run as runc runs it (OCI state on stdin, a bundle with a root file system), it makes the
image's /etc/ld.so.cache point at the mounted driver libraries.

The e2e suite (tests/e2e/test_nvidia.py) runs it through containerd and runc for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dra_cdi_driver.devices import InventoryError
from dra_cdi_driver.devices.nvidia.ldcache import CONTAINER_CONF, HOOK_SCRIPT, LdcacheHook
from dra_cdi_driver.devices.nvidia.source import NvidiaSource
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import FakeNvml, h100_node

LIB_DIR = Path("/usr/local/nvidia/lib64")


def test_install_writes_the_script_and_the_conf_entry(tmp_path: Path) -> None:
    hook = LdcacheHook(tmp_path / "plugin" / "nvidia", LIB_DIR)
    hook.install()
    assert hook.script.read_text() == HOOK_SCRIPT
    assert hook.script.stat().st_mode & 0o777 == 0o755
    assert hook.conf.read_text() == "/usr/local/nvidia/lib64\n"
    assert hook.conf.stat().st_mode & 0o777 == 0o644


def test_install_leaves_good_files_alone_and_mends_changed_ones(tmp_path: Path) -> None:
    hook = LdcacheHook(tmp_path / "nvidia", LIB_DIR)
    hook.install()
    inode = hook.script.stat().st_ino
    hook.install()
    assert hook.script.stat().st_ino == inode, "rewritten although unchanged"
    hook.script.write_text("#!/bin/sh\nexit 0\n")  # an older driver's, or tampered with
    hook.conf.unlink()
    hook.install()
    assert hook.script.read_text() == HOOK_SCRIPT
    assert hook.conf.exists()


def test_an_unwritable_plugin_dir_fails_start_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "plugin"
    blocker.write_text("a file where the plugin dir should be")
    hook = LdcacheHook(blocker / "nvidia", LIB_DIR)
    with pytest.raises(InventoryError) as err:
        hook.install()
    assert str(blocker / "nvidia") in str(err.value)
    assert "--nvidia-ldcache-hook=false" in str(err.value)


def test_the_spec_runs_the_script_with_nothing_from_the_container(tmp_path: Path) -> None:
    hook = LdcacheHook(tmp_path / "nvidia", LIB_DIR)
    edits = hook.edits().to_json()
    assert edits["hooks"] == [
        {
            "hookName": "createContainer",
            "path": "/bin/sh",  # not the script itself: a noexec plugin dir still works
            "args": ["/bin/sh", str(hook.script), "/usr/local/nvidia/lib64"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],  # no LD_PRELOAD, no image env
        }
    ]
    assert edits["mounts"] == [
        {
            "hostPath": str(hook.conf),
            "containerPath": CONTAINER_CONF,
            "options": ["ro", "nosuid", "nodev", "bind"],
        }
    ]


def _source(host: nvidia_host.FakeHost, **kw: Any) -> NvidiaSource:
    source = NvidiaSource(
        nvml=FakeNvml(h100_node()),
        driver_root=host.driver_root,
        sysfs=host.sysfs,
        proc=host.proc,
        **kw,
    )
    source.discover()
    return source


def test_nvidia_claims_carry_the_hook_in_driver_mode_only(tmp_path: Path) -> None:
    host = nvidia_host.build(tmp_path / "host", h100_node())
    hook = LdcacheHook(tmp_path / "plugin" / "nvidia", LIB_DIR)
    with_hook = _source(host, ldcache_hook=hook).claim_edits([])
    assert [h.args[1] for h in with_hook.hooks] == [str(hook.script)]
    assert CONTAINER_CONF in [m.container_path for m in with_hook.mounts]
    assert not _source(host).claim_edits([]).hooks  # --nvidia-ldcache-hook=false
    spec = tmp_path / "toolkit.json"
    spec.write_text(json.dumps({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": []}))
    toolkit = NvidiaSource(
        nvml=FakeNvml(h100_node()),
        driver_root=host.driver_root,
        cdi_mode="toolkit",
        toolkit_spec_dirs=(tmp_path,),
        ldcache_hook=hook,
    )
    assert toolkit.ldcache_hook is None, "the toolkit's own spec brings its hook"
    toolkit.install_host_files()
    assert not hook.directory.exists()


# --- the script itself, run as runc runs it ----------------------------------------------


def _shared_library(path: Path, soname: str) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build a shared library with")
    src = path.parent / "lib.c"
    src.write_text("int cuInit(unsigned flags) { return (int)flags; }\n")
    subprocess.run(
        [cc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(path), str(src)], check=True
    )
    src.unlink()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """An OCI bundle as containerd lays it out, with the CDI mounts already made in rootfs."""
    if os.geteuid() != 0:
        pytest.skip("ldconfig -r chroots: needs root")
    bundle = tmp_path / "bundle"
    lib_dir = bundle / "rootfs" / "usr/local/nvidia/lib64"
    lib_dir.mkdir(parents=True)
    _shared_library(lib_dir / "libcuda.so.550.54.15", "libcuda.so.1")
    os.symlink("libcuda.so.550.54.15", lib_dir / "libcuda.so.1")
    return bundle


def _run_hook(tmp_path: Path, state: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    hook = LdcacheHook(tmp_path / "plugin", LIB_DIR)
    hook.install()
    spec_hook = hook.edits().hooks[0]
    return subprocess.run(
        [*spec_hook.args],
        executable=spec_hook.path,
        input=json.dumps(state),
        env=dict(e.split("=", 1) for e in spec_hook.env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _cache(rootfs: Path) -> str:
    return subprocess.run(
        ["ldconfig", "-r", str(rootfs), "-p"], check=True, capture_output=True, text=True
    ).stdout


def _state(bundle: Path, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "ociVersion": "1.1.0",
        "id": "c1",
        "status": "creating",
        "pid": 4242,
        "bundle": str(bundle),
        "annotations": annotations or {},
    }


@pytest.mark.parametrize("pretty", [False, True], ids=["compact", "indented"])
def test_the_hook_puts_the_libraries_into_the_images_cache(
    tmp_path: Path, bundle: Path, pretty: bool
) -> None:
    config = {"ociVersion": "1.1.0", "process": {"args": ["sh"]}, "root": {"path": "rootfs"}}
    (bundle / "config.json").write_text(json.dumps(config, indent=2 if pretty else None))
    r = _run_hook(tmp_path, _state(bundle))
    assert r.returncode == 0, r.stderr
    assert "libcuda.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libcuda.so.1" in _cache(
        bundle / "rootfs"
    )
    # -X: no links made, so nothing written into the (read-only) library mounts.
    assert sorted(p.name for p in (bundle / "rootfs/usr/local/nvidia/lib64").iterdir()) == [
        "libcuda.so.1",
        "libcuda.so.550.54.15",
    ]


def test_an_absolute_root_path_is_used_as_is(tmp_path: Path, bundle: Path) -> None:
    rootfs = tmp_path / "elsewhere"
    (bundle / "rootfs").rename(rootfs)
    (bundle / "config.json").write_text(json.dumps({"root": {"path": str(rootfs)}}))
    r = _run_hook(tmp_path, _state(bundle))
    assert r.returncode == 0, r.stderr
    assert "/usr/local/nvidia/lib64/libcuda.so.1" in _cache(rootfs)


def test_annotations_cannot_point_the_hook_elsewhere(tmp_path: Path, bundle: Path) -> None:
    decoy = tmp_path / "decoy"
    (decoy / "rootfs/etc").mkdir(parents=True)
    (decoy / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    config = {"root": {"path": "rootfs"}, "annotations": {"root": '{"path":"/"}'}}
    (bundle / "config.json").write_text(json.dumps(config))
    r = _run_hook(tmp_path, _state(bundle, {"bundle": str(decoy)}))
    assert r.returncode == 0, r.stderr
    assert not (decoy / "rootfs/etc/ld.so.cache").exists()
    assert "libcuda.so.1" in _cache(bundle / "rootfs")


@pytest.mark.parametrize(
    ("state", "config", "message"),
    [
        ({"id": "c1"}, None, "no bundle with a config.json in the OCI state"),
        (None, {"process": {}}, "no root.path in"),
    ],
)
def test_a_broken_state_or_bundle_fails_the_container_with_a_reason(
    tmp_path: Path,
    bundle: Path,
    state: dict[str, Any] | None,
    config: dict[str, Any] | None,
    message: str,
) -> None:
    (bundle / "config.json").write_text(json.dumps(config or {"root": {"path": "rootfs"}}))
    r = _run_hook(tmp_path, state or _state(bundle))
    assert r.returncode == 1
    assert f"dra-cdi-driver update-ldcache: {message}" in r.stderr
    assert not (bundle / "rootfs/etc/ld.so.cache").exists()
