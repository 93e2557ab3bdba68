"""Shared test configuration: hypothesis profiles and a leak check for worker threads."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from executors import _pools, dask_client, engine, loky_executor  # noqa: F401  (engines)
from hypothesis import HealthCheck, settings
from threadwatch import leaked_threads, tinypl_threads

import tinypl.process as pl_process

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

# Warm worker reuse is off for the suite: its leak checks count every child process left
# after a test, and an idle warm worker is one by design. tests/test_warm.py turns reuse
# on for its own tests, checks what it must keep (reliability, seeds, init, shared
# memory) and stops the idle workers after each test.
pl_process.keep_warm(0)

# A shell starts background jobs (`cmd &` without job control, nohup) with SIGINT ignored,
# and Python then leaves it ignored, so no Ctrl-C test could see KeyboardInterrupt and
# every child would inherit the same blindness. Put back the handler an interactive run
# has; a Python handler resets to the default across exec, so children get theirs too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no tinypl worker thread behind (after garbage collection)."""
    before = tinypl_threads()
    yield
    leaked = leaked_threads(before)
    assert not leaked, f"worker threads left running: {[t.name for t in leaked]}"
