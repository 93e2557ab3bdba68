"""Workload functions and the tinypl *module-level* cases shared by both tinypl versions.

Like :mod:`benchmarks._timing`, this module is stdlib-only and has no package-relative
imports, because ``_legacy_runner.py`` imports it as the top-level module ``_workloads``
inside the tinypl 0.1.0 venv.  The module-level builders take the ``tinypl`` module as a
parameter, so the *same source code* is timed for the new library (in-process) and for
tinypl 0.1.0 (in the subprocess).

The stage functions are ``def`` functions rather than lambdas so that they stay picklable
for the planned ``process`` suite; calling a ``def`` function and calling the equivalent
``lambda`` cost exactly the same in CPython.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

# --------------------------------------------------------------------------- constants

SYNC_ITEMS = 1_000_000
"""Input size of the ``sync`` chain."""

SYNC_STAGES = 3
"""Number of stages of the ``sync`` chain (map, filter, map)."""

SLEEP_SECONDS = 0.001
"""Nominal duration of :func:`sleep_1ms`."""

THREAD_SLEEP_ITEMS = 2_000
THREAD_SLEEP_WORKERS = 16
THREAD_OVERHEAD_ITEMS = 100_000
THREAD_OVERHEAD_WORKERS = (1, 4)

PROCESS_WORKERS = 2
PROCESS_CPU_ITEMS = 400
PROCESS_CPU_SECONDS = 0.003
"""Target duration of one :func:`spin` call (the loop count is calibrated at start)."""
PROCESS_TRIVIAL_ITEMS = 100_000
PROCESS_ARRAY_ITEMS = 200
PROCESS_ARRAY_LENGTH = 1_000_000
"""float64 elements of one :func:`make_array` result (8,000,000 bytes)."""
PROCESS_ARRAY_BYTES = 8 * PROCESS_ARRAY_LENGTH
PAGE_STRIDE = 512
"""The consumer reads every ``PAGE_STRIDE``-th float64: one element per 4 KiB page."""


# --------------------------------------------------------------------------- stage functions


def double(x: int) -> int:
    """``lambda x: x * 2`` -- first map of the sync chain."""
    return x * 2


def not_multiple_of_3(x: int) -> int:
    """``lambda x: x % 3`` -- filter predicate (keeps items where it is truthy)."""
    return x % 3


def inc(x: int) -> int:
    """``lambda x: x + 1`` -- second map of the sync chain."""
    return x + 1


def identity(x: Any) -> Any:
    """``lambda x: x`` -- trivial function for per-item overhead measurements."""
    return x


def sleep_1ms(x: Any) -> Any:
    """Sleep :data:`SLEEP_SECONDS` and return ``x`` unchanged (GIL released while asleep)."""
    time.sleep(SLEEP_SECONDS)
    return x


def spin(x: int, loops: int) -> int:
    """CPU-bound pure-Python integer arithmetic (``loops`` iterations), holds the GIL."""
    acc = x
    for i in range(loops):
        acc = (acc * 1103515245 + i) & 0xFFFFFFFF
    return acc


def calibrate_spin(seconds: float, trials: int = 5, probe: int = 20_000) -> int:
    """Loop count for which :func:`spin` takes about ``seconds`` (least disturbed trial)."""
    best = min(call_seconds(spin, 0, probe) for _ in range(trials))
    return max(1, round(probe * seconds / best))


def call_seconds(fn: Callable[..., Any], *args: Any) -> float:
    """Wall time of one call ``fn(*args)``."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def make_array(i: int) -> Any:
    """``np.full(PROCESS_ARRAY_LENGTH, float(i))``: an 8 MB float64 array (numpy is
    imported lazily so that this module stays importable without it)."""
    import numpy as np

    return np.full(PROCESS_ARRAY_LENGTH, float(i))


def make_array_in_place(i: int) -> Any:
    """:func:`make_array` written into ``pl.process.empty`` (the new tinypl only): the
    result lives in the worker's shared memory from the start and travels uncopied."""
    import tinypl as pl

    out = pl.process.empty(PROCESS_ARRAY_LENGTH)
    out.fill(float(i))
    return out


