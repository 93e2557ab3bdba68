"""Suite ``executor``: tinypl's executor stage on existing engines, side by side.

Two workloads, 2 workers each:

1. ``cpu``: the CPU-bound function of the ``process`` suite (``spin``, calibrated to
   ~3 ms per call) over 400 items: speedup over a serial run for ``.process(2)``,
   ``.executor(ProcessPoolExecutor(2))``, ``.executor(client)`` on a Dask
   ``LocalCluster`` of 2 single-threaded worker processes, and Dask's own ``client.map``
   + ``as_completed`` on the same function. Target: tinypl on Dask within 5% of
   ``client.map`` (time ratio <= 1.05).
2. ``trivial``: ``x + 1`` over 100,000 items on the same Dask cluster: items/s of
   tinypl's chunks against ``client.map`` with one task per item (measured on
   ``--client-map-items`` items, 5,000 by default: one task per item costs Dask about a
   millisecond on this machine). Target >= 20x.

Protocol: the engines (the Dask cluster, the process pool) are started once, before the
measurements, and warmed up: a user's cluster runs before and after the pipeline. A
``.process(2)`` run starts and stops its own workers (that is what the stage does), so
its figures include that. One warm-up run, then best and median of the timed runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
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
    timing_cells,
    verdict_min,
)
from benchmarks.suites.base import Suite, add_part_option

DASK_RATIO_TARGET = 1.05
TRIVIAL_TARGET = 20.0
CPU_REPEAT = 4
TRIVIAL_REPEAT = 3
CLIENT_MAP_ITEMS = 5_000
WORKERS = 2

Fn = Callable[[Any], Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    add_part_option(parser, ["cpu", "trivial"])
    parser.add_argument("--cpu-items", type=int, default=w.PROCESS_CPU_ITEMS)
    parser.add_argument("--cpu-ms", type=float, default=w.PROCESS_CPU_SECONDS * 1e3)
    parser.add_argument("--cpu-loops", type=int, default=None, help="skip the calibration")
    parser.add_argument("--trivial-items", type=int, default=w.PROCESS_TRIVIAL_ITEMS)
    parser.add_argument(
        "--client-map-items",
        type=int,
        default=CLIENT_MAP_ITEMS,
        help="items of the client.map run of the trivial workload (default: %(default)s)",
    )


@contextmanager
def _engines() -> Iterator[dict[str, Any]]:
    """The Dask client (or the reason it is missing) and a forkserver process pool."""
    engines: dict[str, Any] = {}
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver"))
    engines["pool"] = pool
    cluster = client = None
    try:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = engines["client"] = Client(cluster)
    except ImportError as exc:
        engines["dask_missing"] = f"n/a: {exc}"
    try:
        for future in [pool.submit(w.inc, i) for i in range(8)]:
            future.result()
        if client is not None:
            client.gather(client.map(w.inc, range(8), pure=False))
        yield engines
    finally:
        pool.shutdown(wait=True)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _summing(items: Any) -> tuple[int, Any]:
    count, total = 0, 0
    for x in items:
        count += 1
        total += x
    return count, total


def _checksum(n: int, fn: Fn) -> Check:
    expected = sum(map(fn, range(n)))

    def check(result: Any) -> str | None:
        count, total = result
        if count != n:
            return f"{count} items (expected {n})"
        if total != expected:
            return f"wrong checksum {total} (expected {expected})"
        return None

    return check


def _peers(engines: dict[str, Any], fn: Fn, n: int) -> dict[str, tuple[str, Callable[[], Run]]]:
    pl = new_tinypl()
    client = engines.get("client")
    pool = engines["pool"]

    def dask_map() -> Any:
        from distributed import as_completed

        futures = client.map(fn, range(n), pure=False)
        yield from (result for _, result in as_completed(futures, with_results=True))

    peers: dict[str, tuple[str, Callable[[], Run]]] = {
        "serial": ("serial map (this process)", lambda: lambda: _summing(map(fn, range(n)))),
        "process": (
            "tinypl .process(2) (starts its workers)",
            lambda: lambda: _summing(pl.Pipe(range(n)).map(fn).process(WORKERS)),
        ),
        "pool": (
            "tinypl .executor(ProcessPoolExecutor(2))",
            lambda: lambda: _summing(pl.Pipe(range(n)).map(fn).executor(pool)),
        ),
    }
    if client is not None:
        peers["dask"] = (
            "tinypl .executor(dask client)",
            lambda: lambda: _summing(pl.Pipe(range(n)).map(fn).executor(client)),
        )
        peers["client.map"] = (
            "dask client.map + as_completed",
            lambda: lambda: _summing(dask_map()),
        )
    return peers


def _measure(
    ctx: SuiteContext,
    peers: dict[str, tuple[str, Callable[[], Run]]],
    check: Check,
    repeat: int,
    params: dict[str, Any],
) -> dict[str, PeerResult]:
    results = {}
    for key, (label, make) in peers.items():

        def build(make: Callable[[], Run] = make) -> tuple[Run, Check]:
            return make(), check

        results[key] = ctx.run_in_process(label, build, repeat=repeat, params=params)
    return results


def _cpu(
    ctx: SuiteContext, engines: dict[str, Any], repeat: int
) -> tuple[list[Any], dict[str, Any]]:
    opts = ctx.options
    loops = opts.cpu_loops
    if loops is None:
        ctx.progress(f"calibrating spin() to {opts.cpu_ms:g} ms per call")
        loops = w.calibrate_spin(opts.cpu_ms / 1e3)
    fn = w.process_function("spin", loops)
    one_call = min(w.call_seconds(fn, 0) for _ in range(5))
    n = opts.cpu_items
    results = _measure(ctx, _peers(engines, fn, n), _checksum(n, fn), repeat, {"n": n})
    serial = results["serial"].value(ctx.stat)
    table = Table(
        title=f"cpu: spin() ~{one_call * 1e3:.2f} ms/call x {n} items, {WORKERS} workers",
        headers=["peer", "runs", "best s", "median s", "speedup", "status"],
    )
    for res in results.values():
        speedup = ratio(serial, res.value(ctx.stat))
        table.add_row([res.label, *timing_cells(res, 3), fmt_ratio(speedup), res.status])
    dask_ratio = _ratio(results, "dask", "client.map", ctx.stat)
    table.notes += [
        f"speedup = serial {ctx.stat} / peer {ctx.stat}; ideal {WORKERS}x",
        "Dask: LocalCluster(n_workers=2, threads_per_worker=1, processes=True) on 127.0.0.1,"
        " started once before the measurements; client.map with pure=False",
    ]
    if "dask_missing" in engines:
        table.notes.append(engines["dask_missing"])
    lines = [
        f"tinypl on Dask / client.map (time, {ctx.stat}): {fmt_ratio(dask_ratio)}"
        f" (target <= {DASK_RATIO_TARGET:g}x: {_verdict(dask_ratio, DASK_RATIO_TARGET)})"
    ]
    data = {"loops": loops, "call_ms": one_call * 1e3, "items": n, **_data(results)}
    return [table, Section(title="Summary (cpu)", lines=lines)], data


def _trivial(
    ctx: SuiteContext, engines: dict[str, Any], repeat: int
) -> tuple[list[Any], dict[str, Any]]:
    client = engines.get("client")
    if client is None:
        return [Section("trivial", [engines["dask_missing"]])], {}
    opts = ctx.options
    n, m = opts.trivial_items, opts.client_map_items
    pl = new_tinypl()
    def tinypl_run() -> Run:
        return lambda: _summing(pl.Pipe(range(n)).map(w.inc).executor(client))

    peer = {"dask": ("tinypl .executor(dask client)", tinypl_run)}
    ours = _measure(ctx, peer, _checksum(n, w.inc), repeat, {"n": n})
    peer = {"client.map": _peers(engines, w.inc, m)["client.map"]}
    theirs = _measure(ctx, peer, _checksum(m, w.inc), repeat, {"n": m})
    table = Table(
        title="trivial: x + 1 on Dask (2 workers), items/s",
        headers=["peer", "items", "runs", "best s", "median s", "items/s", "status"],
    )
    rates = {}
    for key, res, items in (("dask", ours["dask"], n), ("client.map", theirs["client.map"], m)):
        seconds = res.value(ctx.stat)
        rates[key] = ratio(items, seconds)
        rate = fmt_float(rates[key], 0)
        table.add_row([res.label, f"{items:,}", *timing_cells(res, 3), rate, res.status])
    speedup = ratio(rates["dask"], rates["client.map"])
    lines = [
        f"tinypl chunks / client.map per item (items/s): {fmt_ratio(speedup)}"
        f" (target >= {TRIVIAL_TARGET:g}x: {verdict_min(speedup, TRIVIAL_TARGET)})"
    ]
    data = {"rates": rates, **_data({**ours, **theirs})}
    return [table, Section(title="Summary (trivial)", lines=lines)], data


def _ratio(results: dict[str, PeerResult], a: str, b: str, stat: str) -> float | None:
    if a not in results or b not in results:
        return None
    return ratio(results[a].value(stat), results[b].value(stat))


def _verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= limit else "MISSED"


def _data(results: dict[str, PeerResult]) -> dict[str, Any]:
    return {"peers": {key: res.to_dict() for key, res in results.items()}}


def run(ctx: SuiteContext) -> SuiteReport:
    """Start the engines, measure the parts ``--part`` selects, build the report."""
    report = SuiteReport(suite="executor", title="executor: tinypl on Dask and pools")
    explicit = ctx.repeat if ctx.repeat_explicit else None
    with _engines() as engines:
        parts = (("cpu", _cpu, CPU_REPEAT), ("trivial", _trivial, TRIVIAL_REPEAT))
        for name, part, default in parts:
            if ctx.options.part in ("all", name):
                blocks, data = part(ctx, engines, explicit or default)
                report.blocks += blocks
                report.data[name] = data
    return report


SUITE = Suite(
    name="executor",
    description="executor stage on a process pool and a Dask LocalCluster vs client.map",
    default_repeat=CPU_REPEAT,
    add_arguments=add_arguments,
    run=run,
)
