"""Figures of the ``process`` suite: per-run rates, first item, steady rate, tables.

Every peer's runs are logged by :class:`benchmarks.suites._process_peers.Case` (consumer
stats of the warm-up and of each timed run); the functions here turn them into cells.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any

from benchmarks.harness import PeerResult
from benchmarks.report import Table, fmt_float, fmt_ratio, ratio, timing_cells, verdict_min
from benchmarks.suites._process_peers import Case


def runs(res: PeerResult) -> list[tuple[float, dict[str, Any]]]:
    """(seconds, consumer stats) of every timed run (the warm-up is dropped)."""
    if not res.ok or res.timing is None:
        return []
    log = res.timing.extra.get("runs") or []
    samples = res.timing.samples
    timed = log[len(log) - len(samples) :] if len(log) >= len(samples) else []
    return list(zip(samples, timed, strict=True))


def rates(res: PeerResult, unit: float) -> list[float]:
    """Per-run throughput: ``items * unit / seconds`` (items actually delivered)."""
    return [stats["items"] * unit / seconds for seconds, stats in runs(res) if seconds > 0]


def capped_text(res: PeerResult, n: int) -> str:
    logged = runs(res)
    capped = [stats["items"] for _, stats in logged if stats["capped"]]
    if not capped:
        return ""
    return f"capped {len(capped)}/{len(logged)} runs ({min(capped):,}-{max(capped):,} of {n:,})"


def steady(res: PeerResult, unit: float) -> float | None:
    """Median rate between the first result and the last marked one (start-up and
    shutdown excluded)."""
    rates = [
        (stats["mark_items"] - 1) * unit / (stats["mark_s"] - stats["first_s"])
        for _, stats in runs(res)
        if stats.get("first_s") is not None
        and stats.get("mark_s") is not None
        and stats["mark_items"] > 1
        and stats["mark_s"] > stats["first_s"]
    ]
    return statistics.median(rates) if rates else None


def first_item(res: PeerResult) -> float | None:
    firsts = [stats["first_s"] for _, stats in runs(res) if stats.get("first_s") is not None]
    return statistics.median(firsts) if firsts else None


def status(res: PeerResult, n: int) -> str:
    capped = capped_text(res, n)
    return res.status if not capped else f"{res.status}; {capped}"


def loadavg() -> str:
    if not hasattr(os, "getloadavg"):
        return "?"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


HEADERS = ["peer", "start method", "runs", "best s", "median s"]


def row_base(case: Case, key: str) -> list[str]:
    res = case.results[key]
    return [res.label, case.start[key], *timing_cells(res, 3)]


def pick(values: tuple[float | None, float | None], stat: str) -> float | None:
    return values[0] if stat == "best" else values[1]


def summary(
    case: Case,
    figures: dict[str, tuple[float | None, float | None]],
    stat: str,
    target: float,
    fmt: Callable[[float | None], str],
) -> str:
    def show(key: str) -> str:
        return fmt(pick(figures[key], stat)) if key in figures else "-"

    fluent = pick(figures.get("fluent", (None, None)), stat)
    module = pick(figures.get("module", (None, None)), stat)
    others = {
        k: v
        for k, v in figures.items()
        if pick(v, stat) is not None
        and not k.startswith(("fluent", "module", "serial", "ref", "t010"))
    }
    best_other = max(others, key=lambda k: pick(others[k], stat) or 0.0, default=None)
    best_text = (
        "-"
        if best_other is None
        else f"{case.results[best_other].label} {fmt(pick(others[best_other], stat))}"
    )
    return (
        f"{case.name} ({stat}): tinypl fluent {show('fluent')} "
        f"({fmt_ratio(ratio(fluent, target))} of target, {verdict_min(fluent, target)}), "
        f"module-level {show('module')} ({fmt_ratio(ratio(module, target))}, "
        f"{verdict_min(module, target)}); tinypl 0.1.0 {show('t010')}; "
        f"best of the other peers: {best_text}"
    )


def figure_table(title: str, unit_name: str, stat: str, *, steady: bool) -> Table:
    """The table of one workload: timings, a figure (best, median), its target."""
    return Table(
        title=title,
        headers=[
            *HEADERS,
            f"{unit_name} (best)",
            f"{unit_name} (median)",
            f"x target ({stat})",
            "target",
            "first item s",
            *([f"steady {unit_name}"] if steady else []),
            "status",
        ],
        left=frozenset({1}),
    )


def row_data(case: Case, key: str, **figures: Any) -> dict[str, Any]:
    res = case.results[key]
    return {
        **res.to_dict(),
        "key": key,
        "start_method": case.start[key],
        **figures,
        "first_item_median_s": first_item(res),
    }


def fmt_rate(value: float | None) -> str:
    return fmt_float(value, 0)


def fmt_gbs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GB/s"


def throughput_table(
    case: Case,
    *,
    unit: float,
    unit_name: str,
    target: float,
    title: str,
) -> tuple[Table, dict[str, tuple[float | None, float | None]], list[dict[str, Any]]]:
    stat = case.ctx.stat
    table = figure_table(title, unit_name, stat, steady=True)
    figures: dict[str, tuple[float | None, float | None]] = {}
    rows: list[dict[str, Any]] = []
    for key, res in case.results.items():
        steady_rate = steady(res, unit)
        per_run = rates(res, unit)
        best = max(per_run) if per_run else None
        median = statistics.median(per_run) if per_run else None
        figures[key] = (best, median)
        value = pick((best, median), stat)
        is_peer = not key.startswith("ref")
        table.add_row(
            [
                *row_base(case, key),
                fmt_float(best, 2 if unit < 1 else 0),
                fmt_float(median, 2 if unit < 1 else 0),
                fmt_ratio(ratio(value, target)),
                verdict_min(value, target) if is_peer else "",
                fmt_float(first_item(res), 3),
                fmt_float(steady_rate, 2 if unit < 1 else 0),
                status(res, case.n),
            ]
        )
        rows.append(
            row_data(
                case,
                key,
                **{
                    f"{unit_name}_per_run": per_run,
                    f"{unit_name}_best": best,
                    f"{unit_name}_median": median,
                    f"steady_{unit_name}_median": steady_rate,
                    "capped": capped_text(res, case.n) or None,
                },
            )
        )
    return table, figures, rows
