"""The figures of a run as Markdown tables, for bench/README.md and the root README.

.venv/bin/python -m bench.markdown [bench/results/latest.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import OURS, THEIRS, lookup
from bench.stats import ratio

DEFAULT = Path(__file__).resolve().parent / "results" / "latest.json"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pair(entry: dict[str, Any], path: str, digits: int = 2) -> list[str]:
    ours, theirs = lookup(entry.get(OURS), path), lookup(entry.get(THEIRS), path)
    r = ratio(ours, theirs)
    return [_fmt(ours, digits), _fmt(theirs, digits), _fmt(r, 2) if r is not None else "-"]


def _cell(entry: dict[str, Any], path: str) -> str:
    """ours / theirs (ratio)"""
    ours, theirs, r = _pair(entry, path)
    return f"{ours} / {theirs} ({r})"


PREPARE_COLUMNS = (
    ("prepare p50 ms/claim", "prepare.per_claim_ms.p50"),
    ("prepare p99 ms/claim", "prepare.per_claim_ms.p99"),
    ("prepare claims/s", "prepare.claims_per_s"),
    ("unprepare claims/s", "unprepare.claims_per_s"),
    ("driver CPU ms/claim", "cpu_ms_per_claim"),
)


def prepare_table(results: dict[str, Any]) -> str:
    header = ["claims/call x concurrency", *(title for title, _ in PREPARE_COLUMNS)]
    rows = [
        [e["label"], *(_cell(e, path) for _, path in PREPARE_COLUMNS)] for e in results["prepare"]
    ]
    return "Each cell: ours / theirs (ours/theirs).\n\n" + _md(header, rows)


def latency_table(results: dict[str, Any]) -> str:
    header = [
        "claims/call x concurrency",
        "phase",
        "ours p50 / p95 / p99 ms per call",
        "theirs p50 / p95 / p99 ms per call",
    ]
    rows = []
    for e in results["prepare"]:
        for phase in ("prepare", "unprepare"):
            cells = []
            for who in (OURS, THEIRS):
                values = [lookup(e.get(who), f"{phase}.per_call_ms.p{p}") for p in (50, 95, 99)]
                cells.append(" / ".join(_fmt(v) for v in values))
            rows.append([e["label"], phase, *cells])
    return _md(header, rows)


def startup_table(results: dict[str, Any]) -> str:
    s = results["startup"]
    rows = []
    for label, path, digits in (
        ("process start -> GetInfo answered (s)", "registration_s", 3),
        ("process start -> first claim prepared (s)", "first_claim_s", 3),
        ("process start -> idle (s)", "idle_s", 2),
        ("CPU until idle (s)", "startup_cpu_s", 2),
        ("idle RSS (MiB)", "idle_rss_mib", 1),
    ):
        rows.append([label, *_pair(s, path, digits)])
    rows.append(
        ["peak RSS over a configuration (MiB)"]
        + [
            f"{min(lookup(e[w], 'peak_rss_mib') for e in results['prepare']):.0f}-"
            f"{max(lookup(e[w], 'peak_rss_mib') for e in results['prepare']):.0f}"
            for w in (OURS, THEIRS)
        ]
        + ["-"]
    )
    return _md(["", "ours", "theirs", "ratio"], rows)


def publisher_table(results: dict[str, Any]) -> str:
    rows = []
    for e in results["publisher"]:
        cells = [f"{e['devices']:,}"]
        for who in (OURS, THEIRS):
            f = e.get(who) or {}
            if f.get("published_s") is None:
                cells.append(f"not published ({f.get('problem', 'timed out')})")
            else:
                cells.append(
                    f"{f['published_s']:.2f} s, {f['slices']} slice(s), "
                    f"{f['steady_writes_per_min']:.0f} writes/min"
                )
        rows.append(cells)
    return _md(["devices", "ours", "theirs"], rows)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    return "\n\n".join(
        [
            f"Run {results['generated']}, `{results['command']}`, {results['elapsed_s']} s; "
            f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
            f"Python {m['python']}, {m['go']}; kube-apiserver {results['versions']['kubernetes']}; "
            f"ours {results['versions']['ours']}, theirs {results['versions'].get('theirs')}.",
            prepare_table(results),
            latency_table(results),
            startup_table(results),
            publisher_table(results),
        ]
    )


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