def write_to_ring(ring: Any, fn: Callable[[Any], Any], x: Any) -> Any:
    """tinypl 0.1.0 ``SharedMemoryRingBuffer`` pattern, worker side: ``ring.write(fn(x))``."""
    return ring.write(fn(x))


class FunctionDataset:
    """Map-style dataset ``[fn(0), ..., fn(n - 1)]`` for ``torch.utils.data.DataLoader``
    (duck-typed: a ``Dataset`` subclass is not needed, and torch is not imported here)."""

    def __init__(self, fn: Callable[[int], Any], n: int) -> None:
        self.fn = fn
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return self.fn(index)


def process_function(name: str, loops: int | None = None) -> Callable[[Any], Any]:
    """The picklable stage function of a ``process`` workload, by name."""
    if name == "spin":
        if not loops:
            raise ValueError("spin needs a loop count")
        return functools.partial(spin, loops=int(loops))
    if name == "inc":
        return inc
    if name == "array":
        return make_array
    raise ValueError(f"unknown process function {name!r}")


# --------------------------------------------------------------------------- consumers
# The consumer side of the ``process`` suite, identical for every peer: it returns a
# small JSON-ready dict (items, checksum, times of the first and last result, capped)
# and stops ``cap`` seconds after ``t0`` (the start of the run), but never before
# MIN_CONSUME seconds after the first result (checked every 64 items; arrays: every
# item): some peers do a lot of work before their first result
# (ProcessPoolExecutor.map submits every item up front).

MIN_CONSUME = 0.5


def consume_values(iterable: Iterable[Any], t0: float, cap: float | None = None) -> dict[str, Any]:
    """Sum numeric results."""
    perf_counter = time.perf_counter
    it = iter(iterable)
    count, total, first, capped = 0, 0, None, False
    for x in it:
        first = perf_counter() - t0
        total, count = x, 1
        break
    deadline = None if not cap or first is None else t0 + max(cap, first + MIN_CONSUME)
    mark = (count, first)
    for x in it:
        total += x
        count += 1
        if not count & 63:
            now = perf_counter()
            mark = (count, now - t0)
            if deadline is not None and now > deadline:
                capped = True
                break
    return _stats(count, total, 0, first, mark, capped=capped)


