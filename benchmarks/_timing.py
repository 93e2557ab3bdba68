"""Timing primitives shared by the harness and the legacy (tinypl 0.1.0) runner.

This module is deliberately **stdlib-only and free of package-relative imports**: the
harness imports it as ``benchmarks._timing`` while ``_legacy_runner.py`` (executed as a
script by a *different* interpreter, the tinypl 0.1.0 venv) imports it as the top-level
module ``_timing``.  Both therefore use exactly the same measurement protocol:

* one warm-up run (its duration is recorded but never used for figures),
* ``gc.collect()`` before every run, garbage collection otherwise left enabled,
* ``repeat`` timed runs with :func:`time.perf_counter`,
* figures derived from the *best* (minimum) and the *median* sample.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[Any], "str | None"]
"""Validates the result of a run; returns an error message or ``None`` when correct."""


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples (seconds) of repeated runs of one case."""

    samples: list[float]
    warmup: float | None = None
    check_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> float:
        """Minimum sample: the least disturbed run (standard for micro-benchmarks)."""
        return min(self.samples)

    @property
    def median(self) -> float:
        """Median sample: the typical run."""
        return statistics.median(self.samples)

    @property
    def mean(self) -> float:
        """Arithmetic mean of the samples."""
        return statistics.fmean(self.samples)

    def stat(self, name: str) -> float:
        """Return the statistic called ``name`` (``"best"``, ``"median"`` or ``"mean"``)."""
        if name == "best":
            return self.best
        if name == "median":
            return self.median
        if name == "mean":
            return self.mean
        raise ValueError(f"unknown statistic {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable representation (used across the subprocess boundary)."""
        return {
            "samples": list(self.samples),
            "warmup": self.warmup,
            "best": self.best,
            "median": self.median,
            "mean": self.mean,
            "check_error": self.check_error,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        """Inverse of :meth:`to_dict` (derived statistics are recomputed)."""
        return cls(
            samples=[float(s) for s in data["samples"]],
            warmup=None if data.get("warmup") is None else float(data["warmup"]),
            check_error=data.get("check_error"),
            extra=dict(data.get("extra") or {}),
        )


def _timed_run(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


MIN_REPEAT_UNDER_CAP = 3
"""A time cap never reduces the number of timed runs below this."""


def capped_repeat(repeat: int, run_seconds: float | None, time_cap: float | None) -> int:
    """Number of timed runs so that they take about ``time_cap`` seconds at most.

    ``run_seconds`` is the duration of one (warm-up) run.  The result is ``repeat`` when
    there is no cap, otherwise ``min(repeat, max(MIN_REPEAT_UNDER_CAP, cap // run))``.
    """
    if not time_cap or not run_seconds or run_seconds <= 0:
        return repeat
    return min(repeat, max(MIN_REPEAT_UNDER_CAP, int(time_cap // run_seconds)))


def measure(
    fn: Callable[[], Any],
    repeat: int,
    *,
    warmup: int = 1,
    check: Check | None = None,
    time_cap: float | None = None,
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed-for-figures, then ``repeat`` timed times.

    ``fn`` must perform the complete workload, including consuming the pipeline (for
    example ``list(...)``), and return the consumed result.  The result of the first run
    is passed to ``check``; a failed check is reported in :attr:`Timing.check_error`
    instead of raising, so that a wrong result is visible next to its timing.

    With ``time_cap`` (seconds), slow cases get fewer timed runs (see
    :func:`capped_repeat`); the requested count is kept in ``extra["requested_repeat"]``.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    check_error: str | None = None
    checked = False
    warmup_time: float | None = None
    for _ in range(warmup):
        elapsed, result = _timed_run(fn)
        warmup_time = elapsed if warmup_time is None else warmup_time + elapsed
        if check is not None and not checked:
            check_error = check(result)
            checked = True
        del result
    requested = repeat
    repeat = capped_repeat(repeat, warmup_time / warmup if warmup_time else None, time_cap)
    samples: list[float] = []
    for _ in range(repeat):
        elapsed, result = _timed_run(fn)
        if check is not None and not checked:
            check_error = check(result)
            checked = True
        del result
        samples.append(elapsed)
    return Timing(
        samples=samples,
        warmup=warmup_time,
        check_error=check_error,
        extra={"requested_repeat": requested},
    )


def call_durations(fn: Callable[[int], Any], calls: int) -> list[float]:
    """Durations (seconds) of ``calls`` successive single-threaded calls ``fn(i)``."""
    durations: list[float] = []
    perf_counter = time.perf_counter
    for i in range(calls):
        start = perf_counter()
        fn(i)
        durations.append(perf_counter() - start)
    return durations
