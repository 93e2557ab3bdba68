"""Suite ``process``: process stages side by side with multiprocessing peers.

Three workloads, all with 2 worker processes by default:

1. ``cpu``: a CPU-bound pure-Python function (integer arithmetic, loop count calibrated
   at start to ~3 ms per call), 400 items: speedup over the same function run serially
   in this process, measured in the same invocation.  Target >= 1.9x.
2. ``trivial``: ``x + 1`` over 100,000 items: items/s.  Target >= 100,000 items/s.
3. ``arrays``: each worker returns ``np.full(1_000_000, float(i))`` (8 MB), 200 items;
   the consumer reads one float64 per 4 KiB page (``a[::512].sum()``): GB/s of array
   data delivered.  Target >= 3 GB/s.  Single-process copy figures are printed as
   references.
   Then the same workload in fresh interpreters (``_process_first``): the first run of
   a process and a warm second run, speedup against that process's serial run (target
   >= 1.8x, issue 17); ``--first-repeat 0`` skips it.
4. ``startup``: import time and time to the first item, from fresh interpreters (see
   :mod:`benchmarks.suites.startup`).

Peers: ``multiprocessing.Pool.imap``, ``ProcessPoolExecutor.map``, mpire
``WorkerPool.imap``, ``pypeln.process.map``, torch ``DataLoader`` (map-style dataset,
``batch_size=None``), tinypl 0.1.0 ``pl.process.map`` (subprocess; for arrays also with
its ``SharedMemoryRingBuffer`` as in its README) and the new tinypl, fluent
``Pipe(range(n)).map(fn).process(2)`` and module-level ``pl.process.map``.  Every peer
runs with its library's defaults (start method, chunk size, queue sizes).

Protocol: pools and pipelines are created per run (every figure includes worker
start-up and shutdown), after one warm-up run; best and median of the timed runs.  All
consumers are the same functions (``_workloads.consume_*``); a run stops consuming after
``--run-cap`` seconds (capped cells are marked, their rate counts the items delivered).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _workloads as w
from benchmarks._timing import Check
from benchmarks.harness import (
    REPO_ROOT,
    Run,
    SuiteContext,
    describe_exception,
    new_tinypl,
)
from benchmarks.report import (
    Section,
    SuiteReport,
    Table,
    fmt_float,
    fmt_ratio,
    ratio,
    verdict_min,
)
from benchmarks.suites import _process_figures as f
from benchmarks.suites import startup
from benchmarks.suites._process_first import first_run_table
from benchmarks.suites._process_peers import Case, serial_map
from benchmarks.suites.base import Part, Suite, add_part_option, run_parts

CPU_TARGET = 1.9
TRIVIAL_TARGET = 100_000.0
ARRAY_TARGET = 3.0  # GB/s (1 GB = 1e9 bytes)
MEMCPY_SHARE = 0.8  # of the np.copyto reference, end to end (issue 17)

CPU_REPEAT = 4
TRIVIAL_REPEAT = 3
ARRAY_REPEAT = 3
RUN_CAP = 2.0
RING_MB = 1024
REF_SOURCES = 32
"""The copy references cycle through this many 8 MB sources (256 MB: more than the caches)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    add_part_option(parser, [name for name, _, _ in PARTS])
    startup.add_arguments(parser, with_part=False)
    parser.add_argument("--workers", type=int, default=w.PROCESS_WORKERS)
    parser.add_argument("--cpu-items", type=int, default=w.PROCESS_CPU_ITEMS)
    parser.add_argument(
        "--cpu-ms",
        type=float,
        default=w.PROCESS_CPU_SECONDS * 1e3,
        help="calibrated duration of one CPU-bound call (default: %(default)s ms)",
    )
    parser.add_argument(
        "--cpu-loops",
        type=int,
        default=None,
        help="loop count of the CPU-bound function (skips the calibration)",
    )
    parser.add_argument("--trivial-items", type=int, default=w.PROCESS_TRIVIAL_ITEMS)
    parser.add_argument("--array-items", type=int, default=w.PROCESS_ARRAY_ITEMS)
    parser.add_argument(
        "--run-cap",
        type=float,
        default=RUN_CAP,
        help="trivial/arrays: stop consuming a run this many seconds after its start (but "
        "not before 0.5 s after its first result) and count the items delivered so far "
        "(0 disables; default: %(default)s)",
    )
    parser.add_argument(
        "--ring-mb",
        type=int,
        default=RING_MB,
        help="size of tinypl 0.1.0's SharedMemoryRingBuffer (default: %(default)s MiB)",
    )


