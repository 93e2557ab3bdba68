"""Suite ``sleep``: how long ``time.sleep(0.001)`` really takes on this machine.

Reports per-call durations single-threaded and with N threads sleeping concurrently
(default 2000 calls per thread, 16 threads).  These figures explain why the *nominal*
thread efficiency of the ``thread`` suite cannot reach 100%.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from benchmarks import _workloads as w
from benchmarks._timing import call_durations
from benchmarks.harness import SuiteContext
from benchmarks.report import SuiteReport, Table, fmt_float
from benchmarks.suites.base import Suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument("--calls", type=int, default=2000, help="calls per thread")
    parser.add_argument("--threads", type=int, default=16, help="concurrent threads")


def _summary(durations: list[float]) -> dict[str, float]:
    ordered = sorted(durations)
    return {
        "mean_us": statistics.fmean(ordered) * 1e6,
        "median_us": statistics.median(ordered) * 1e6,
        "min_us": ordered[0] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e6,
        "max_us": ordered[-1] * 1e6,
        "calls": float(len(ordered)),
    }


def _concurrent(calls: int, threads: int) -> tuple[list[float], float]:
    per_thread: list[list[float]] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        per_thread[index] = call_durations(w.sleep_1ms, calls)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - start
    return [d for durations in per_thread for d in durations], wall


def run(ctx: SuiteContext) -> SuiteReport:
    """Measure sleep durations and build the report."""
    calls, threads = ctx.options.calls, ctx.options.threads
    ctx.progress(f"sleep_1ms x {calls}, single thread")
    single = _summary(call_durations(w.sleep_1ms, calls))
    ctx.progress(f"sleep_1ms x {calls}, {threads} threads concurrently")
    durations, wall = _concurrent(calls, threads)
    multi = _summary(durations)

    table = Table(
        title="time.sleep(0.001): real duration per call (microseconds)",
        headers=["setting", "calls", "mean", "median", "min", "p99", "max"],
    )
    for label, figures in (("1 thread", single), (f"{threads} threads concurrently", multi)):
        table.add_row(
            [
                label,
                f"{int(figures['calls']):,}",
                *(
                    fmt_float(figures[k])
                    for k in ("mean_us", "median_us", "min_us", "p99_us", "max_us")
                ),
            ]
        )
    overshoot = single["mean_us"] / (w.SLEEP_SECONDS * 1e6)
    table.notes += [
        f"{threads} threads: wall {wall:.3f} s for {calls} sequential sleeps per thread",
        f"mean single-threaded call = {overshoot:.4f} x nominal -> best nominal thread "
        f"efficiency ~ {100 / overshoot:.1f}%",
        f"timer slack of this process: {_timer_slack()}",
    ]
    data: dict[str, Any] = {
        "single": single,
        "concurrent": {**multi, "threads": threads, "wall_s": wall},
    }
    return SuiteReport(
        suite="sleep", title="sleep: time.sleep(0.001) calibration", blocks=[table], data=data
    )


def _timer_slack() -> str:
    try:
        with open("/proc/self/timerslack_ns", encoding="ascii") as handle:
            return f"{int(handle.read().strip()) / 1000:g} us"
    except (OSError, ValueError):
        return "unknown"


SUITE = Suite(
    name="sleep",
    description="calibration: real duration of time.sleep(0.001), 1 and N threads",
    default_repeat=1,
    add_arguments=add_arguments,
    run=run,
)
