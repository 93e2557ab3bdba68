"""Tests for tinypl._shm._sweep: what killed processes leave in /dev/shm gets removed."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Any

import numpy as np
import pytest
from shm_helpers import assert_same, leftover_segments, pool_worker, shm_listing

from tinypl._shm import ShmPool, cleanup_orphans, loads


@pytest.mark.timeout(60)
def test_cleanup_orphans_after_killed_worker() -> None:
    ctx: Any = mp.get_context("fork")
    before = shm_listing()
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=pool_worker, args=(send, 3, "hold"))
    proc.start()
    messages = [recv.recv_bytes() for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    orphans = leftover_segments(before)
    assert orphans  # never loaded: nobody attached (and unlinked) the names yet
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as live:
        pending = live.dumps(np.ones(100_000))
        live_segments = leftover_segments(before) - orphans
        assert len(live_segments) == 1
        assert cleanup_orphans(pids=[os.getpid()]) == []  # live writer: untouched
        assert sorted(cleanup_orphans(pids=[proc.pid])) == sorted(orphans)
        assert leftover_segments(before) == live_segments
        with pytest.raises(ValueError, match="does not exist"):
            loads(messages[0])  # documented: too late for pending messages
        assert_same(np.ones(100_000), loads(pending))
    assert not leftover_segments(before)

