"""Suite ``streams``: the stream operations of issue 11 against their peers.

(1) ``shuffle``: ``Pipe(range(N)).shuffle(10_000, seed=0)`` over 1,000,000 ints, per
item, against a plain-Python buffer shuffle and torchdata.nodes (which has no shuffle
buffer: a ``BaseNode`` buffer shuffle run by ``Loader`` stands in, see
``_stream_peers``); target: no slower than either. (2) ``mix``: ``Pipe.mix`` of 3 pipes
(weights 0.5/0.3/0.2, 1,000,000 items in all, ``stop="all"``) against torchdata.nodes'
``MultiNodeWeightedSampler`` (``ALL_DATASETS_EXHAUSTED``); target: no slower. (3)
``take``: ``Pipe(count()).map(f).process(2).take(10)``: seconds from the tenth item until
every worker process has exited; target < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from benchmarks import report as r
from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Run, SuiteContext
from benchmarks.report import Section, SuiteReport, Table
from benchmarks.suites import _stream_peers as p
from benchmarks.suites.base import Part, Suite, add_part_option, run_parts

SPEED_TARGET = 1.0
TAKE_TARGET_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    add_part_option(parser, ["shuffle", "mix", "take"])
    parser.add_argument(
        "--items",
        type=int,
        default=p.SHUFFLE_ITEMS,
        help="items of the shuffle and mix cases (default: %(default)s)",
    )
    parser.add_argument(
        "--buffer", type=int, default=p.SHUFFLE_BUFFER, help="shuffle buffer (default: %(default)s)"
    )


def _per_item_table(
    title: str, results: dict[str, PeerResult], n: int, stat: str, references: list[str]
) -> tuple[Table, list[dict[str, Any]]]:
    table = Table(
        title=f"{title} (derived figures from the {stat} run)",
        headers=[
            "peer",
            "runs",
            "best ms",
            "median ms",
            "ns/item",
            *(f"x {key}" for key in references),
            "status",
        ],
    )
    rows: list[dict[str, Any]] = []
    for key, res in results.items():
        value = res.value(stat)
        per_item = None if value is None else value / n * 1e9
        ratios = {ref: r.ratio(value, results[ref].value(stat)) for ref in references}
        table.add_row(
            [
                res.label,
                *r.timing_cells(res, 1, 1e3),
                r.fmt_float(per_item),
                *(r.fmt_ratio(ratios[ref]) for ref in references),
                res.status,
            ]
        )
        rows.append({**res.to_dict(), "key": key, "ns_per_item": per_item, "ratios": ratios})
    return table, rows


def _speed_ratios(results: dict[str, PeerResult], stat: str, references: list[str]) -> Section:
    lines = []
    for ref in references:
        rel = r.ratio(results["tinypl"].value(stat), results[ref].value(stat))
        lines.append(
            f"tinypl / {results[ref].label:<44} = {r.fmt_ratio(rel)}"
            f"   (target {r.target_max(rel, SPEED_TARGET)})"
        )
    return Section(title=f"Ratios ({stat}; < 1 means tinypl is faster)", lines=lines)


def _shuffle(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    n, size = ctx.options.items, ctx.options.buffer
    torchdata_label = (
        "torchdata.nodes Shuffler"
        if p.torchdata_has_shuffler()
        else "torchdata.nodes BaseNode buffer shuffle"
    )
    results = ctx.measure_peers(
        {
            "python": ("plain-Python buffer shuffle", lambda: p.shuffle_python(n, size)),
            "torchdata": (torchdata_label, lambda: p.shuffle_torchdata(n, size)),
            "tinypl": ("tinypl Pipe.shuffle", lambda: p.shuffle_tinypl(n, size)),
        },
        params={"n": n, "buffer_size": size},
        repeat=repeat,
    )
    references = ["python", "torchdata"]
    table, rows = _per_item_table(
        f"shuffle({size:,}) over {n:,} ints, seed=0", results, n, ctx.stat, references
    )
    if not p.torchdata_has_shuffler():
        table.notes.append(
            "torchdata.nodes has no shuffle buffer (0.11.0); its row is a BaseNode subclass "
            "(reset/next/get_state, swap-and-pop buffer) over IterableWrapper, run by Loader"
        )
    table.notes.append("every result is checked: a permutation of the input, not the identity")
    data = {"items": n, "buffer_size": size, "stat": ctx.stat, "rows": rows}
    return [table, _speed_ratios(results, ctx.stat, references)], data


def _mix(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    n, weights = ctx.options.items, p.MIX_WEIGHTS
    results = ctx.measure_peers(
        {
            "torchdata": (
                "torchdata.nodes MultiNodeWeightedSampler",
                lambda: p.mix_torchdata(n, weights),
            ),
            "tinypl": ("tinypl Pipe.mix", lambda: p.mix_tinypl(n, weights)),
        },
        params={"n": n, "weights": list(weights)},
        repeat=repeat,
    )
    sizes = p.mix_sizes(n, weights)
    table, rows = _per_item_table(
        f"mix of 3 inputs ({', '.join(f'{s:,}' for s in sizes)} items, weights "
        f"{'/'.join(map(str, weights))}) until all are exhausted",
        results,
        n,
        ctx.stat,
        ["torchdata"],
    )
    table.notes.append(
        "tinypl: Pipe.mix(pipes, weights, seed=0, stop='all'); torchdata: "
        "Loader(MultiNodeWeightedSampler(IterableWrappers, ALL_DATASETS_EXHAUSTED, seed=0))"
    )
    table.notes.append("every result is checked: all items, each input's order kept, interleaved")
    data = {"items": n, "sizes": sizes, "stat": ctx.stat, "rows": rows}
    return [table, _speed_ratios(results, ctx.stat, ["torchdata"])], data


def _take(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    n, workers = p.TAKE_ITEMS, p.TAKE_WORKERS
    figures: list[list[tuple[float, float]]] = []  # (from the call, from the return), per build

    def build() -> tuple[Run, Check]:
        run, check, seconds = p.take_tinypl(n, workers)
        figures.append(seconds)
        return run, check

    result = ctx.run_in_process(
        "tinypl take(10)", build, repeat=repeat, params={"n": n, "workers": workers}
    )
    runs = figures[0][1:] if figures and result.ok else []  # without the warm-up
    table = Table(
        title=f"Pipe(count()).map(f).process({workers}).take({n}): until every worker process "
        "has exited",
        headers=["measured from", "runs", "best ms", "median ms", "worst ms", "target", "status"],
        left=frozenset({5}),
    )
    for index, start in enumerate((f"the call for item {n}", f"item {n} returned")):
        samples = [run[index] for run in runs]
        worst = max(samples) if samples else None
        cells = (min(samples), statistics.median(samples), worst) if samples else (None,) * 3
        target = f"< {TAKE_TARGET_SECONDS:g} s"
        verdict = "n/a" if worst is None else "met" if worst < TAKE_TARGET_SECONDS else "MISSED"
        table.add_row(
            [
                start,
                str(len(samples)) if samples else "-",
                *(r.fmt_float(None if v is None else v * 1e3) for v in cells),
                f"{target}: {verdict}",
                result.status,
            ]
        )
    table.notes += [
        "workers = the processes below the benchmark's (but for multiprocessing's forkserver "
        f"and resource tracker) just before item {n}; polled every 0.5 ms; a process has "
        "exited once it is a zombie or gone",
        f"'the call for item {n}' includes the wait for that item and any stop that take() "
        "does before returning it; the target is checked against the worst run",
        f"each run also checks that the stream ends after item {n}",
    ]
    data = {"items": n, "workers": workers, "seconds": runs, **result.to_dict()}
    return [table], data


PARTS: list[Part] = [
    ("shuffle", _shuffle, 5),
    ("mix", _mix, 5),
    ("take", _take, 5),
]


def run(ctx: SuiteContext) -> SuiteReport:
    """Run the selected parts and build the report."""
    report = SuiteReport(suite="streams", title="streams: shuffle, mix and take (issue 11)")
    run_parts(ctx, report, PARTS)
    return report


SUITE = Suite(
    "streams",
    "shuffle / mix against torchdata.nodes and plain Python; take(10) worker stop time",
    5,
    run,
    add_arguments,
)
