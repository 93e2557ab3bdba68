"""Shared test configuration: hypothesis profiles and a leak check for worker threads."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from executors import _pools, dask_client, engine, loky_executor  # noqa: F401  (engines)
from hypothesis import HealthCheck, settings
from threadwatch import leaked_threads, tinypl_threads

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


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no tinypl worker thread behind (after garbage collection)."""
    before = tinypl_threads()
    yield
    leaked = leaked_threads(before)
    assert not leaked, f"worker threads left running: {[t.name for t in leaked]}"
