"""The fake NVML keeps to the real one's interface (nvidia-ml-py, module pynvml).

Every test of the nvidia source runs on the fake (no GPU here), so a name, an argument or a
struct field that the fake has and pynvml lacks would pass here and fail on the first GPU
node. This checks the fake against the installed pynvml: functions and how they are called,
constants and their values, and the fields of the structs the driver reads.
"""

from __future__ import annotations

import ctypes
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import fake_nvml
from tests.fakes.fake_nvml import FakeNvml, Handle, h100_node

pynvml = pytest.importorskip("pynvml")

NVML_FUNCTIONS = sorted(
    name for name, _ in inspect.getmembers(FakeNvml, inspect.isfunction) if name.startswith("nvml")
)


def test_the_fake_covers_what_the_driver_calls() -> None:
    from dra_cdi_driver.devices.nvidia import health as nvidia_health
    from dra_cdi_driver.devices.nvidia import nvml as nvidia_nvml

    source = inspect.getsource(nvidia_nvml) + inspect.getsource(nvidia_health)
    called = set(
        name for name in dir(pynvml) if name.startswith("nvml") and f"nvml.{name}(" in source
    )
    assert "nvmlEventSetWait" in called and "nvmlDeviceRegisterEvents" in called
    assert called, "no NVML call found in devices/nvidia/nvml.py: the pattern is out of date"
    assert called <= set(NVML_FUNCTIONS), called - set(NVML_FUNCTIONS)


@pytest.mark.parametrize("name", NVML_FUNCTIONS)
def test_each_fake_function_exists_in_pynvml_and_takes_the_same_arguments(name: str) -> None:
    real = getattr(pynvml, name, None)
    assert callable(real), f"pynvml has no {name}"
    fake = inspect.signature(getattr(FakeNvml, name))
    fake_params = list(fake.parameters.values())[1:]  # without self
    real_params = list(inspect.signature(real).parameters.values())
    # The driver passes arguments by position: the same count (names may differ).
    assert len(fake_params) == len(real_params), f"{name}: fake {fake}, pynvml {real_params}"
    # The fake's optional arguments are optional in pynvml too.
    for fake_p, real_p in zip(fake_params, real_params, strict=True):
        if fake_p.default is not inspect.Parameter.empty:
            assert real_p.default is not inspect.Parameter.empty, (name, real_p.name)


def test_constants_have_pynvml_values() -> None:
    constants = {n: v for n, v in vars(fake_nvml).items() if n.startswith("NVML_")}
    assert "NVML_ERROR_GPU_IS_LOST" in constants
    wrong = {n: (v, getattr(pynvml, n, None)) for n, v in constants.items()}
    assert {n: pair for n, pair in wrong.items() if pair[0] != pair[1]} == {}


def test_the_error_type_carries_the_code_as_pynvml_does() -> None:
    real = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    fake = fake_nvml.NVMLError(fake_nvml.NVML_ERROR_GPU_IS_LOST)
    assert real.value == fake.value == 15
    assert str(real) == str(fake) == "GPU is lost"


def _fields(struct: Any) -> set[str]:
    assert issubclass(struct, ctypes.Structure)
    return {f[0] for f in struct._fields_}


@pytest.mark.parametrize(
    ("call", "struct", "handle"),
    [
        ("nvmlDeviceGetMemoryInfo", "c_nvmlMemory_t", Handle(0)),
        ("nvmlDeviceGetPciInfo", "nvmlPciInfo_t", Handle(0)),
        ("nvmlDeviceGetAttributes", "c_nvmlDeviceAttributes", Handle(3, 0)),
    ],
)
def test_struct_fields_the_fake_returns_exist_in_pynvml(
    call: str, struct: str, handle: Handle
) -> None:
    fake = FakeNvml(h100_node())
    fake.nvmlInit()
    returned = set(vars(getattr(fake, call)(handle)))
    assert returned <= _fields(getattr(pynvml, struct)), returned - _fields(getattr(pynvml, struct))


