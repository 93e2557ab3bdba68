"""A worker process reuses the memory it frees: glibc's thresholds are raised there, so
that a cycle of many mid-sized arrays and one large result (a batch) stops faulting in
fresh pages every time (``_worker._reuse_freed_memory``)."""

from __future__ import annotations

import os
import sys

import pytest

import tinypl as pl
from tinypl._runtime import _worker

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="mallopt is glibc's",
)


def _batch_faults(rounds: int) -> int:
    """Page faults of the last ``rounds - 1`` of ``rounds`` loader-like batches: 32
    arrays of 588 KiB stacked into one 18 MiB result, all freed at once."""
    import resource

    import numpy as np

    faults = 0
    for round_ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        parts = [np.ones((224, 224, 3), np.float32) * 2 for _ in range(32)]
        batch = np.stack(parts)
        del parts, batch
        if round_:
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return faults


@glibc
@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_worker_reuses_freed_batches_instead_of_faulting_them_in(method: str) -> None:
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        pytest.skip("the user's MALLOC_* settings win (tested below)")
    (faults,) = pl.Pipe([5]).map(_batch_faults).process(1, start_method=method)
    # Untuned, glibc maps and zeroes every batch afresh: ~4,900 faults each, 19,600 here.
    assert faults < 1000


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_the_users_malloc_settings_win(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "131072")
    assert _worker._reuse_freed_memory() is False
