from __future__ import annotations

import re
from typing import Any

import pytest

from dra_cdi_driver.config import API_VERSION, ConfigEntry, ConfigError, GpuConfig, parse, resolve


def params(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "GpuConfig", **fields}


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


def test_parse_full_config() -> None:
    config = parse(params(sharing={"strategy": "TimeSlicing", "timeSlice": "Long"}, env={"A": "1"}))
    assert config == GpuConfig(sharing="TimeSlicing", time_slice="Long", env={"A": "1"})


def test_time_slicing_defaults_its_interval() -> None:
    assert parse(params(sharing={"strategy": "TimeSlicing"})).time_slice == "Default"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([], "parameters: must be an object"),
        (params(extra=1), "parameters.extra: unknown field"),
        ({**params(), "apiVersion": "v2"}, "parameters.apiVersion: 'v2' is not supported"),
        ({**params(), "kind": "Other"}, "parameters.kind"),
        (params(sharing={"strategy": "Fast"}), "parameters.sharing.strategy: 'Fast' is not one of"),
        (params(sharing={"strategy": "Exclusive", "timeSlice": "Short"}), "only allowed with"),
        (
            params(sharing={"strategy": "TimeSlicing", "timeSlice": "Huge"}),
            "parameters.sharing.timeSlice",
        ),
        (
            params(sharing={"strategy": "TimeSlicing", "mode": 1}),
            "parameters.sharing.mode: unknown",
        ),
        (
            params(env={"BAD-NAME": "x"}),
            "parameters.env.BAD-NAME: not a POSIX environment variable name",
        ),
        (params(env={"N": 1}), "parameters.env.N: value must be a string"),
        (params(env={"GPU_DEVICE_0": "x"}), "set by the driver"),
        (params(env=["A=1"]), "parameters.env: must be a map"),
        (params(env={"A=B": "x"}), "parameters.env.'A=B': not a POSIX"),
        (params(env={"A\nB": "x"}), "parameters.env.'A\\nB': not a POSIX"),
        (params(env={"A": "x\0y"}), "parameters.env.A: value must be at most 4096 bytes"),
        (params(env={"A": "x" * 4097}), "parameters.env.A: value must be at most 4096 bytes"),
        (params(env={f"V{i}": "x" for i in range(65)}), "parameters.env: 65 variables, more"),
        (params(sharing={"x" * 11_000: 1}), "bytes of JSON, more than 10240"),
        (params(extra=_nested(17)), "parameters: nested deeper than 16 levels"),
        (_nested(100_000), "parameters: nested deeper than 16 levels"),
        (params(**{"bad\nkey": 1}), "parameters.'bad\\nkey': unknown field"),
    ],
)
def test_parse_names_the_bad_field(parameters: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(parameters)


def entry(index: int, source: str, requests: tuple[str, ...], **env: str) -> ConfigEntry:
    return ConfigEntry(index=index, source=source, requests=requests, parameters=params(env=env))


def test_claim_wins_over_class_and_later_wins_over_earlier() -> None:
    entries = [
        entry(0, "FromClaim", (), WHO="claim-early"),
        entry(1, "FromClass", (), WHO="class"),
        entry(2, "FromClaim", ("a",), WHO="claim-late"),
    ]
    effective = resolve(entries, ["a", "b", "a/sub"])
    assert effective["a"].env == {"WHO": "claim-late"}
    assert effective["a/sub"].env == {"WHO": "claim-late"}  # "a" covers its subrequests
    assert effective["b"].env == {"WHO": "claim-early"}


def test_no_entry_means_default_and_bad_unused_entry_still_fails() -> None:
    assert resolve([], ["a"])["a"] == GpuConfig()
    bad = ConfigEntry(index=3, source="FromClaim", requests=("zzz",), parameters={"kind": 1})
    with pytest.raises(ConfigError, match=r"config\[3\] \(FromClaim, requests \['zzz'\]\)"):
        resolve([bad], ["a"])
