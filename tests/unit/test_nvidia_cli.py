"""`dra-cdi-driver --device-source nvidia`: flags, the slices it would publish, and its errors.

The CLI imports the fake NVML through the documented test hook
DRA_CDI_DRIVER_NVML_MODULE=tests.fakes.fake_nvml, with its data in FAKE_NVML_DATA.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dra_cdi_driver.cli import build_parser, main, settings_from_args
from dra_cdi_driver.devices.nvidia.nvml import NVML_MODULE_ENV
from dra_cdi_driver.settings import SettingsError
from tests.fakes import nvidia_host
from tests.fakes.fake_nvml import (
    DATA_ENV,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    gpu_uuid,
    h100_node,
)

REPO = Path(__file__).resolve().parents[2]


def fake_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any] | None = None
) -> nvidia_host.FakeHost:
    data = data if data is not None else h100_node()
    host = nvidia_host.build(tmp_path / "host", data)
    (tmp_path / "nvml.json").write_text(json.dumps(data))
    monkeypatch.setenv(NVML_MODULE_ENV, "tests.fakes.fake_nvml")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nvml.json"))
    return host


def devices_argv(host: nvidia_host.FakeHost, *extra: str) -> list[str]:
    return [
        "devices",
        "--node-name",
        "gpu-node",
        "--device-source",
        "nvidia",
        "--nvidia-driver-root",
        str(host.driver_root),
        *extra,
    ]


def test_devices_shows_the_slice_the_scheduler_will_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = fake_node(tmp_path, monkeypatch)
    plugin_dir = tmp_path / "plugin"
    assert main([*devices_argv(host), "--plugin-dir", str(plugin_dir)]) == 0
    assert not plugin_dir.exists(), "`devices` wrote to the node (the ldcache hook?)"
    report = yaml.safe_load(capsys.readouterr().out)
    # The devices, then the MIG-enabled GPU's counter set in a slice of its own.
    resource_slice, counter_slice = report["resourceSlices"]
    assert resource_slice["spec"]["pool"]["name"] == "gpu-node"
    assert counter_slice["spec"]["sharedCounters"] == [
        {
            "name": "gpu-3-counters",
            "counters": {"memory": {"value": "81152Mi"}, "slices": {"value": "7"}},
        }
    ]
    [counter_set] = report["counterSets"]
    assert counter_set["consumedBy"] == ["gpu-3", *(f"gpu-3-mig-{gi}-0" for gi in range(7, 14))]
    devices = {d["name"]: d for d in resource_slice["spec"]["devices"]}
    assert len(devices) == 15
    gpu = devices["gpu-0"]
    assert gpu["attributes"]["uuid"] == {"string": gpu_uuid(0)}
    assert gpu["attributes"]["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert gpu["attributes"]["architecture"] == {"string": "Hopper"}
    assert gpu["attributes"]["cudaComputeCapability"] == {"version": "9.0.0"}
    assert gpu["attributes"]["driverVersion"] == {"version": "550.54.15"}
    assert gpu["attributes"]["cudaDriverVersion"] == {"version": "12.4.0"}
    assert gpu["attributes"]["migEnabled"] == {"bool": False}
    assert gpu["capacity"] == {"memory": {"value": "85520809984"}}
    assert devices["gpu-3"]["attributes"]["migEnabled"] == {"bool": True}
    mig = devices["gpu-3-mig-13-0"]
    assert mig["attributes"]["profile"] == {"string": "1g.10gb"}
    assert mig["capacity"]["multiprocessors"] == {"value": "16"}
    assert mig["consumesCounters"] == [
        {
            "counterSet": "gpu-3-counters",
            "counters": {"memory": {"value": "9984Mi"}, "slices": {"value": "1"}},
        }
    ]
    assert "consumesCounters" not in gpu  # not in MIG mode: a whole device, as before


def test_the_installed_command_runs_with_the_fake_nvml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = fake_node(tmp_path, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "dra_cdi_driver", *devices_argv(host)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "device source nvidia, 15 device(s)" in done.stdout


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (
            NVML_ERROR_LIBRARY_NOT_FOUND,
            "libnvidia-ml.so.1 was not found: install the NVIDIA driver",
        ),
        (NVML_ERROR_DRIVER_NOT_LOADED, "kernel driver is not loaded"),
        (NVML_ERROR_NO_PERMISSION, "no permission to open the GPUs' device nodes"),
        (NVML_ERROR_LIB_RM_VERSION_MISMATCH, "reboot the node"),
    ],
)
def test_each_nvml_failure_is_one_line_that_says_what_to_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    advice: str,
) -> None:
    data = h100_node()
    data["errors"] = {"nvmlInit": code}
    host = fake_node(tmp_path, monkeypatch, data)
    assert main(devices_argv(host)) == 1
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("dra-cdi-driver devices: error:")]
    assert "NVML initialization failed" in line
    assert f"(NVML error {code})" in line
    assert advice in line
    assert "Traceback" not in err


def test_a_failing_call_on_one_gpu_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = h100_node()
    data["gpus"][4]["errors"] = {"nvmlDeviceGetUUID": NVML_ERROR_NO_PERMISSION}
    host = fake_node(tmp_path, monkeypatch, data)
    assert main(devices_argv(host)) == 1
    err = capsys.readouterr().err
    assert "NVML reading GPU 4 failed: Insufficient Permissions" in err
    assert "Traceback" not in err


def test_no_gpu_fails_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = fake_node(tmp_path, monkeypatch, h100_node(mig_minor=None, count=0))
    assert main(devices_argv(host)) == 1
    assert "no usable GPU" in capsys.readouterr().err
    assert main(devices_argv(host, "--nvidia-allow-no-gpus")) == 0
    monkeypatch.setenv("NVIDIA_ALLOW_NO_GPUS", "true")
    assert main(devices_argv(host)) == 0
    assert "0 device(s)" in capsys.readouterr().out


def test_without_nvidia_ml_py_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = fake_node(tmp_path, monkeypatch)
    monkeypatch.delenv(NVML_MODULE_ENV)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    assert main(devices_argv(host)) == 1
    err = capsys.readouterr().err
    assert "pip install 'dra-cdi-driver[nvidia]'" in err
    assert "Traceback" not in err


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver"
)
def test_real_pynvml_on_a_machine_without_a_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the real nvidia-ml-py, where libnvidia-ml.so.1 does not exist."""
    pytest.importorskip("pynvml")
    monkeypatch.delenv(NVML_MODULE_ENV, raising=False)
    argv = ["devices", "--node-name", "n", "--device-source", "nvidia"]
    assert main([*argv, "--nvidia-driver-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "(NVML error 12)" in err
    assert "libnvidia-ml.so.1 was not found" in err
    assert "Traceback" not in err


def test_nvidia_flags_and_their_env_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(*argv: str) -> Any:
        return settings_from_args(build_parser().parse_args(["--node-name", "n", *argv]))

    defaults = settings("--device-source", "nvidia")
    assert defaults.nvidia_driver_root == Path("/")
    assert defaults.nvidia_driver_root_mount is None
    assert defaults.nvidia_cdi_mode == "driver"
    assert defaults.nvidia_allow_no_gpus is False
    assert defaults.nvidia_ldcache_hook is True
    assert defaults.rediscover_interval == 60
    assert settings().rediscover_interval == 0  # mock devices never change

    monkeypatch.setenv("NVIDIA_DRIVER_ROOT", "/run/nvidia/driver")
    monkeypatch.setenv("NVIDIA_DRIVER_ROOT_MOUNT", "/driver-root")
    monkeypatch.setenv("NVIDIA_CDI_MODE", "toolkit")
    monkeypatch.setenv("NVIDIA_ALLOW_NO_GPUS", "false")
    monkeypatch.setenv("NVIDIA_LDCACHE_HOOK", "false")
    monkeypatch.setenv("REDISCOVER_INTERVAL", "5")
    from_env = settings()
    assert from_env.nvidia_driver_root == Path("/run/nvidia/driver")
    assert from_env.nvidia_driver_root_mount == Path("/driver-root")
    assert from_env.nvidia_cdi_mode == "toolkit"
    assert from_env.nvidia_allow_no_gpus is False
    assert from_env.nvidia_ldcache_hook is False
    assert from_env.rediscover_interval == 5
    assert settings("--rediscover-interval", "0").rediscover_interval == 0
    assert settings("--nvidia-allow-no-gpus=true").nvidia_allow_no_gpus is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rediscover-interval", "-1"], "--rediscover-interval -1.0: must be >= 0"),
        (["--nvidia-driver-root", "run/nvidia"], "--nvidia-driver-root run/nvidia: must be"),
        (["--nvidia-driver-root-mount", "x"], "--nvidia-driver-root-mount x: must be"),
    ],
)
def test_bad_nvidia_settings_name_the_flag(argv: list[str], message: str) -> None:
    settings = settings_from_args(build_parser().parse_args(["--node-name", "n", *argv]))
    with pytest.raises(SettingsError, match=message):
        settings.validate()
