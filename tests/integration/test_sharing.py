"""Prepare of shares of a shared GPU (consumable capacity), over real gRPC on unix sockets."""

from __future__ import annotations

import json
from typing import Any

from tests.fakeapi import FakeApi, claim_object, result
from tests.integration.conftest import DRIVER, DriverFactory

SHARE_A = "7d3c2e1a-0000-4000-8000-00000000000a"
SHARE_B = "7d3c2e1a-0000-4000-8000-00000000000b"


def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def share(device: str, share_id: str, memory: str, request: str = "gpu") -> dict[str, Any]:
    return {
        **result(device, request),
        "shareID": share_id,
        "consumedCapacity": {"memory": memory, "compute": "10"},
    }


def test_each_share_gets_its_own_cdi_device_and_sees_what_it_took(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url, ["--mock-gpu-mode=shared"])
    # One claim holding two shares of gpu-1 (two requests), another claim a share of it too.
    api.add_claim(
        claim_object(
            "two",
            _uid(1),
            [share("gpu-1", SHARE_A, "20Gi", "a"), share("gpu-1", SHARE_B, "30Gi", "b")],
        )
    )
    other = "7d3c2e1a-0000-4000-8000-00000000000c"
    api.add_claim(claim_object("other", _uid(2), [share("gpu-1", other, "10Gi")]))
    dra = driver.dra("v1")
    answer = dra.prepare(("default", "two", _uid(1))).claims[_uid(1)]
    assert answer.error == ""
    got = {
        (d.device_name, d.share_id): (list(d.request_names), list(d.cdi_device_ids))
        for d in answer.devices
    }
    assert got == {
        ("gpu-1", SHARE_A): (["a"], [f"{DRIVER}/gpu=gpu-1-{SHARE_A}-{_uid(1)}"]),
        ("gpu-1", SHARE_B): (["b"], [f"{DRIVER}/gpu=gpu-1-{SHARE_B}-{_uid(1)}"]),
    }
    spec = json.loads((driver.cdi_root / f"{DRIVER}_gpu-{_uid(1)}.json").read_text())
    envs = {d["name"]: set(d["containerEdits"]["env"]) for d in spec["devices"]}
    assert "GPU_DEVICE_1_MEMORY_LIMIT=20Gi" in envs[f"gpu-1-{SHARE_A}-{_uid(1)}"]
    assert f"GPU_DEVICE_1_SHARE_ID={SHARE_B}" in envs[f"gpu-1-{SHARE_B}-{_uid(1)}"]
    assert "GPU_DEVICE_1_MEMORY_LIMIT=30Gi" in envs[f"gpu-1-{SHARE_B}-{_uid(1)}"]

    assert dra.prepare(("default", "other", _uid(2))).claims[_uid(2)].error == ""
    assert len(driver.spec_files()) == 2
    # One sharer goes; the other's spec and record stay as they were.
    before = (driver.cdi_root / f"{DRIVER}_gpu-{_uid(2)}.json").read_bytes()
    assert dra.unprepare(("default", "two", _uid(1))).claims[_uid(1)].error == ""
    assert [p.name for p in driver.spec_files()] == [f"{DRIVER}_gpu-{_uid(2)}.json"]
    assert (driver.cdi_root / f"{DRIVER}_gpu-{_uid(2)}.json").read_bytes() == before
    assert [p.stem for p in driver.checkpoint_files()] == [_uid(2)]


def test_a_consumed_capacity_that_is_not_a_quantity_is_refused(
    make_driver: DriverFactory, fake_api: tuple[FakeApi, str]
) -> None:
    api, url = fake_api
    driver = make_driver(url, ["--mock-gpu-mode=shared"])
    bad = share("gpu-0", SHARE_A, "lots")
    api.add_claim(claim_object("bad", _uid(3), [bad]))
    error = driver.dra("v1").prepare(("default", "bad", _uid(3))).claims[_uid(3)].error
    assert (
        "default/bad" in error and "consumedCapacity: not a capacity name and a quantity" in error
    )
    assert driver.spec_files() == []
