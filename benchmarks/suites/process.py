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
import multiprocessing
import os
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
    PeerResult,
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
from benchmarks.suites.base import Suite

CPU_TARGET = 1.9
TRIVIAL_TARGET = 100_000.0
ARRAY_TARGET = 3.0  # GB/s (1 GB = 1e9 bytes)

CPU_REPEAT = 4
TRIVIAL_REPEAT = 3
ARRAY_REPEAT = 3
RUN_CAP = 2.0
RING_MB = 1024
REF_SOURCES = 32
"""The copy references cycle through this many 8 MB sources (256 MB: more than the caches)."""

PARTS = ("cpu", "trivial", "arrays")

Body = Callable[[float], dict[str, Any]]
"""Runs one complete case from ``t0`` (the run's start) and returns consumer stats."""
Builder = Callable[[int, Callable[[Any], Any], int, str, "float | None"], "Body | w.LoggedRun"]
"""``(n, fn, workers, kind, cap) -> body`` (or a ready :class:`_workloads.LoggedRun`)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument(
        "--part",
        choices=("all", *PARTS),
        default="all",
        help="which workload to run (default: %(default)s)",
    )
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


# --------------------------------------------------------------------------- peers


def _serial(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    return lambda t0: w.consume(kind, map(fn, range(n)), t0, None)


def _pool(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    def body(t0: float) -> dict[str, Any]:
        with multiprocessing.Pool(workers) as pool:
            return w.consume(kind, pool.imap(fn, range(n)), t0, cap)

    return body


def _executor(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from concurrent.futures import ProcessPoolExecutor

    def body(t0: float) -> dict[str, Any]:
        with ProcessPoolExecutor(workers) as executor:
            results: Any = executor.map(fn, range(n))  # a generator
            try:
                return w.consume(kind, results, t0, cap)
            finally:
                results.close()  # cancels the futures not started yet (capped run)

    return body


def _mpire(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from mpire.pool import WorkerPool

    def body(t0: float) -> dict[str, Any]:
        with WorkerPool(n_jobs=workers) as pool:
            results = pool.imap(fn, range(n))
            try:
                return w.consume(kind, results, t0, cap)
            finally:
                results.close()

    return body


def _pypeln(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    with warnings.catch_warnings():
        # pypeln -> stopit imports the deprecated pkg_resources; not our concern here.
        warnings.simplefilter("ignore", UserWarning)
        import pypeln

    def body(t0: float) -> dict[str, Any]:
        results = iter(pypeln.process.map(fn, range(n), workers=workers))
        try:
            return w.consume(kind, results, t0, cap)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    return body


def _torch(n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None) -> Body:
    from torch.utils.data import DataLoader

    def body(t0: float) -> dict[str, Any]:
        dataset: Any = w.FunctionDataset(fn, n)  # duck-typed map-style dataset
        loader: Any = DataLoader(dataset, batch_size=None, num_workers=workers)
        it = iter(loader)
        stats = w.consume(kind, it, t0, cap)
        del it  # shuts its workers down (inside the timed run)
        return stats

    return body


def _tinypl_fluent(
    n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
) -> Body:
    pl = new_tinypl()

    def body(t0: float) -> dict[str, Any]:
        stage = iter(pl.Pipe(range(n)).map(fn).process(workers))
        stats = w.consume(kind, stage, t0, cap)
        if stats["capped"]:
            stage.close()
        return stats

    return body


def _tinypl_module_level(
    n: int, fn: Callable[[Any], Any], workers: int, kind: str, cap: float | None
) -> w.LoggedRun:
    # The same code as the tinypl 0.1.0 column (benchmarks._workloads).
    return w.tinypl_process_module_level(new_tinypl(), n, fn, workers, kind=kind, cap=cap)


def _logged(body: Body) -> w.LoggedRun:
    def run() -> dict[str, Any]:
        return body(time.perf_counter())

    return w.LoggedRun(run)


def _mp_default() -> str:
    try:
        return str(multiprocessing.get_context().get_start_method())
    except Exception as exc:  # pragma: no cover - defensive
        return f"? ({describe_exception(exc)})"


def _tinypl_default() -> str:
    try:
        new_tinypl()
        from tinypl._runtime._processes import default_start_method

        return str(default_start_method())
    except Exception:
        return "?"


def _mpire_default() -> str:
    try:
        from mpire.context import DEFAULT_START_METHOD

        return str(DEFAULT_START_METHOD)
    except Exception:
        return "?"


class _Case:
    """One workload: function, size, consumer kind, figure and the collected results."""

    def __init__(
        self,
        ctx: SuiteContext,
        *,
        name: str,
        fn_name: str,
        n: int,
        loops: int | None,
        cap: float | None,
        repeat: int,
        expected_checksum: float | None,
    ) -> None:
        self.ctx = ctx
        self.fn_name = fn_name
        self.fn = w.process_function(fn_name, loops)
        self.kind = "array" if fn_name == "array" else "value"
        self.n = n
        self.loops = loops
        self.cap = cap
        self.repeat = repeat
        self.workers: int = ctx.options.workers
        self.name = name
        self.check: Check = w.make_stats_check(n, expected_checksum)
        self.results: dict[str, PeerResult] = {}
        self.start: dict[str, str] = {}

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"n": self.n, "fn": self.fn_name, "workers": self.workers}
        if self.loops is not None:
            params["loops"] = self.loops
        if self.cap is not None:
            params["cap"] = self.cap
        return params

    def in_process(self, key: str, label: str, start: str, builder: Builder) -> PeerResult:
        def build() -> tuple[Run, Check]:
            body = builder(self.n, self.fn, self.workers, self.kind, self.cap)
            return (body if isinstance(body, w.LoggedRun) else _logged(body)), self.check

        return self._add(key, start, self._run(label, build))

    def _run(self, label: str, build: Callable[[], tuple[Run, Check]]) -> PeerResult:
        runs: list[w.LoggedRun] = []

        def tracked() -> tuple[Run, Check]:
            run, check = build()
            if isinstance(run, w.LoggedRun):
                runs.append(run)
            return run, check

        result = self.ctx.run_in_process(label, tracked, repeat=self.repeat, params=self.params)
        if runs and result.timing is not None:
            result.timing.extra["runs"] = runs[0].log
        return result

    def reference(self, key: str, label: str, build: Callable[[], tuple[Run, Check]]) -> None:
        self._add(key, "-", self._run(label, build))

    def legacy(self, key: str, label: str, **extra: Any) -> PeerResult:
        # Never capped: 0.1.0's stop() after a partial read sometimes times out
        # (WorkerEndTimeoutException after 10 s) or hangs and leaves a worker behind.
        params = {k: v for k, v in self.params.items() if k != "cap"}
        res = self.ctx.run_legacy(label, "process.map", {**params, **extra}, repeat=self.repeat)
        return self._add(key, "fork (mp default)" if res.ok else "-", res)

    def _add(self, key: str, start: str, res: PeerResult) -> PeerResult:
        self.results[key] = res
        self.start[key] = start
        return res

    def all_peers(self) -> None:
        """Every multi-process peer, in a fixed order."""
        mp_default = f"{_mp_default()} (mp default)"
        self.in_process("pool", "multiprocessing.Pool.imap", mp_default, _pool)
        self.in_process("ppe", "ProcessPoolExecutor.map", mp_default, _executor)
        self.in_process("mpire", "mpire WorkerPool.imap", _mpire_default(), _mpire)
        self.in_process("pypeln", "pypeln.process.map", mp_default, _pypeln)
        self.in_process("torch", "torch DataLoader", mp_default, _torch)
        self.legacy("t010", "tinypl 0.1.0 pl.process.map")
        tinypl_start = _tinypl_default()
        self.in_process("fluent", "tinypl Pipe.map.process (fluent)", tinypl_start, _tinypl_fluent)

        self.in_process("module", "tinypl pl.process.map", tinypl_start, _tinypl_module_level)


# --------------------------------------------------------------------------- figures


def _runs(res: PeerResult) -> list[tuple[float, dict[str, Any]]]:
    """(seconds, consumer stats) of every timed run (the warm-up is dropped)."""
    if not res.ok or res.timing is None:
        return []
    log = res.timing.extra.get("runs") or []
    samples = res.timing.samples
    timed = log[len(log) - len(samples) :] if len(log) >= len(samples) else []
    return list(zip(samples, timed, strict=True))


def _rates(res: PeerResult, unit: float) -> list[float]:
    """Per-run throughput: ``items * unit / seconds`` (items actually delivered)."""
    return [stats["items"] * unit / seconds for seconds, stats in _runs(res) if seconds > 0]


def _capped_text(res: PeerResult, n: int) -> str:
    runs = _runs(res)
    capped = [stats["items"] for _, stats in runs if stats["capped"]]
    if not capped:
        return ""
    return f"capped {len(capped)}/{len(runs)} runs ({min(capped):,}-{max(capped):,} of {n:,})"


def _steady(res: PeerResult, unit: float) -> float | None:
    """Median rate between the first result and the last marked one (start-up and
    shutdown excluded)."""
    rates = [
        (stats["mark_items"] - 1) * unit / (stats["mark_s"] - stats["first_s"])
        for _, stats in _runs(res)
        if stats.get("first_s") is not None
        and stats.get("mark_s") is not None
        and stats["mark_items"] > 1
        and stats["mark_s"] > stats["first_s"]
    ]
    return statistics.median(rates) if rates else None


def _first_item(res: PeerResult) -> float | None:
    firsts = [stats["first_s"] for _, stats in _runs(res) if stats.get("first_s") is not None]
    return statistics.median(firsts) if firsts else None


def _status(res: PeerResult, n: int) -> str:
    capped = _capped_text(res, n)
    return res.status if not capped else f"{res.status}; {capped}"


def _loadavg() -> str:
    if not hasattr(os, "getloadavg"):
        return "?"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


HEADERS = ["peer", "start method", "runs", "best s", "median s"]


def _row_base(case: _Case, key: str) -> list[str]:
    res = case.results[key]
    timing = res.timing
    return [
        res.label,
        case.start[key],
        res.runs_text,
        fmt_float(None if timing is None else timing.best, 3),
        fmt_float(None if timing is None else timing.median, 3),
    ]


def _pick(values: tuple[float | None, float | None], stat: str) -> float | None:
    return values[0] if stat == "best" else values[1]


def _summary(
    case: _Case,
    figures: dict[str, tuple[float | None, float | None]],
    stat: str,
    target: float,
    fmt: Callable[[float | None], str],
) -> str:
    def show(key: str) -> str:
        return fmt(_pick(figures[key], stat)) if key in figures else "-"

    fluent = _pick(figures.get("fluent", (None, None)), stat)
    module = _pick(figures.get("module", (None, None)), stat)
    others = {
        k: v
        for k, v in figures.items()
        if _pick(v, stat) is not None
        and not k.startswith(("fluent", "module", "serial", "ref", "t010"))
    }
    best_other = max(others, key=lambda k: _pick(others[k], stat) or 0.0, default=None)
    best_text = (
        "-"
        if best_other is None
        else f"{case.results[best_other].label} {fmt(_pick(others[best_other], stat))}"
    )
    return (
        f"{case.name} ({stat}): tinypl fluent {show('fluent')} "
        f"({fmt_ratio(ratio(fluent, target))} of target, {verdict_min(fluent, target)}), "
        f"module-level {show('module')} ({fmt_ratio(ratio(module, target))}, "
        f"{verdict_min(module, target)}); tinypl 0.1.0 {show('t010')}; "
        f"best of the other peers: {best_text}"
    )


# --------------------------------------------------------------------------- workloads


def _cpu(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    opts = ctx.options
    load = _loadavg()
    loops = opts.cpu_loops
    if loops is None:
        ctx.progress(f"calibrating spin() to {opts.cpu_ms:g} ms per call")
        loops = w.calibrate_spin(opts.cpu_ms / 1e3)
    n = opts.cpu_items
    one_call = min(w.call_seconds(w.spin, 0, loops) for _ in range(5))
    serial_case = _Case(
        ctx,
        name="cpu",
        fn_name="spin",
        n=n,
        loops=loops,
        cap=None,
        repeat=repeat,
        expected_checksum=None,
    )
    serial = serial_case.in_process("serial", "serial map (before the peers)", "-", _serial)
    checksum = None
    if serial.ok and serial.timing is not None:
        checksum = serial.timing.extra["runs"][0]["checksum"]
    case = _Case(
        ctx,
        name="cpu",
        fn_name="spin",
        n=n,
        loops=loops,
        cap=None,
        repeat=repeat,
        expected_checksum=checksum,
    )
    case._add("serial", "-", serial)
    case.all_peers()
    # Serial again after the peers: the machine's load drifts, so the reference uses both.
    after = serial_case.in_process("serial-after", "serial map (after the peers)", "-", _serial)
    case.results = {"serial": serial, "serial-after": after, **case.results}
    case.start["serial-after"] = "-"

    stat = ctx.stat
    serial_samples = [
        x for res in (serial, after) if res.ok and res.timing for x in res.timing.samples
    ]
    serial_best = min(serial_samples) if serial_samples else None
    serial_median = statistics.median(serial_samples) if serial_samples else None
    table = Table(
        title=f"cpu: spin() ~{one_call * 1e3:.2f} ms/call x {n} items, {case.workers} workers "
        f"(speedup = serial time / time; target >= {CPU_TARGET:g}x)",
        headers=[
            *HEADERS,
            "speedup (best)",
            "speedup (median)",
            f"x target ({stat})",
            "target",
            "first item s",
            "status",
        ],
        left=frozenset({1}),
    )
    figures: dict[str, tuple[float | None, float | None]] = {}
    rows: list[dict[str, Any]] = []
    for key, res in case.results.items():
        best = ratio(serial_best, res.value("best"))
        median = ratio(serial_median, res.value("median"))
        figures[key] = (best, median)
        value = _pick((best, median), stat)
        table.add_row(
            [
                *_row_base(case, key),
                fmt_ratio(best),
                fmt_ratio(median),
                fmt_ratio(ratio(value, CPU_TARGET)),
                verdict_min(value, CPU_TARGET) if not key.startswith("serial") else "",
                fmt_float(_first_item(res), 3),
                _status(res, n),
            ]
        )
        rows.append(
            {
                **res.to_dict(),
                "key": key,
                "start_method": case.start[key],
                "speedup_best": best,
                "speedup_median": median,
                "first_item_median_s": _first_item(res),
            }
        )
    table.notes += [
        f"spin loop count {loops} (calibrated to {opts.cpu_ms:g} ms; one call measured at "
        f"{one_call * 1e3:.3f} ms, serial run {fmt_float(serial_best, 3)} s best = "
        f"{fmt_float(None if serial_best is None else serial_best / n * 1e3, 3)} ms/item); "
        f"ideal speedup with {case.workers} workers = {case.workers}x (more than that means "
        "the load changed between the serial runs and the peer's runs)",
        "speedup (best) = serial best / peer best; (median) = serial median / peer median; "
        "the serial reference pools the runs before and after the peers; every run "
        "includes starting and stopping the workers",
        f"loadavg before this workload: {load}",
    ]
    data = {
        "items": n,
        "loops": loops,
        "call_ms": one_call * 1e3,
        "loadavg_before": load,
        "rows": rows,
    }
    summary = Section(
        title="Summary",
        lines=[_summary(case, figures, stat, CPU_TARGET, fmt_ratio)],
    )
    return [table, summary], data


def _fmt_rate(value: float | None) -> str:
    return fmt_float(value, 0)


def _fmt_gbs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GB/s"


def _throughput_table(
    case: _Case,
    *,
    unit: float,
    unit_name: str,
    target: float,
    title: str,
) -> tuple[Table, dict[str, tuple[float | None, float | None]], list[dict[str, Any]]]:
    stat = case.ctx.stat
    table = Table(
        title=title,
        headers=[
            *HEADERS,
            f"{unit_name} (best)",
            f"{unit_name} (median)",
            f"x target ({stat})",
            "target",
            "first item s",
            f"steady {unit_name}",
            "status",
        ],
        left=frozenset({1}),
    )
    figures: dict[str, tuple[float | None, float | None]] = {}
    rows: list[dict[str, Any]] = []
    for key, res in case.results.items():
        steady = _steady(res, unit)
        rates = _rates(res, unit)
        best = max(rates) if rates else None
        median = statistics.median(rates) if rates else None
        figures[key] = (best, median)
        value = _pick((best, median), stat)
        is_peer = not key.startswith("ref")
        table.add_row(
            [
                *_row_base(case, key),
                fmt_float(best, 2 if unit < 1 else 0),
                fmt_float(median, 2 if unit < 1 else 0),
                fmt_ratio(ratio(value, target)),
                verdict_min(value, target) if is_peer else "",
                fmt_float(_first_item(res), 3),
                fmt_float(steady, 2 if unit < 1 else 0),
                _status(res, case.n),
            ]
        )
        rows.append(
            {
                **res.to_dict(),
                "key": key,
                "start_method": case.start[key],
                f"{unit_name}_per_run": rates,
                f"{unit_name}_best": best,
                f"{unit_name}_median": median,
                f"steady_{unit_name}_median": steady,
                "capped": _capped_text(res, case.n) or None,
                "first_item_median_s": _first_item(res),
            }
        )
    return table, figures, rows


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
    load = _loadavg()
    n = opts.trivial_items
    cap = opts.run_cap or None
    case = _Case(
        ctx,
        name="trivial",
        fn_name="inc",
        n=n,
        loops=None,
        cap=cap,
        repeat=repeat,
        expected_checksum=w.expected_process_checksum("inc", n),
    )
    case.in_process("ref-serial", "serial map (this process)", "-", _serial)
    case.all_peers()
    table, figures, rows = _throughput_table(
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
        lines=[_summary(case, figures, ctx.stat, TRIVIAL_TARGET, _fmt_rate) + " items/s"],
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


def _arrays(ctx: SuiteContext, repeat: int) -> tuple[list[Table | Section], dict[str, Any]]:
    opts = ctx.options
    load = _loadavg()
    n = opts.array_items
    cap = opts.run_cap or None
    case = _Case(
        ctx,
        name="arrays",
        fn_name="array",
        n=n,
        loops=None,
        cap=cap,
        repeat=repeat,
        expected_checksum=w.expected_process_checksum("array", n),
    )

    def logged_ref(make: Callable[[int], tuple[Run, Check | None]]) -> Callable[[], Any]:
        def build() -> tuple[Run, Check | None]:
            run, check = make(n)
            return w.LoggedRun(run), check

        return build

    case.reference("ref-copyto", "ref: np.copyto into preallocated", logged_ref(_copyto_reference))
    case.reference("ref-copy", "ref: fresh np.copy", logged_ref(_copy_reference))
    case.in_process("ref-serial", "ref: serial produce+touch", "-", _serial)
    case.all_peers()
    ring_bytes = opts.ring_mb << 20
    case.legacy("t010-ring", "tinypl 0.1.0 + SharedMemoryRingBuffer", ring_bytes=ring_bytes)
    # Keep the new tinypl rows last.
    for key in ("fluent", "module"):
        case.results[key] = case.results.pop(key)
    gb = w.PROCESS_ARRAY_BYTES / 1e9
    table, figures, rows = _throughput_table(
        case,
        unit=gb,
        unit_name="GB/s",
        target=ARRAY_TARGET,
        title=f"arrays: np.full({w.PROCESS_ARRAY_LENGTH:_}, float(i)) = 8 MB x {n} items, "
        f"{case.workers} workers, consumer reads a[::{w.PAGE_STRIDE}] "
        f"(GB/s = items x 8e6 B / run time; target >= {ARRAY_TARGET:g} GB/s)",
    )
    table.notes += [
        f"ref rows run in this process: np.copyto of 8 MB (cycling through {REF_SOURCES} "
        "sources) into one preallocated array, a fresh np.copy per item (allocation + copy; "
        "malloc reuses the freed block, so few page faults), and the serial produce + touch "
        "loop (np.full + a[::512].sum(), no workers; the reused 8 MB block stays in cache)",
        f"tinypl 0.1.0 + SharedMemoryRingBuffer: as in its README, the worker writes its "
        f"result into a {opts.ring_mb} MiB ring (created once per case) and the consumer "
        "reads it back (read() returns a copy); 0.1.0 plain pickles arrays through its "
        "queues",
        "torch DataLoader converts the arrays to tensors in the workers and passes them "
        "through shared memory; the new tinypl passes arrays >= 64 KiB through per-worker "
        "shared-memory pools (zero-copy views in the consumer)",
        "'first item s' and 'steady' as in the trivial table; every run includes starting "
        "and stopping the workers",
        _cap_note(cap, "arrays"),
        _LEGACY_UNCAPPED,
        f"loadavg before this workload: {load}",
    ]
    refs = ", ".join(
        f"{case.results[k].label.removeprefix('ref: ')} {_fmt_gbs(_pick(figures[k], ctx.stat))}"
        for k in ("ref-copyto", "ref-copy", "ref-serial")
    )
    summary = Section(
        title="Summary",
        lines=[
            _summary(case, figures, ctx.stat, ARRAY_TARGET, _fmt_gbs)
            + f"; 0.1.0 + ring {_fmt_gbs(_pick(figures['t010-ring'], ctx.stat))}",
            f"single-process references: {refs}",
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
    part = ctx.options.part
    report = SuiteReport(
        suite="process",
        title=f"process: process stages with {ctx.options.workers} workers vs multiprocessing "
        "peers",
    )
    started = time.perf_counter()
    stamp = _source_stamp()
    report.data["loadavg_start"] = _loadavg()
    _preload(ctx)
    parts: list[tuple[str, Callable[..., Any], int]] = [
        ("cpu", _cpu, CPU_REPEAT),
        ("trivial", _trivial, TRIVIAL_REPEAT),
        ("arrays", _arrays, ARRAY_REPEAT),
    ]
    for name, function, default_repeat in parts:
        if part not in ("all", name):
            continue
        repeat = ctx.repeat if ctx.repeat_explicit else default_repeat
        blocks, data = function(ctx, repeat)
        report.blocks += blocks
        report.data[name] = data
    elapsed = time.perf_counter() - started
    report.data["loadavg_end"] = _loadavg()
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


SUITE = Suite(
    name="process",
    description="process stages (2 workers): CPU-bound speedup, trivial items/s, 8 MB arrays "
    "GB/s vs Pool, ProcessPoolExecutor, mpire, pypeln, torch DataLoader, tinypl 0.1.0",
    default_repeat=CPU_REPEAT,
    add_arguments=add_arguments,
    run=run,
)
