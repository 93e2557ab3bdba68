"""The ``thread`` suite's ``cpu`` part: a CPU-bound pure-Python function in 2 threads.

``spin`` (:mod:`benchmarks._workloads`, integer arithmetic that holds the GIL, about
``--cpu-seconds`` per call, loop count calibrated at start) over ``--cpu-items`` items:
speedup over a serial ``map`` of tinypl ``.map(f).thread(2)`` (unordered and with
``.order()``), ``ThreadPoolExecutor(2).map`` and the thread pipelines of grain
(``MapDataset.map`` read by ``ReadOptions(num_threads=2)``) and SPDL
(``pipe(f, concurrency=2)`` on ``build(num_threads=2)``). On the standard build the GIL
keeps every peer near 1x; on a free-threaded build (``benchmarks/freethreaded.sh``) the
target is >= 1.9x for tinypl, ahead of every peer. The peers are built once, then
``--repeat`` rounds time one run of each, interleaved; every run starts and stops its
threads (grain's and SPDL's pipelines are built per run as well).

Besides best and median over all runs, each peer gets a *paired* speedup: the median over
rounds of the serial run's time in that round over the peer's time in the same round. On
a shared machine whose speed drifts between rounds (serial runs here read 0.47-1.2 s in
one series), a ratio within a round cancels most of the drift that best and median of
separately pooled runs keep.
"""

from __future__ import annotations

import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _workloads as w
from benchmarks import report as r
from benchmarks._timing import Timing
from benchmarks.harness import PeerResult, SuiteContext, describe_exception, new_tinypl
from benchmarks.report import Section, Table

WORKERS = 2
TARGET = 1.9
Runner = Callable[[], list[int]]


def _serial(f: Callable[[int], int], n: int) -> Runner:
    return lambda: list(map(f, range(n)))


def _tpe(f: Callable[[int], int], n: int) -> Runner:
    from concurrent.futures import ThreadPoolExecutor

    def run() -> list[int]:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(f, range(n)))

    return run


def _tinypl(f: Callable[[int], int], n: int, ordered: bool) -> Runner:
    pl = new_tinypl()
    pipe = pl.Pipe(range(n)).map(f).thread(WORKERS)
    pipe = pipe.order() if ordered else pipe
    return lambda: sorted(pipe) if not ordered else list(pipe)


def _grain(f: Callable[[int], int], n: int) -> Runner:
    import grain

    def run() -> list[int]:
        dataset = grain.MapDataset.range(n).map(f)
        options = grain.ReadOptions(num_threads=WORKERS, prefetch_buffer_size=2 * WORKERS)
        return list(dataset.to_iter_dataset(options))

    return run


def _spdl(f: Callable[[int], int], n: int) -> Runner:
    from spdl.pipeline import PipelineBuilder

    def run() -> list[int]:
        pipeline = (
            PipelineBuilder()
            .add_source(range(n))
            .pipe(f, concurrency=WORKERS, output_order="input")
            .add_sink(2 * WORKERS)
            .build(num_threads=WORKERS)
        )
        with pipeline.auto_stop():
            return list(pipeline)

    return run


def _peers(f: Callable[[int], int], n: int) -> dict[str, tuple[str, Callable[[], Runner]]]:
    return {
        "serial": ("serial map (1 thread)", lambda: _serial(f, n)),
        "tpe": ("ThreadPoolExecutor(2).map", lambda: _tpe(f, n)),
        "tinypl": ("tinypl .map(f).thread(2)", lambda: _tinypl(f, n, ordered=False)),
        "tinypl-order": ("tinypl .map(f).thread(2).order()", lambda: _tinypl(f, n, True)),
        "grain": ("grain ReadOptions(num_threads=2)", lambda: _grain(f, n)),
        "spdl": ("SPDL pipe(concurrency=2), 2 threads", lambda: _spdl(f, n)),
    }