# --------------------------------------------------------------------------- workloads


def _cpu_loops(ctx: SuiteContext) -> tuple[int, float]:
    """The spin loop count (calibrated unless given) and the duration of one call."""
    opts = ctx.options
    loops: int | None = opts.cpu_loops
    if loops is None:
        ctx.progress(f"calibrating spin() to {opts.cpu_ms:g} ms per call")
        loops = w.calibrate_spin(opts.cpu_ms / 1e3)
    return loops, min(w.call_seconds(w.spin, 0, loops) for _ in range(5))


def _cpu_case(ctx: SuiteContext, repeat: int, loops: int) -> Case:
    """Serial before the peers, every peer, serial again after them."""
    n = ctx.options.cpu_items
    serial_case = Case(ctx, "cpu", "spin", n, repeat, loops=loops)
    serial = serial_case.in_process("serial", "serial map (before the peers)", "-", serial_map)
    checksum = None
    if serial.ok and serial.timing is not None:
        checksum = serial.timing.extra["runs"][0]["checksum"]
    case = Case(ctx, "cpu", "spin", n, repeat, loops=loops, expected_checksum=checksum)
    case.add("serial", "-", serial)
    case.all_peers()
    # Serial again after the peers: the machine's load drifts, so the reference uses both.
    after = serial_case.in_process("serial-after", "serial map (after the peers)", "-", serial_map)
    case.results = {"serial": serial, "serial-after": after, **case.results}
    case.start["serial-after"] = "-"
    return case


def _cpu_table(
    case: Case, serial: list[float], title: str
) -> tuple[Table, dict[str, tuple[float | None, float | None]], list[dict[str, Any]]]:
    stat = case.ctx.stat
    serial_best = min(serial) if serial else None
    serial_median = statistics.median(serial) if serial else None
    table = f.figure_table(title, "speedup", stat, steady=False)
    figures: dict[str, tuple[float | None, float | None]] = {}
    rows: list[dict[str, Any]] = []
    for key, res in case.results.items():
        best = ratio(serial_best, res.value("best"))
        median = ratio(serial_median, res.value("median"))
        figures[key] = (best, median)
        value = f.pick((best, median), stat)
        table.add_row(
            [
                *f.row_base(case, key),
                fmt_ratio(best),
                fmt_ratio(median),
                fmt_ratio(ratio(value, CPU_TARGET)),
                verdict_min(value, CPU_TARGET) if not key.startswith("serial") else "",
                fmt_float(f.first_item(res), 3),
                f.status(res, case.n),
            ]
        )
        rows.append(f.row_data(case, key, speedup_best=best, speedup_median=median))
    return table, figures, rows


