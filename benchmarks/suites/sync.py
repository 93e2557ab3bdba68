"""Suite ``sync``: single-threaded map -> filter -> map chain over 1,000,000 ints.

Peers: (a) builtins ``map``/``filter``, (b) ``toolz.pipe`` with curried map/filter,
(c) new tinypl fluent ``Pipe``, (d) the same with ``stage.stats()`` taken at the start and
at the end (issue 12: counting and timing switched on), (e) new tinypl module-level
functions, (f) tinypl 0.1.0 module-level functions (subprocess), and (g) an SPDL pipeline
of the same chain (it collects stats always; it runs each call through its event loop,
so it gets ``--spdl-items`` items and is compared per item).  Targets (informational):
fluent <= 1.1x builtins, with stats taken <= 1.3x, module-level <= 2x builtins.
``--isolate`` measures (a)-(c) and (e) in fresh interpreters
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
STATS_TARGET = 1.3
MODULE_LEVEL_TARGET = 2.0
TARGETS = {"fluent": FLUENT_TARGET, "stats": STATS_TARGET, "module": MODULE_LEVEL_TARGET}
SPDL_ITEMS = 2_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument(
        "--items", type=int, default=w.SYNC_ITEMS, help="input size (default: %(default)s)"
    )
    parser.add_argument(
        "--spdl-items",
        type=int,
        default=SPDL_ITEMS,
        help="input size of the SPDL pipeline (default: %(default)s)",
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


def _tinypl_stats_taken(n: int) -> tuple[Run, Check]:
    pl = new_tinypl()

    def run() -> list[int]:
        stage = iter(pl.Pipe(range(n)).map(w.double).filter(w.not_multiple_of_3).map(w.inc))
        stage.stats()  # switches the run to its timed form
        out = list(stage)
        stage.stats()
        return out

    return run, w.make_sync_check(n)


def _spdl_keep(x: int) -> Any:
    if w.not_multiple_of_3(x):
        yield x


def _spdl(n: int) -> tuple[Run, Check]:
    from spdl.pipeline import PipelineBuilder  # type: ignore[import-not-found,unused-ignore]

    def run() -> list[int]:
        builder = PipelineBuilder().add_source(range(n)).pipe(w.double).pipe(_spdl_keep)
        pipeline = builder.pipe(w.inc).add_sink(1000).build(num_threads=1)
        with pipeline.auto_stop():
            return list(pipeline)

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
            "stats": ("tinypl with stats taken", lambda: _tinypl_stats_taken(n)),
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
        # --isolate leaves out the stats-taken row (it measures the plain peers only).
        if a not in results or b not in results:
            return None
        return r.ratio(results[a].value(stat), results[b].value(stat))

    fluent, module = rel_of("fluent", "builtins"), rel_of("module", "builtins")
    stats = rel_of("stats", "builtins")
    return Section(
        title=f"Ratios ({stat}; < 1 means faster than the reference)",
        lines=[
            f"tinypl stats taken  / builtins      = {r.fmt_ratio(stats)}"
            f"   (target {r.target_max(stats, STATS_TARGET)})",
            f"tinypl stats taken  / fluent        = {r.fmt_ratio(rel_of('stats', 'fluent'))}",
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


def _spdl_section(
    ctx: SuiteContext, results: dict[str, PeerResult], n: int
) -> tuple[Section, dict[str, Any]]:
    """SPDL on ``--spdl-items`` items, compared per item with the 1M-item runs."""
    small: int = ctx.options.spdl_items
    spdl = ctx.run_in_process(
        "SPDL PipelineBuilder (same chain)", lambda: _spdl(small), repeat=3, params={"n": small}
    )
    value = spdl.value(ctx.stat)
    per_item = None if value is None else value / small * 1e9
    lines = [f"SPDL pipeline: {r.fmt_float(per_item)} ns/item over {small:,} items ({spdl.status})"]
    for key in ("builtins", "fluent", "stats"):
        if key not in results:
            continue
        ours = results[key].value(ctx.stat)
        mine = None if ours is None else ours / n * 1e9
        lines.append(
            f"SPDL / {results[key].label:<24} per item = {r.fmt_ratio(r.ratio(per_item, mine))}"
        )
    section = Section(title=f"SPDL per item ({ctx.stat})", lines=lines)
    return section, {**spdl.to_dict(), "items": small, "ns_per_item": per_item}


def run(ctx: SuiteContext) -> SuiteReport:
    """Measure all peers and build the report."""
    n: int = ctx.options.items
    results = _measure(ctx, n)
    table, rows = _table(results, n, ctx.stat)
    spdl, spdl_data = _spdl_section(ctx, results, n)
    return SuiteReport(
        suite="sync",
        title="sync: single-threaded 3-stage chain",
        blocks=[table, _ratios(results, ctx.stat), spdl],
        data={"items": n, "stages": w.SYNC_STAGES, "stat": ctx.stat, "rows": rows,
              "spdl": spdl_data},
    )  # fmt: skip


SUITE = Suite(
    "sync",
    "map -> filter -> map over 1M ints: builtins, toolz, tinypl (new, 0.1.0)",
    5,
    run,
    add_arguments,
)
