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

import time
from collections.abc import Callable
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


FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "identity": identity,
    "sleep_1ms": sleep_1ms,
}
"""Functions addressable by name across the subprocess boundary."""