@pytest.mark.parametrize(
    ("version", "struct"),
    [(2, "c_nvmlGpuInstanceProfileInfo_v2_t"), (1, "c_nvmlGpuInstanceProfileInfo_t")],
)
def test_gpu_instance_profile_info_has_pynvml_fields(version: int, struct: str) -> None:
    fake = FakeNvml(h100_node())
    fake.nvmlInit()
    info = fake.nvmlDeviceGetGpuInstanceProfileInfo(
        Handle(3), fake_nvml.NVML_GPU_INSTANCE_PROFILE_7_SLICE, version
    )
    assert set(vars(info)) == _fields(getattr(pynvml, struct))
    if version == 2:
        assert info.version == pynvml.nvmlGpuInstanceProfileInfo_v2 == 0x02000098


def test_the_driver_asks_for_the_profiles_and_errors_pynvml_has() -> None:
    from dra_cdi_driver.devices.nvidia import nvml as nvidia_nvml

    slices = [8, 7, 6, 4, 3, 2, 1]  # largest first: the first a GPU supports is all of it
    expected = [getattr(pynvml, f"NVML_GPU_INSTANCE_PROFILE_{n}_SLICE") for n in slices]
    assert list(nvidia_nvml.FULL_GPU_PROFILES) == expected
    codes = ("INVALID_ARGUMENT", "NOT_SUPPORTED", "NOT_FOUND", "FUNCTION_NOT_FOUND")
    assert {c: getattr(nvidia_nvml, c) for c in codes} == {
        c: getattr(pynvml, f"NVML_ERROR_{c}") for c in codes
    }


def test_event_constants_and_data_have_pynvml_names_and_values() -> None:
    from dra_cdi_driver.devices.nvidia import health as nvidia_health

    events = {n: v for n, v in vars(fake_nvml).items() if n.startswith("nvmlEventType")}
    assert events == {n: getattr(pynvml, n) for n in events}
    assert pynvml.nvmlEventTypeXidCriticalError == nvidia_health.XID_CRITICAL_ERROR
    assert pynvml.nvmlEventTypeGpuUnavailableError == nvidia_health.GPU_UNAVAILABLE
    assert nvidia_health.TIMEOUT == pynvml.NVML_ERROR_TIMEOUT
    fake = FakeNvml(h100_node())
    fake.nvmlInit()
    event_set = fake.nvmlEventSetCreate()
    fake.nvmlDeviceRegisterEvents(Handle(0), fake_nvml.nvmlEventTypeXidCriticalError, event_set)
    fake.post_event(0, fake_nvml.nvmlEventTypeXidCriticalError, 79)
    data = fake.nvmlEventSetWait(event_set, 10)
    assert set(vars(data)) == _fields(pynvml.c_nvmlEventData_t)
    with pytest.raises(fake_nvml.NVMLError) as caught:  # nothing left: a timeout, as NVML's
        fake.nvmlEventSetWait(event_set, 10)
    assert caught.value.value == pynvml.NVML_ERROR_TIMEOUT


def test_the_module_counts_inits_process_wide_as_nvml_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health watcher holds an nvmlInit while discovery inits and shuts down: its event
    set must keep working (libnvidia-ml counts nvmlInit calls; only the last nvmlShutdown
    uninitializes)."""
    data = tmp_path / "nvml.json"
    data.write_text(json.dumps(h100_node(count=1)))
    monkeypatch.setenv(fake_nvml.DATA_ENV, str(data))
    monkeypatch.setattr(fake_nvml, "_current", None)
    fake_nvml.nvmlInit()  # the watcher's
    watched = fake_nvml.nvmlEventSetCreate()
    fake_nvml.nvmlInit()  # a discovery, which re-reads the node
    fake_nvml.nvmlShutdown()
    with pytest.raises(fake_nvml.NVMLError) as waited:
        fake_nvml.nvmlEventSetWait(watched, 1)
    assert waited.value.value == fake_nvml.NVML_ERROR_TIMEOUT  # no event: not uninitialized
    fake_nvml.nvmlShutdown()
    with pytest.raises(fake_nvml.NVMLError) as after:
        fake_nvml.nvmlDeviceGetCount()
    assert after.value.value == fake_nvml.NVML_ERROR_UNINITIALIZED
