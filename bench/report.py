"""Turns the collected figures into ratios (ours over theirs) and plain-text tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.stats import ratio

OURS, THEIRS = "ours", "theirs"
Row = Sequence[object]


def table(title: str, header: Row, rows: Sequence[Row]) -> str:
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value == 0:
        return "0"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if value >= 1 else f"{value:.3f}"
    return str(value)


def lookup(figures: dict[str, Any] | None, path: str) -> Any:
    """figures["a"]["b"] for the path "a.b"; None where something is missing."""
    value: Any = figures
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


PREPARE_RATIOS = {
    "prepare_ms_per_claim_p50": "prepare.per_claim_ms.p50",
    "prepare_ms_per_claim_p95": "prepare.per_claim_ms.p95",
    "prepare_ms_per_claim_p99": "prepare.per_claim_ms.p99",
    "prepare_ms_per_call_p50": "prepare.per_call_ms.p50",
    "prepare_claims_per_s": "prepare.claims_per_s",
    "unprepare_ms_per_claim_p50": "unprepare.per_claim_ms.p50",
    "unprepare_claims_per_s": "unprepare.claims_per_s",
    "cpu_s": "cpu_s",
    "peak_rss_mib": "peak_rss_mib",
}
STARTUP_RATIOS = {
    "registration_s": "registration_s",
    "first_claim_s": "first_claim_s",
    "idle_s": "idle_s",
    "idle_rss_mib": "idle_rss_mib",
}


def _ratios(entry: dict[str, Any], paths: dict[str, str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, path in paths.items():
        value = ratio(lookup(entry.get(OURS), path), lookup(entry.get(THEIRS), path))
        out[name] = round(value, 3) if value is not None else None
    return out


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "prepare": {e["config"]: _ratios(e, PREPARE_RATIOS) for e in results["prepare"]},
        "startup": _ratios(results["startup"], STARTUP_RATIOS),
        "publisher": {
            str(e["devices"]): _ratios(e, {"published_s": "published_s"})
            for e in results["publisher"]
        },
    }


NO_RATIO = {"errors", "slices", "load.other_cores", "steady_writes_per_min"}


def _three(entry: dict[str, Any], label: str, cols: Sequence[str]) -> list[Row]:
    """Rows for ours, theirs and ours/theirs of one configuration."""
    rows: list[Row] = []
    for n, who in enumerate((OURS, THEIRS)):
        if who in entry:
            rows.append([label if n == 0 else "", who, *(lookup(entry[who], c) for c in cols)])
    if OURS in entry and THEIRS in entry:
        ratios = [None if _no_ratio(c) else _ratio(entry, c) for c in cols]
        rows.append(["", "ours/theirs", *ratios])
    return rows


def _no_ratio(path: str) -> bool:
    return path in NO_RATIO or path.rsplit(".", 1)[-1] in NO_RATIO


def _ratio(entry: dict[str, Any], path: str) -> float | None:
    return ratio(lookup(entry[OURS], path), lookup(entry[THEIRS], path))


def _phase_table(results: dict[str, Any], phase: str, rpc: str) -> str:
    cols = [f"{phase}.per_call_ms.p{p}" for p in (50, 95, 99)]
    cols += [f"{phase}.per_claim_ms.p{p}" for p in (50, 95, 99)]
    cols += [f"{phase}.claims_per_s", f"{phase}.errors"]
    rows = [r for e in results["prepare"] for r in _three(e, e["label"], cols)]
    header = ["claims/call x concurrency", "driver", "ms/call p50", "p95", "p99"]
    header += ["ms/claim p50", "p95", "p99", "claims/s", "errors"]
    return table(f"{rpc} ({results['settings']['claims']:,} claims each)", header, rows)


def render(results: dict[str, Any]) -> str:
    parts = [
        _phase_table(results, "prepare", "NodePrepareResources"),
        _phase_table(results, "unprepare", "NodeUnprepareResources"),
    ]
    cols = ["cpu_s", "cpu_ms_per_claim", "peak_rss_mib", "load.other_cores"]
    rows = [r for e in results["prepare"] for r in _three(e, e["label"], cols)]
    parts.append(
        table(
            "Driver CPU (prepare + unprepare) and memory",
            [
                "claims/call x concurrency",
                "driver",
                "CPU s",
                "CPU ms/claim",
                "peak RSS MiB",
                "other load (cores)",
            ],
            rows,
        )
    )
    startup = results["startup"]
    cols = ["registration_s", "first_claim_s", "idle_s", "startup_cpu_s", "idle_rss_mib"]
    parts.append(
        table(
            f"Start-up (median of {lookup(startup, 'ours.starts') or '-'} starts)",
            ["", "driver", "to GetInfo s", "to 1st claim s", "to idle s", "CPU s", "idle RSS MiB"],
            _three(startup, "", cols),
        )
    )
    cols = ["published_s", "slices", "steady_writes_per_min", "rss_mib"]
    rows = [r for e in results["publisher"] for r in _three(e, f"{e['devices']} devices", cols)]
    parts.append(
        table(
            "ResourceSlices: process start -> all slices present; writes in steady state",
            ["", "driver", "published s", "slices", "writes/min", "RSS MiB"],
            rows,
        )
    )
    problems = [
        f"  {e['devices']} devices, {who}: {e[who]['problem']}"
        for e in results["publisher"]
        for who in (OURS, THEIRS)
        if lookup(e.get(who), "problem")
    ]
    if problems:
        parts.append("Not published:\n" + "\n".join(problems))
    return "\n\n".join(parts)
