"""Suite ``sync``: single-threaded map -> filter -> map chain over 1,000,000 ints.

Peers: (a) builtins ``map``/``filter``, (b) ``toolz.pipe`` with curried map/filter,
(c) new tinypl fluent ``Pipe``, (d) new tinypl module-level functions, (e) tinypl 0.1.0
module-level functions (subprocess).  Targets (informational): fluent <= 1.1x builtins,
module-level <= 2x builtins.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import _workloads as w
from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Run, SuiteContext, new_tinypl
from benchmarks.report import (
    Section,
    SuiteReport,
    Table,
    fmt_float,
    fmt_ratio,
    ratio,
    target_max,
)
from benchmarks.suites.base import Suite

FLUENT_TARGET = 1.1
MODULE_LEVEL_TARGET = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument(
        "--items", type=int, default=w.SYNC_ITEMS, help="input size (default: %(default)s)"
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


def run(ctx: SuiteContext) -> SuiteReport:
    """Measure all peers and build the report."""
    n: int = ctx.options.items
    stat = ctx.stat
    params = {"n": n}
    results: dict[str, PeerResult] = {
        "builtins": ctx.run_in_process("builtins map/filter", lambda: _builtins(n), params=params),
        "toolz": ctx.run_in_process("toolz.pipe (curried)", lambda: _toolz(n), params=params),
        "fluent": ctx.run_in_process(
            "tinypl Pipe (fluent)", lambda: _tinypl_fluent(n), params=params
        ),
        "module": ctx.run_in_process(
            "tinypl module-level", lambda: _tinypl_module_level(n), params=params
        ),
        "t010": ctx.run_legacy("tinypl 0.1.0 module-level", "sync.module_level", params),
    }
    targets = {"fluent": FLUENT_TARGET, "module": MODULE_LEVEL_TARGET}
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
    rows_data: list[dict[str, Any]] = []
    for key, res in results.items():
        value = res.value(stat)
        per_item = None if value is None else value / n * 1e9
        rel = ratio(value, base)
        target = target_max(rel, targets[key]) if key in targets else ""
        timing = res.timing
        table.add_row(
            [
                res.label,
                res.runs_text,
                fmt_float(None if timing is None else timing.best * 1e3),
                fmt_float(None if timing is None else timing.median * 1e3),
                fmt_float(per_item),
                fmt_float(None if per_item is None else per_item / w.SYNC_STAGES),
                fmt_ratio(rel),
                target,
                res.status,
            ]
        )
        rows_data.append(
            {
                **res.to_dict(),
                "key": key,
                "ns_per_item": per_item,
                "ns_per_item_per_stage": None if per_item is None else per_item / w.SYNC_STAGES,
                "ratio_to_builtins": rel,
                "target_max_ratio": targets.get(key),
            }
        )
    table.notes.append(
        f"ns/item = time / {n:,} input items; per stage = ns/item / {w.SYNC_STAGES} "
        f"(the last map sees only the {len(range(n)) - len(range(0, n, 3)):,} items "
        "kept by the filter)"
    )
    table.notes.append(
        "tinypl 0.1.0 runs in its own venv (subprocess, same CPython build); "
        "all other peers run in this process"
    )

    def rel_of(a: str, b: str) -> float | None:
        return ratio(results[a].value(stat), results[b].value(stat))

    ratios = Section(title=f"Ratios ({stat}; < 1 means faster than the reference)")
    ratios.lines = [
        f"toolz               / builtins      = {fmt_ratio(rel_of('toolz', 'builtins'))}",
        f"tinypl fluent       / builtins      = {fmt_ratio(rel_of('fluent', 'builtins'))}"
        f"   (target {target_max(rel_of('fluent', 'builtins'), FLUENT_TARGET)})",
        f"tinypl module-level / builtins      = {fmt_ratio(rel_of('module', 'builtins'))}"
        f"   (target {target_max(rel_of('module', 'builtins'), MODULE_LEVEL_TARGET)})",
        f"tinypl 0.1.0        / builtins      = {fmt_ratio(rel_of('t010', 'builtins'))}",
        f"tinypl fluent       / module-level  = {fmt_ratio(rel_of('fluent', 'module'))}",
        f"tinypl module-level / tinypl 0.1.0  = {fmt_ratio(rel_of('module', 't010'))}",
        f"tinypl fluent       / tinypl 0.1.0  = {fmt_ratio(rel_of('fluent', 't010'))}",
    ]
    return SuiteReport(
        suite="sync",
        title="sync: single-threaded 3-stage chain",
        blocks=[table, ratios],
        data={"items": n, "stages": w.SYNC_STAGES, "stat": stat, "rows": rows_data},
    )


SUITE = Suite(
    name="sync",
    description="map -> filter -> map over 1M ints: builtins, toolz, tinypl (new, 0.1.0)",
    default_repeat=5,
    add_arguments=add_arguments,
    run=run,
)