def _interleaved(
    ctx: SuiteContext, runners: dict[str, Runner], expected: list[int], repeat: int
) -> dict[str, tuple[list[float], str | None]]:
    samples: dict[str, list[float]] = {key: [] for key in runners}
    errors: dict[str, str | None] = dict.fromkeys(runners)
    for key, run in runners.items():  # warm-up and check
        try:
            errors[key] = None if sorted(run()) == expected else "WRONG RESULT"
        except Exception as exc:
            errors[key] = describe_exception(exc)
    live = {key: run for key, run in runners.items() if errors[key] is None}
    for number in range(repeat):
        ctx.progress(f"cpu: round {number + 1}/{repeat}")
        keys = list(live)
        shift = number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            gc.collect()
            start = time.perf_counter()
            live[key]()
            samples[key].append(time.perf_counter() - start)
    return {key: (samples[key], errors[key]) for key in runners}


def paired(base: list[float], samples: list[float]) -> float | None:
    """The median over rounds of ``base[i] / samples[i]`` (both lists hold one run per
    round, in round order); ``None`` without a full pair.

    Examples:
        >>> paired([2.0, 4.0, 3.0], [1.0, 2.0, 3.0])
        2.0
    """
    pairs = [b / s for b, s in zip(base, samples, strict=False) if s > 0]
    if not pairs or len(base) != len(samples):
        return None
    return statistics.median(pairs)


def cpu_part(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    """Speedup over serial of every peer, interleaved rounds."""
    n: int = ctx.options.cpu_items
    loops = w.calibrate_spin(ctx.options.cpu_seconds)
    f = functools.partial(w.spin, loops=loops)
    expected = sorted(map(f, range(n)))
    runners: dict[str, Runner] = {}
    results: dict[str, PeerResult] = {}
    for key, (label, build) in _peers(f, n).items():
        results[key] = PeerResult(label=label, params={"n": n, "loops": loops})
        try:
            runners[key] = build()
        except Exception as exc:
            results[key].error = describe_exception(exc)
    for key, (samples, error) in _interleaved(ctx, runners, expected, repeat).items():
        if error is not None:
            results[key].error = error
        elif samples:
            results[key].timing = Timing(samples=samples)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    table = Table(
        title=f"spin x {n} items (~{ctx.options.cpu_seconds * 1e3:.1f} ms each, pure Python), "
        f"{WORKERS} threads; GIL {'enabled' if gil else 'DISABLED (free-threaded)'}",
        headers=[
            "key",
            "peer",
            "runs",
            "best s",
            "median s",
            "x serial (best)",
            "x serial (median)",
            "x serial (paired)",
            "status",
        ],
        left=frozenset({1}),
    )
    serial = results["serial"]
    rows = []
    for key, res in results.items():
        rel = {s: r.ratio(serial.value(s), res.value(s)) for s in ("best", "median")}
        rel["paired"] = None
        if serial.timing is not None and res.timing is not None:
            rel["paired"] = paired(serial.timing.samples, res.timing.samples)
        table.add_row(
            [
                key,
                res.label,
                *r.timing_cells(res, 3),
                r.fmt_ratio(rel["best"]),
                r.fmt_ratio(rel["median"]),
                r.fmt_ratio(rel["paired"]),
                res.status,
            ]
        )
        rows.append({**res.to_dict(), "key": key, "speedup": rel})
    table.notes.append("x serial: serial time / peer time (a speedup); rounds interleave peers")
    table.notes.append("paired: median over rounds of serial / peer within the round")
    summary = Section(
        title=f"Summary (target on a free-threaded build: >= {TARGET:g}x serial, "
        "ahead of every peer)"
    )
    speedups = {row["key"]: row["speedup"] for row in rows}
    for stat in ("best", "median", "paired"):
        ours = speedups["tinypl"][stat]
        others = [speedups[k][stat] for k in ("tpe", "grain", "spdl")]
        best_other = max((x for x in others if x is not None), default=None)
        ahead = None if ours is None or best_other is None else ours > best_other
        summary.lines.append(
            f"{stat:6}: tinypl {r.fmt_ratio(ours)} ({r.verdict_min(ours, TARGET)}); best peer "
            f"{r.fmt_ratio(best_other)}; ahead: {'-' if ahead is None else ahead}"
        )
    return [table, summary], {"items": n, "loops": loops, "gil": gil, "rows": rows}
