"""What one check found, and how the findings are shown: one line each, or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Result:
    check: str  # short and stable, e.g. "containerd", "kubelet", "cdi root"
    status: Status
    message: str  # what was found, in plain words
    fix: str = ""  # what to do about it; empty when ok

    @staticmethod
    def ok(check: str, message: str) -> Result:
        return Result(check, "ok", message)

    @staticmethod
    def warn(check: str, message: str, fix: str = "") -> Result:
        return Result(check, "warn", message, fix)

    @staticmethod
    def fail(check: str, message: str, fix: str = "") -> Result:
        return Result(check, "fail", message, fix)


def exit_code(results: Sequence[Result]) -> int:
    """0: the node is ready for the driver (no check failed); 1: it is not."""
    return 1 if any(r.status == "fail" for r in results) else 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def summary(results: Sequence[Result]) -> str:
    failed = sum(r.status == "fail" for r in results)
    warned = sum(r.status == "warn" for r in results)
    if failed:
        return f"node not ready: {_plural(failed, 'check')} failed"
    return f"node ready ({_plural(warned, 'warning')})" if warned else "node ready"


def render_text(results: Sequence[Result]) -> str:
    lines = []
    for r in results:
        line = f"{r.status:<5} {r.check}: {r.message}"
        if r.fix:
            line += f"; fix: {r.fix}"
        lines.append(line)
    lines.append(summary(results))
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2) + "\n"
