"""Shared test configuration: hypothesis profiles and a leak check for worker threads."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# CI runs the deterministic profile; run `HYPOTHESIS_PROFILE=thorough pytest` locally.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def tinypl_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tinypl-")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no tinypl worker thread behind (after garbage collection)."""
    before = set(tinypl_threads())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        leaked = [t for t in tinypl_threads() if t not in before]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"worker threads left running: {[t.name for t in leaked]}"
