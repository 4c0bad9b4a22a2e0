"""Hypothesis profiles for the fuzz suite, chosen by HYPOTHESIS_PROFILE.

`ci` (the default) runs a bounded, derandomized number of examples, so that `make test`
stays fast and never flakes; `long` is a campaign that keeps what it finds in .hypothesis/
and replays it first next time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Every fuzz test scales its own count from this one (a driver restart costs a second, a
# gRPC call milliseconds), so one number sizes the whole suite.
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "ci",
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_DATA,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(share: float) -> int:
    """This test's number of examples: `share` of the profile's, at least 10."""
    current = settings.default
    assert current is not None  # a profile is loaded above
    return max(10, int(current.max_examples * share))
