"""Helpers for tests that watch tinypl's worker threads come and go."""

from __future__ import annotations

import threading
import time

__all__ = ["seconds_until_gone", "tinypl_threads"]


def tinypl_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tinypl-")}


def seconds_until_gone(before: set[threading.Thread], limit: float = 5.0) -> float:
    """Seconds until no tinypl thread outside ``before`` is alive (``inf`` after ``limit``)."""
    start = time.monotonic()
    while True:
        if not (tinypl_threads() - before):
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            return float("inf")
        time.sleep(0.002)
