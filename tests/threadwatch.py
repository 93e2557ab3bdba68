"""Helpers for tests that watch tinypl's worker threads come and go.

Waiting is done by joining the threads (the OS tells us when they end), never by
sleeping in a loop.
"""

from __future__ import annotations

import gc
import threading
import time

__all__ = ["gone_within", "leaked_threads", "seconds_until_gone", "tinypl_threads"]


def tinypl_threads() -> set[threading.Thread]:
    """The live threads tinypl started (all are named ``tinypl-…``)."""
    return {t for t in threading.enumerate() if t.name.startswith("tinypl-")}


def leaked_threads(before: set[threading.Thread], limit: float = 2.0) -> list[threading.Thread]:
    """The tinypl threads not in ``before`` still alive after joining them for ``limit`` s.

    Garbage is collected first, so a run that was only dropped gets its chance to close.
    """
    deadline = time.monotonic() + limit
    while True:
        gc.collect()  # a dropped run closes when it is collected
        alive = tinypl_threads() - before
        if not alive or time.monotonic() >= deadline:
            return sorted(alive, key=lambda t: t.name)
        # Join in short slices, so garbage that frees a run late is still collected.
        next(iter(alive)).join(min(0.05, max(0.0, deadline - time.monotonic())))


def gone_within(before: set[threading.Thread], seconds: float) -> bool:
    """Whether every tinypl thread not in ``before`` ends within ``seconds``."""
    return not leaked_threads(before, seconds)


def seconds_until_gone(before: set[threading.Thread], limit: float = 5.0) -> float:
    """Seconds until no tinypl thread outside ``before`` is alive (``inf`` after ``limit``)."""
    start = time.monotonic()
    if leaked_threads(before, limit):
        return float("inf")
    return time.monotonic() - start
