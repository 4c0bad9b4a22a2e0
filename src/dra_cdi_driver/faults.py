"""Test-only crash points: the driver kills itself at one named step of prepare or unprepare.

Off unless DRA_CDI_DRIVER_CRASH_AT names a step when the process starts (the crash suite
sets it for one run of the driver). Reaching that step then sends SIGKILL to the process,
so that the suite can check what a crash at exactly that moment leaves behind, and that a
restarted driver and the kubelet's retry put everything right.
"""

from __future__ import annotations

import os
import signal

ENV = "DRA_CDI_DRIVER_CRASH_AT"
STEPS = (
    "prepare:after-api-read",  # the claim is read; nothing is written yet
    "prepare:after-checkpoint-write",  # the record is written; the CDI spec is not
    "prepare:after-spec-write",  # both are written; the kubelet has no answer yet
    "unprepare:after-spec-remove",  # the spec is gone; the record is not
)

_armed = os.environ.get(ENV) or None
if _armed is not None and _armed not in STEPS:
    raise ValueError(f"{ENV}={_armed!r}: not one of {', '.join(STEPS)}")


def crash_point(step: str) -> None:
    if step == _armed:
        os.kill(os.getpid(), signal.SIGKILL)