def _cpu(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    load = f.loadavg()
    loops, one_call = _cpu_loops(ctx)
    case = _cpu_case(ctx, repeat, loops)
    n = case.n
    serial = [
        x
        for key in ("serial", "serial-after")
        if (res := case.results[key]).ok and res.timing
        for x in res.timing.samples
    ]
    serial_best = min(serial) if serial else None
    table, figures, rows = _cpu_table(
        case,
        serial,
        f"cpu: spin() ~{one_call * 1e3:.2f} ms/call x {n} items, {case.workers} workers "
        f"(speedup = serial time / time; target >= {CPU_TARGET:g}x)",
    )
    table.notes += [
        f"spin loop count {loops} (calibrated to {ctx.options.cpu_ms:g} ms; one call measured "
        f"at {one_call * 1e3:.3f} ms, serial run {fmt_float(serial_best, 3)} s best = "
        f"{fmt_float(None if serial_best is None else serial_best / n * 1e3, 3)} ms/item); "
        f"ideal speedup with {case.workers} workers = {case.workers}x (more than that means "
        "the load changed between the serial runs and the peer's runs)",
        "speedup (best) = serial best / peer best; (median) = serial median / peer median; "
        "the serial reference pools the runs before and after the peers; every run "
        "includes starting and stopping the workers",
        f"loadavg before this workload: {load}",
    ]
    data = {"items": n, "loops": loops, "call_ms": one_call * 1e3, "loadavg_before": load}
    summary = Section(
        title="Summary", lines=[f.summary(case, figures, ctx.stat, CPU_TARGET, fmt_ratio)]
    )
    blocks: list[Table | Section] = [table, summary]
    if ctx.options.first_repeat > 0:
        # The table above is of warm runs (after a warm-up): the first run of a process
        # is measured apart, in fresh interpreters.
        first, data["first_run_rows"] = first_run_table(ctx, n, loops)
        blocks.append(first)
    return blocks, {**data, "rows": rows}


_LEGACY_UNCAPPED = (
    "tinypl 0.1.0 rows are never capped (its stop() after a partial read sometimes raises "
    "WorkerEndTimeoutException after 10 s or hangs, leaving a worker process behind)"
)


def _cap_note(cap: float | None, what: str) -> str:
    if not cap:
        return "no run cap (--run-cap 0)"
    return (
        f"a run stops consuming {fmt_float(cap, 1)} s after its start, or "
        f"{w.MIN_CONSUME:g} s after its first result if that is later (capped: rate = "
        f"{what} delivered / run time, the shutdown after the cap included)"
    )


def _trivial(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    opts = ctx.options
    load = f.loadavg()
    n = opts.trivial_items
    cap = opts.run_cap or None
    case = Case(ctx, "trivial", "inc", n, repeat, cap=cap)
    case.in_process("ref-serial", "serial map (this process)", "-", serial_map)
    case.all_peers()
    table, figures, rows = f.throughput_table(
        case,
        unit=1.0,
        unit_name="items/s",
        target=TRIVIAL_TARGET,
        title=f"trivial: x + 1 over {n:,} items, {case.workers} workers "
        f"(items/s = items delivered / run time; target >= {TRIVIAL_TARGET:,.0f})",
    )
    table.notes += [
        "every run includes starting and stopping the workers; 'first item s' (median) is "
        "the time from the start of a run to the first result, i.e. about the worker "
        "start-up (ProcessPoolExecutor.map submits all items before returning its iterator, "
        "so its figure includes that); 'steady' (median) = results after the first one / "
        "time from the first to the last result, i.e. without start-up and shutdown",
        _cap_note(cap, "items"),
        _LEGACY_UNCAPPED,
        f"loadavg before this workload: {load}",
    ]
    summary = Section(
        title="Summary",
        lines=[f.summary(case, figures, ctx.stat, TRIVIAL_TARGET, f.fmt_rate) + " items/s"],
    )
    return [table, summary], {"items": n, "cap_s": cap, "loadavg_before": load, "rows": rows}


def _copyto_reference(n: int) -> tuple[Run, Check | None]:
    import numpy as np

    sources = [w.make_array(i) for i in range(REF_SOURCES)]
    target = np.empty_like(sources[0])

    def run() -> dict[str, Any]:
        for i in range(n):
            np.copyto(target, sources[i % len(sources)])
        return _ref_stats(n)

    return run, None


def _copy_reference(n: int) -> tuple[Run, Check | None]:
    import numpy as np

    sources = [w.make_array(i) for i in range(REF_SOURCES)]

    def run() -> dict[str, Any]:
        for i in range(n):
            copied = np.copy(sources[i % len(sources)])
            del copied
        return _ref_stats(n)

    return run, None


def _ref_stats(n: int) -> dict[str, Any]:
    return {
        "items": n,
        "checksum": 0,
        "bad": 0,
        "first_s": None,
        "mark_items": n,
        "mark_s": None,
        "capped": False,
    }


def _logged_ref(make: Callable[[int], tuple[Run, Check | None]], n: int) -> Callable[[], Any]:
    def build() -> tuple[Run, Check | None]:
        run, check = make(n)
        return w.LoggedRun(run), check

    return build


def _arrays_case(ctx: SuiteContext, repeat: int, n: int, cap: float | None) -> Case:
    """Single-process references, every peer, 0.1.0 with its ring; new tinypl last."""
    case = Case(ctx, "arrays", "array", n, repeat, cap=cap)
    copyto, copy = _logged_ref(_copyto_reference, n), _logged_ref(_copy_reference, n)
    case.reference("ref-copyto", "ref: np.copyto into preallocated", copyto)
    case.reference("ref-copy", "ref: fresh np.copy", copy)
    case.in_process("ref-serial", "ref: serial produce+touch", "-", serial_map)
    case.all_peers()
    ring_bytes = ctx.options.ring_mb << 20
    case.legacy("t010-ring", "tinypl 0.1.0 + SharedMemoryRingBuffer", ring_bytes=ring_bytes)
    case.tinypl_with("fluent-empty", "tinypl fluent, pl.process.empty", w.make_array_in_place)
    for key in ("fluent", "module", "fluent-empty"):
        case.results[key] = case.results.pop(key)
    return case


def _array_notes(ring_mb: int, cap: float | None, load: str) -> list[str]:
    return [
        f"ref rows run in this process: np.copyto of 8 MB (cycling through {REF_SOURCES} "
        "sources) into one preallocated array, a fresh np.copy per item (allocation + copy; "
        "malloc reuses the freed block, so few page faults), and the serial produce + touch "
        "loop (np.full + a[::512].sum(), no workers; the reused 8 MB block stays in cache)",
        f"tinypl 0.1.0 + SharedMemoryRingBuffer: as in its README, the worker writes its "
        f"result into a {ring_mb} MiB ring (created once per case) and the consumer "
        "reads it back (read() returns a copy); 0.1.0 plain pickles arrays through its "
        "queues",
        "torch DataLoader converts the arrays to tensors in the workers and passes them "
        "through shared memory; the new tinypl passes arrays >= 64 KiB through per-worker "
        "shared-memory pools (zero-copy views in the consumer); its pl.process.empty row fills "
        "an array that pl.process.empty placed in that pool (no copy at all)",
        "'first item s' and 'steady' as in the trivial table; every run includes starting "
        "and stopping the workers",
        _cap_note(cap, "arrays"),
        _LEGACY_UNCAPPED,
        f"loadavg before this workload: {load}",
    ]


def _over_memcpy(case: Case, figures: dict[str, Any], stat: str) -> str:
    """tinypl's rates as a share of the memcpy reference (issue 17: >= 0.8)."""
    memcpy = f.pick(figures["ref-copyto"], stat)
    shares = []
    for key in ("fluent", "module", "fluent-empty"):
        rate = f.pick(figures.get(key, (None, None)), stat)
        text = "-" if rate is None or not memcpy else f"{rate / memcpy:.2f}"
        shares.append(f"{case.results[key].label.removeprefix('tinypl ')} {text}")
    return f"over np.copyto (memcpy; target >= {MEMCPY_SHARE:g}): " + ", ".join(shares)


def _arrays(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    opts = ctx.options
    load = f.loadavg()
    n = opts.array_items
    cap = opts.run_cap or None
    case = _arrays_case(ctx, repeat, n, cap)
    gb = w.PROCESS_ARRAY_BYTES / 1e9
    table, figures, rows = f.throughput_table(
        case,
        unit=gb,
        unit_name="GB/s",
        target=ARRAY_TARGET,
        title=f"arrays: np.full({w.PROCESS_ARRAY_LENGTH:_}, float(i)) = 8 MB x {n} items, "
        f"{case.workers} workers, consumer reads a[::{w.PAGE_STRIDE}] "
        f"(GB/s = items x 8e6 B / run time; target >= {ARRAY_TARGET:g} GB/s)",
    )
    table.notes += _array_notes(opts.ring_mb, cap, load)
    refs = ", ".join(
        f"{case.results[k].label.removeprefix('ref: ')} {f.fmt_gbs(f.pick(figures[k], ctx.stat))}"
        for k in ("ref-copyto", "ref-copy", "ref-serial")
    )
    summary = Section(
        title="Summary",
        lines=[
            f.summary(case, figures, ctx.stat, ARRAY_TARGET, f.fmt_gbs)
            + f"; 0.1.0 + ring {f.fmt_gbs(f.pick(figures['t010-ring'], ctx.stat))}",
            f"single-process references: {refs}",
            _over_memcpy(case, figures, ctx.stat),
        ],
    )
    return [table, summary], {
        "items": n,
        "bytes_per_item": w.PROCESS_ARRAY_BYTES,
        "cap_s": cap,
        "ring_mb": opts.ring_mb,
        "loadavg_before": load,
        "rows": rows,
    }


# --------------------------------------------------------------------------- suite


def _preload(ctx: SuiteContext) -> None:
    """Import every peer up front, so fork-based peers always fork the same parent."""
    for name in ("numpy", "mpire", "pypeln", "torch.utils.data"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                __import__(name)
        except Exception as exc:
            ctx.progress(f"cannot import {name}: {describe_exception(exc)}")
    try:
        new_tinypl()
    except ImportError as exc:
        ctx.progress(str(exc))


def _source_stamp() -> dict[str, float]:
    """Modification times of the new tinypl's sources (workers re-import them from disk)."""
    return {str(p): p.stat().st_mtime for p in sorted((REPO_ROOT / "tinypl").rglob("*.py"))}


def run(ctx: SuiteContext) -> SuiteReport:
    """Run the selected workloads and build the report."""
    report = SuiteReport(
        suite="process",
        title=f"process: process stages with {ctx.options.workers} workers vs multiprocessing "
        "peers",
    )
    started = time.perf_counter()
    stamp = _source_stamp()
    report.data["loadavg_start"] = f.loadavg()
    _preload(ctx)
    run_parts(ctx, report, PARTS)
    elapsed = time.perf_counter() - started
    report.data["loadavg_end"] = f.loadavg()
    report.data["elapsed_s"] = elapsed
    changed = sorted(
        {
            str(Path(name).relative_to(REPO_ROOT))
            for name, _ in _source_stamp().items() ^ stamp.items()
        }
    )
    report.data["tinypl_sources_changed"] = changed
    lines = [
        f"loadavg at start {report.data['loadavg_start']}, at end "
        f"{report.data['loadavg_end']}; suite took {elapsed:.0f} s",
        "figures are noisy when the load average is above ~0.5 on this 2-core machine",
    ]
    if changed:
        lines.append(
            "WARNING: tinypl sources changed during the run (this process and its workers "
            f"may have run different code): {', '.join(changed)}"
        )
    report.blocks.append(Section(title="Run", lines=lines))
    return report


PARTS: list[Part] = [
    ("cpu", _cpu, CPU_REPEAT),
    ("trivial", _trivial, TRIVIAL_REPEAT),
    ("arrays", _arrays, ARRAY_REPEAT),
    ("startup", startup.run_startup, 1),
]

SUITE = Suite(
    name="process",
    description="process stages (2 workers): CPU-bound speedup, trivial items/s, 8 MB arrays "
    "GB/s vs Pool, ProcessPoolExecutor, mpire, pypeln, torch DataLoader, tinypl 0.1.0",
    default_repeat=CPU_REPEAT,
    add_arguments=add_arguments,
    run=run,
)