def consume_arrays(
    iterable: Iterable[Any],
    t0: float,
    cap: float | None = None,
    read: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Touch every 4 KiB page of each array (``a[::PAGE_STRIDE].sum()``) and check it."""
    perf_counter = time.perf_counter
    deadline = None
    count, total, bad, first, capped = 0, 0.0, 0, None, False
    mark: tuple[int, float | None] = (0, None)
    for received in iterable:
        a = received if read is None else read(received)
        del received
        now = perf_counter()
        if first is None:
            first = now - t0
            deadline = t0 + max(cap, first + MIN_CONSUME) if cap else None
        view = a[::PAGE_STRIDE]
        touched = float(view.sum())
        value = float(a[0])
        if len(a) != PROCESS_ARRAY_LENGTH or touched != value * len(view):
            bad += 1
        total += value
        count += 1
        mark = (count, now - t0)
        del a, view
        if deadline is not None and perf_counter() > deadline:
            capped = True
            break
    return _stats(count, total, bad, first, mark, capped=capped)


def _stats(
    count: int,
    total: float,
    bad: int,
    first: float | None,
    mark: tuple[int, float | None],
    *,
    capped: bool,
) -> dict[str, Any]:
    # Seconds from the start of the run: first_s to the first result, mark_s to result
    # number mark_items (the last one, or within the last 64), before any shutdown.
    return {
        "items": count,
        "checksum": total,
        "bad": bad,
        "first_s": first,
        "mark_items": mark[0],
        "mark_s": mark[1],
        "capped": capped,
    }


def consume(
    kind: str,
    iterable: Iterable[Any],
    t0: float,
    cap: float | None = None,
    read: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """:func:`consume_arrays` for ``kind == "array"``, else :func:`consume_values`."""
    if kind == "array":
        return consume_arrays(iterable, t0, cap, read)
    return consume_values(iterable, t0, cap)


def make_stats_check(n: int, expected_checksum: float | None) -> Callable[[Any], str | None]:
    """Check a consumer result: content of every array, and for complete (not capped)
    runs the item count and checksum."""

    def check(stats: Any) -> str | None:
        if not isinstance(stats, dict):
            return f"result is {type(stats).__name__}, expected consumer stats"
        if stats["bad"]:
            return f"{stats['bad']} arrays with wrong content"
        if stats["capped"]:
            return None
        if stats["items"] != n:
            return f"{stats['items']} items (expected {n})"
        if expected_checksum is not None and stats["checksum"] != expected_checksum:
            return f"wrong checksum {stats['checksum']} (expected {expected_checksum})"
        return None

    return check


def expected_process_checksum(name: str, n: int) -> float | None:
    """Checksum of a complete run, where it is cheap to compute (not for ``spin``)."""
    if name == "inc":
        return sum(range(1, n + 1))
    if name == "array":
        return float(sum(range(n)))
    return None


# --------------------------------------------------------------------------- expected results


def expected_sync(n: int) -> list[int]:
    """Reference output of the sync chain, computed with builtins."""
    return list(map(inc, filter(not_multiple_of_3, map(double, range(n)))))


def make_sync_check(n: int) -> Callable[[Any], str | None]:
    """Check that a sync-chain result equals the builtins result (order included)."""
    expected = expected_sync(n)

    def check(result: Any) -> str | None:
        if not isinstance(result, list):
            return f"result is {type(result).__name__}, expected list"
        if result != expected:
            return f"wrong result: len={len(result)} (expected {len(expected)})"
        return None

    return check


def make_multiset_check(n: int) -> Callable[[Any], str | None]:
    """Check that a thread-stage result is a permutation of ``range(n)``.

    Thread stages may legitimately reorder items, so only the multiset is compared.
    """

    def check(result: Any) -> str | None:
        if not isinstance(result, list):
            return f"result is {type(result).__name__}, expected list"
        if len(result) != n:
            return f"wrong length {len(result)} (expected {n})"
        if sorted(result) != list(range(n)):
            return "wrong items (not a permutation of the input)"
        return None

    return check


# --------------------------------------------------------------------------- module-level cases
# These builders are used for BOTH the new tinypl (in-process) and tinypl 0.1.0
# (subprocess): keep them to the API subset the two versions share.


def tinypl_sync_module_level(pl: Any, n: int) -> Callable[[], list[int]]:
    """``list(pl.map(pl.filter(pl.map(range(n), f), g), h))``."""

    def run() -> list[int]:
        return list(pl.map(pl.filter(pl.map(range(n), double), not_multiple_of_3), inc))

    return run


def tinypl_thread_module_level(
    pl: Any, n: int, fn: Callable[[Any], Any], workers: int
) -> Callable[[], list[Any]]:
    """``list(pl.thread.map(range(n), fn, workers=workers))``."""

    def run() -> list[Any]:
        return list(pl.thread.map(range(n), fn, workers=workers))

    return run


class LoggedRun:
    """A run function that also keeps the consumer stats of every run (warm-up first)."""

    def __init__(self, run: Callable[[], dict[str, Any]]) -> None:
        self._run = run
        self.log: list[dict[str, Any]] = []

    def __call__(self) -> dict[str, Any]:
        stats = self._run()
        self.log.append(stats)
        return stats


def tinypl_process_module_level(
    pl: Any,
    n: int,
    fn: Callable[[Any], Any],
    workers: int,
    *,
    kind: str,
    cap: float | None,
    read: Callable[[Any], Any] | None = None,
) -> LoggedRun:
    """``pl.process.map(range(n), fn, workers=workers)`` consumed by :func:`consume`.

    A capped run closes the stage (``close()`` in the new tinypl, ``stop()`` in 0.1.0).
    """

    def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        stage = pl.process.map(range(n), fn, workers=workers)
        stats = consume(kind, stage, t0, cap, read)
        if stats["capped"]:
            stop = getattr(stage, "close", None) or getattr(stage, "stop", None)
            if stop is not None:
                stop()
        return stats

    return LoggedRun(run)


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "identity": identity,
    "sleep_1ms": sleep_1ms,
}
"""Functions addressable by name across the subprocess boundary."""
