"""Suite ``sync``: single-threaded map -> filter -> map chain over 1,000,000 ints.

Peers: (a) builtins ``map``/``filter``, (b) ``toolz.pipe`` with curried map/filter,
(c) new tinypl fluent ``Pipe``, (d) new tinypl module-level functions, (e) tinypl 0.1.0
module-level functions (subprocess).  Targets (informational): fluent <= 1.1x builtins,
module-level <= 2x builtins.  ``--isolate`` measures (a)-(d) in fresh interpreters
(:mod:`benchmarks.suites._sync_isolated`).
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import _workloads as w
from benchmarks import report as r
from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Run, SuiteContext, new_tinypl
from benchmarks.report import Section, SuiteReport, Table
from benchmarks.suites._sync_isolated import measure_isolated
from benchmarks.suites.base import Suite

FLUENT_TARGET = 1.1
MODULE_LEVEL_TARGET = 2.0
TARGETS = {"fluent": FLUENT_TARGET, "module": MODULE_LEVEL_TARGET}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument(
        "--items", type=int, default=w.SYNC_ITEMS, help="input size (default: %(default)s)"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="every peer in fresh interpreters, --rounds each, interleaved "
        "(--repeat timed runs per process)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="--isolate: processes per peer (default: 5)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="--isolate: time runs by the wall clock or the thread's CPU time",
    )


def _builtins(n: int) -> tuple[Run, Check]:
    def run() -> list[int]:
        return list(map(w.inc, filter(w.not_multiple_of_3, map(w.double, range(n)))))

    return run, w.make_sync_check(n)


def _toolz(n: int) -> tuple[Run, Check]:
    import toolz
    from toolz import curried

    def run() -> list[int]:
        return list(
            toolz.pipe(
                range(n),
                curried.map(w.double),
                curried.filter(w.not_multiple_of_3),
                curried.map(w.inc),
            )
        )

    return run, w.make_sync_check(n)


def _tinypl_fluent(n: int) -> tuple[Run, Check]:
    pl = new_tinypl()

    def run() -> list[int]:
        return list(pl.Pipe(range(n)).map(w.double).filter(w.not_multiple_of_3).map(w.inc))

    return run, w.make_sync_check(n)


def _tinypl_module_level(n: int) -> tuple[Run, Check]:
    return w.tinypl_sync_module_level(new_tinypl(), n), w.make_sync_check(n)


LABELS = {
    "builtins": "builtins map/filter",
    "toolz": "toolz.pipe (curried)",
    "fluent": "tinypl Pipe (fluent)",
    "module": "tinypl module-level",
    "t010": "tinypl 0.1.0 module-level",
}


def _measure(ctx: SuiteContext, n: int) -> dict[str, PeerResult]:
    legacy = {"t010": (LABELS["t010"], "sync.module_level")}
    if ctx.options.isolate:
        results = measure_isolated(ctx, n, LABELS)
        return {**results, **ctx.measure_peers(legacy, params={"n": n})}
    return ctx.measure_peers(
        {
            "builtins": (LABELS["builtins"], lambda: _builtins(n)),
            "toolz": (LABELS["toolz"], lambda: _toolz(n)),
            "fluent": (LABELS["fluent"], lambda: _tinypl_fluent(n)),
            "module": (LABELS["module"], lambda: _tinypl_module_level(n)),
            **legacy,
        },
        params={"n": n},
    )


def _table(results: dict[str, PeerResult], n: int, stat: str) -> tuple[Table, list[dict[str, Any]]]:
    base = results["builtins"].value(stat)
    table = Table(
        title=f"map(x*2) -> filter(x%3) -> map(x+1) over {n:,} ints "
        f"(derived figures from the {stat} run)",
        headers=[
            "peer",
            "runs",
            "best ms",
            "median ms",
            "ns/item",
            "ns/item/stage",
            "x builtins",
            "target",
            "status",
        ],
        left=frozenset({7}),
    )
    rows: list[dict[str, Any]] = []
    for key, res in results.items():
        value = res.value(stat)
        per_item = None if value is None else value / n * 1e9
        per_stage = None if per_item is None else per_item / w.SYNC_STAGES
        rel = r.ratio(value, base)
        target = r.target_max(rel, TARGETS[key]) if key in TARGETS else ""
        table.add_row(
            [
                res.label,
                *r.timing_cells(res, 1, 1e3),
                r.fmt_float(per_item),
                r.fmt_float(per_stage),
                r.fmt_ratio(rel),
                target,
                res.status,
            ]
        )
        rows.append(
            {
                **res.to_dict(),
                "key": key,
                "ns_per_item": per_item,
                "ns_per_item_per_stage": per_stage,
                "ratio_to_builtins": rel,
                "target_max_ratio": TARGETS.get(key),
            }
        )
    table.notes += [
        f"ns/item = time / {n:,} input items; per stage = ns/item / {w.SYNC_STAGES} "
        f"(the last map sees only the {len(range(n)) - len(range(0, n, 3)):,} items "
        "kept by the filter)",
        "tinypl 0.1.0 runs in its own venv (subprocess, same CPython build); "
        "all other peers run in this process",
    ]
    return table, rows


def _ratios(results: dict[str, PeerResult], stat: str) -> Section:
    def rel_of(a: str, b: str) -> float | None:
        return r.ratio(results[a].value(stat), results[b].value(stat))

    fluent, module = rel_of("fluent", "builtins"), rel_of("module", "builtins")
    return Section(
        title=f"Ratios ({stat}; < 1 means faster than the reference)",
        lines=[
            f"toolz               / builtins      = {r.fmt_ratio(rel_of('toolz', 'builtins'))}",
            f"tinypl fluent       / builtins      = {r.fmt_ratio(fluent)}"
            f"   (target {r.target_max(fluent, FLUENT_TARGET)})",
            f"tinypl module-level / builtins      = {r.fmt_ratio(module)}"
            f"   (target {r.target_max(module, MODULE_LEVEL_TARGET)})",
            f"tinypl 0.1.0        / builtins      = {r.fmt_ratio(rel_of('t010', 'builtins'))}",
            f"tinypl fluent       / module-level  = {r.fmt_ratio(rel_of('fluent', 'module'))}",
            f"tinypl module-level / tinypl 0.1.0  = {r.fmt_ratio(rel_of('module', 't010'))}",
            f"tinypl fluent       / tinypl 0.1.0  = {r.fmt_ratio(rel_of('fluent', 't010'))}",
        ],
    )


def run(ctx: SuiteContext) -> SuiteReport:
    """Measure all peers and build the report."""
    n: int = ctx.options.items
    results = _measure(ctx, n)
    table, rows = _table(results, n, ctx.stat)
    return SuiteReport(
        suite="sync",
        title="sync: single-threaded 3-stage chain",
        blocks=[table, _ratios(results, ctx.stat)],
        data={"items": n, "stages": w.SYNC_STAGES, "stat": ctx.stat, "rows": rows},
    )


SUITE = Suite(
    "sync",
    "map -> filter -> map over 1M ints: builtins, toolz, tinypl (new, 0.1.0)",
    5,
    run,
    add_arguments,
)
