"""The PNG: ours next to theirs for each figure that matters. Needs matplotlib (the `bench`
extra: pip install -e '.[bench]'); without it the run writes the JSON only and says so."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import OURS, THEIRS

COLORS = {OURS: "#3572A5", THEIRS: "#00ADD8"}  # Python blue, Go cyan


def _pyplot() -> Any | None:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _value(figures: dict[str, Any] | None, path: str) -> float:
    value: Any = figures
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else float("nan")


def _short(value: float) -> str:
    if value != value:  # NaN: not measured
        return ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _bars(
    ax: Any,
    title: str,
    groups: Sequence[str],
    entries: Sequence[dict[str, Any]],
    path: str,
    labels: dict[str, str],
    *,
    log: bool = False,
) -> None:
    width = 0.38
    for n, who in enumerate((OURS, THEIRS)):
        values = [_value(e.get(who), path) for e in entries]
        xs = [i + (n - 0.5) * width for i in range(len(groups))]
        bars = ax.bar(xs, values, width, label=labels.get(who, who), color=COLORS[who])
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=1)
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def write(results: dict[str, Any], path: Path) -> bool:
    """Write the chart; False when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return False
    labels = {who: results["drivers"][who]["label"] for who in results["drivers"]}
    prepare = results["prepare"]
    configs = [e["label"] for e in prepare]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _bars(
        axes[0][0],
        "prepare: ms per claim, p50 (log)",
        configs,
        prepare,
        "prepare.per_claim_ms.p50",
        labels,
        log=True,
    )
    _bars(axes[0][1], "prepare: claims/s", configs, prepare, "prepare.claims_per_s", labels)
    _bars(axes[0][2], "unprepare: claims/s", configs, prepare, "unprepare.claims_per_s", labels)
    _bars(
        axes[1][0],
        "driver CPU ms per claim (prepare + unprepare)",
        configs,
        prepare,
        "cpu_ms_per_claim",
        labels,
    )
    startup = results["startup"]
    metrics = [
        ("registration_s", "to GetInfo"),
        ("first_claim_s", "to 1st claim prepared"),
        ("idle_s", "to idle"),
    ]
    rows = [{who: {"v": _value(startup.get(who), m)} for who in (OURS, THEIRS)} for m, _ in metrics]
    _bars(
        axes[1][1],
        "start-up (s); idle RSS in the legend",
        [t for _, t in metrics],
        rows,
        "v",
        {
            who: f"{labels.get(who, who)}: {_value(startup.get(who), 'idle_rss_mib'):.0f} MiB"
            for who in (OURS, THEIRS)
        },
    )
    publisher = results["publisher"]
    _bars(
        axes[1][2],
        "start -> all ResourceSlices present (s)",
        [f"{e['devices']} devices" for e in publisher],
        publisher,
        "published_s",
        labels,
    )
    for who in (OURS, THEIRS):
        for i, e in enumerate(publisher):
            if (e.get(who) or {}).get("problem"):
                x = i + (-0.19 if who == OURS else 0.19)
                axes[1][2].text(
                    x,
                    0.03,
                    "rejected by\nthe API server",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    transform=axes[1][2].get_xaxis_transform(),
                )
    axes[0][0].legend(fontsize=8)
    axes[1][1].legend(fontsize=8)
    machine = results["machine"]
    fig.suptitle(
        f"dra-cdi-driver vs {labels.get(THEIRS, 'reference')}: {results['settings']['claims']:,} "
        f"claims per configuration (claims/call x concurrency), kube-apiserver "
        f"{results['versions']['kubernetes']}\n{machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, {results['generated']}",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
