"""The long-lived driver that the tests of one fuzz module share (and the profiles)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz import profiles  # noqa: F401  (loads the profile before any test module)
from tests.fuzz.fence import assert_nothing_escaped
from tests.fuzz.harness import FuzzDriver


@pytest.fixture(scope="module")
def fuzz_driver() -> Iterator[FuzzDriver]:
    """One driver process for a whole test module, in its own fenced tree of dirs."""
    driver = FuzzDriver.create()
    try:
        yield driver
    finally:
        driver.close()
    assert_nothing_escaped()
