"""Tests for tinypl._shm._pool and _pool_reader: the result transport of process stages."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import multiprocessing as mp
import os
import pickle
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shm_helpers import (
    ARRAYS,
    START_METHODS,
    Custom,
    assert_same,
    leftover_segments,
    nested_example,
    pool_worker,
    shm_listing,
)

from tinypl._shm import ShmPool, _pool, discard, loads, trim_cache


@pytest.fixture
def pool() -> Any:
    with ShmPool(64 << 20, min_buffer=0, reader_pid=os.getpid()) as p:
        yield p


@pytest.mark.parametrize("key", list(ARRAYS))
def test_pool_roundtrip_arrays(pool: ShmPool, key: str) -> None:
    arr = ARRAYS[key]
    out = loads(pool.dumps(arr))
    assert_same(arr, out)
    del out
    gc.collect()
    assert pool.stats()["regions_in_use"] == 0


def test_pool_nested_and_pickled_objects(pool: ShmPool) -> None:
    obj = nested_example()
    assert_same(obj, loads(pool.dumps(obj)))
    out = loads(pool.dumps({"c": Custom(5), "a": np.arange(100_000)}))
    assert out["c"] == Custom(5)
    assert_same(np.arange(100_000), out["a"])


def test_pool_views_are_zero_copy_and_returned_after_del() -> None:
    with ShmPool(64 << 20, reader_pid=os.getpid()) as pool:
        arr = np.random.default_rng(1).standard_normal((1024, 1024))  # 8 MiB
        message = pool.dumps({"x": arr, "small": np.arange(3)})
        assert len(message) < 1024
        out = loads(message)
        x = out["x"]
        assert_same(arr, x)
        assert not x.flags.owndata
        assert x.flags.writeable
        assert x.ctypes.data % 64 == 0
        stats = pool.stats()
        assert stats["segments"] == 1
        assert stats["regions_in_use"] == 1
        assert stats["bytes_in_use"] >= arr.nbytes

        view = x[10:20, ::2]  # a view of the view keeps the region alive
        del out, x
        gc.collect()
        assert pool.stats()["regions_in_use"] == 1
        assert_same(arr[10:20, ::2], view)
        del view
        gc.collect()
        assert pool.stats()["regions_in_use"] == 0

        # the region is reused: no growth, same memory
        for _ in range(5):
            y = loads(pool.dumps(arr * 2))
            assert_same(arr * 2, y)
            del y
        stats = pool.stats()
        assert stats["segments"] == 1
        assert stats["regions"] == 1
        assert stats["regions_in_use"] == 0


def test_pool_small_buffers_inline() -> None:
    with ShmPool(1 << 20, min_buffer=4096, reader_pid=os.getpid()) as pool:
        message = pool.dumps([np.arange(10), b"bytes", "str"])
        assert pool.stats()["segments"] == 0
        assert_same([np.arange(10), b"bytes", "str"], loads(message))


def test_pool_views_valid_after_close_and_unlink() -> None:
    before = shm_listing()
    pool = ShmPool(64 << 20, min_buffer=0, reader_pid=os.getpid())
    a = loads(pool.dumps(np.arange(1_000_000)))
    pending = pool.dumps(np.arange(2_000_000))  # not loaded before close()
    pool.close()
    pool.close()
    assert pool.closed
    with pytest.raises(ValueError, match="closed"):
        pool.dumps(1)
    assert_same(np.arange(1_000_000), a)
    b = loads(pending)  # still loadable after the writer closed
    assert_same(np.arange(2_000_000), b)
    assert not leftover_segments(before)  # all names unlinked; the views keep the pages
    a += 1
    assert_same(np.arange(1, 1_000_001), a)
    del a, b
    gc.collect()
    # The last region back from a closed pool unmaps its segment at once: no mapping
    # and no descriptor (an mmap keeps one) outlive the arrays, with no trim_cache().
    assert not _open_pool_fds()
    assert "tinypl_p_" not in Path("/proc/self/maps").read_text()
    assert trim_cache() == 0
    assert not leftover_segments(before)


def _open_pool_fds() -> list[str]:
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            links.append(os.readlink(fd))
    return [link for link in links if "/dev/shm/tinypl_p_" in link]


def test_pool_growth_and_inline_fallback_when_full() -> None:
    with ShmPool(6 << 20, min_buffer=0, max_wait=0.01, reader_pid=os.getpid()) as pool:
        held = [
            loads(pool.dumps(np.full(1 << 17, i, dtype=np.float64))) for i in range(8)
        ]  # 1 MiB each
        stats = pool.stats()
        assert stats["allocated"] <= 6 << 20
        assert stats["inline_fallbacks"] >= 2
        for i, arr in enumerate(held):
            assert_same(np.full(1 << 17, i, dtype=np.float64), arr)
        # larger than the whole pool: inline, no waiting
        t0 = time.monotonic()
        assert_same(np.zeros(7 << 17), loads(pool.dumps(np.zeros(7 << 17))))
        assert time.monotonic() - t0 < 1
        del held, arr
        gc.collect()
        assert pool.stats()["regions_in_use"] == 0
        # after the reader let go, space is reused (coalescing 1 MiB regions)
        fallbacks = pool.stats()["inline_fallbacks"]
        big = loads(pool.dumps(np.ones(3 << 17)))  # 3 MiB
        assert pool.stats()["inline_fallbacks"] == fallbacks
        assert pool.stats()["allocated"] <= 6 << 20
        assert_same(np.ones(3 << 17), big)


def test_pool_grows_with_segments() -> None:
    with ShmPool(256 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        held = [loads(pool.dumps(np.ones(1 << 20))) for _ in range(8)]  # 8 MiB each
        stats = pool.stats()
        assert stats["segments"] >= 2
        assert stats["inline_fallbacks"] == 0
        assert stats["regions_in_use"] == 8
        del held
        gc.collect()
        assert pool.stats()["regions_in_use"] == 0


def test_pool_discard() -> None:
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        message = pool.dumps([np.ones(1000), np.zeros(1000)])
        assert pool.stats()["regions_in_use"] == 2
        discard(message)
        assert pool.stats()["regions_in_use"] == 0


def test_pool_message_loaded_twice_or_after_discard() -> None:
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        message = pool.dumps(np.ones(1000))
        view = loads(message)
        with pytest.raises(ValueError, match="already loaded or discarded"):
            loads(message)  # while the first result is alive
        with pytest.raises(ValueError, match="already loaded or discarded"):
            discard(message)
        del view
        gc.collect()
        with pytest.raises(ValueError, match="already loaded or discarded"):
            loads(message)  # after it was released
        message = pool.dumps(np.ones(1000))
        discard(message)
        with pytest.raises(ValueError, match="already loaded or discarded"):
            loads(message)
        assert pool.stats()["regions_in_use"] == 0


def _drop_inherited_view(holder: list[Any], conn: Any) -> None:
    holder.clear()  # the inherited view dies in the child ...
    gc.collect()
    conn.send("dropped")


@pytest.mark.timeout(60)
def test_pool_forked_child_dropping_views_does_not_free_regions() -> None:
    ctx: Any = mp.get_context("fork")
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        holder = [loads(pool.dumps(np.arange(100_000)))]
        recv, send = ctx.Pipe()
        proc = ctx.Process(target=_drop_inherited_view, args=(holder, send))
        proc.start()
        assert recv.recv() == "dropped"
        proc.join(30)
        # ... but the parent still uses it: the region must stay in use
        assert pool.stats()["regions_in_use"] == 1
        other = loads(pool.dumps(np.zeros(100_000, dtype=np.int64)))
        assert_same(np.arange(100_000), holder[0])
        del holder, other
        gc.collect()
        assert pool.stats()["regions_in_use"] == 0


def test_pool_failed_dumps_returns_regions() -> None:
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            pool.dumps([np.ones(1000), lambda: 0])
        assert pool.stats()["regions_in_use"] == 0


def test_pool_not_picklable_and_validation() -> None:
    with ShmPool(1 << 20) as pool:
        with pytest.raises(TypeError, match="not picklable"):
            pickle.dumps(pool)
        assert "ShmPool" in repr(pool)
        assert pool.capacity == 1 << 20
        assert pool.min_buffer == 64 * 1024
    with pytest.raises(ValueError, match="capacity"):
        ShmPool(0)
    with pytest.raises(ValueError, match="min_buffer"):
        ShmPool(1 << 20, min_buffer=-1)
    with pytest.raises(ValueError, match="not a ShmPool message"):
        loads(b"garbage!garbage!")


def _forked_dumps(pool: ShmPool, conn: Any) -> None:
    try:
        pool.dumps(np.ones(10))
    except RuntimeError as exc:
        conn.send(str(exc))
    else:  # pragma: no cover
        conn.send("no error")


@pytest.mark.timeout(60)
def test_pool_only_usable_by_its_process() -> None:
    ctx: Any = mp.get_context("fork")
    with ShmPool(1 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
        recv, send = ctx.Pipe()
        proc = ctx.Process(target=_forked_dumps, args=(pool, send))
        proc.start()
        assert "process that created it" in recv.recv()
        proc.join(30)
        # the child's exit did not close or unlink the parent's pool
        assert_same(np.arange(5), loads(pool.dumps(np.arange(5))))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("mode", ["close", "exit", "kill"])
def test_pool_worker_to_parent(method: str, mode: str) -> None:
    """Messages stay loadable after the worker closed its pool, exited or was killed."""
    ctx: Any = mp.get_context(method)
    before = shm_listing()
    recv, send = ctx.Pipe()
    n = 6
    proc = ctx.Process(target=pool_worker, args=(send, n, "hold" if mode == "kill" else mode))
    proc.start()
    messages = [recv.recv_bytes() for _ in range(n)]
    if mode == "kill":
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == (-signal.SIGKILL if mode == "kill" else 0)

    outs = [loads(m) for m in messages]
    for i, out in enumerate(outs):
        assert out["i"] == i
        assert_same(np.full((256, 1024), i, dtype=np.float64), out["a"])
        assert not out["a"].flags.owndata
    assert not leftover_segments(before)  # attached and unlinked by the reader
    total = sum(float(out["a"].sum()) for out in outs)
    assert total == 256 * 1024 * sum(range(n))
    del outs, out
    gc.collect()
    # A pool its writer closed is unmapped with its last array; a killed writer's is
    # found by the sweep.
    if mode == "kill":
        assert trim_cache() >= 1
    else:
        assert trim_cache() == 0
    assert not _open_pool_fds()



def _pool_stream(conn: Any, n: int) -> None:
    pool = ShmPool(32 << 20)
    arr = np.arange(1 << 20, dtype=np.float64)
    for i in range(n):
        arr[0] = i
        conn.send_bytes(pool.dumps(arr))
    conn.send(pool.stats())
    pool.close()


@pytest.mark.timeout(60)
def test_pool_steady_state_reuses_regions() -> None:
    ctx: Any = mp.get_context("fork")
    recv, send = ctx.Pipe()
    n = 50
    proc = ctx.Process(target=_pool_stream, args=(send, n))
    proc.start()
    for i in range(n):
        out = loads(recv.recv_bytes())
        assert out[0] == i
        assert out[-1] == (1 << 20) - 1
        del out
    stats = recv.recv()
    proc.join(30)
    assert stats["inline_fallbacks"] == 0
    assert stats["regions"] <= 4  # pipelining needs a few regions, not n


def test_full_dev_shm_warns_once_per_pool(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #10: results stay correct through the pipe, and the log says so once."""
    attempts: list[int] = []

    def no_space(size: int, kind: str, reader: Any = None) -> Any:
        attempts.append(size)
        raise OSError(errno.ENOSPC, "cannot allocate shared memory (injected)")

    monkeypatch.setattr(_pool, "create_segment", no_space)
    monkeypatch.setattr(_pool, "GROW_RETRY_INTERVAL", 0.0)  # retry at every buffer
    caplog.set_level(logging.DEBUG, logger="tinypl")
    for _ in range(2):
        with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as pool:
            for i in range(10):
                assert_same(np.full(1000, i), loads(pool.dumps(np.full(1000, i))))
            assert pool.stats()["inline_fallbacks"] == 10
            assert pool.stats()["segments"] == 0
    assert len(attempts) == 20  # every buffer tried again ...
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # ... but each pool warned once
    assert "injected" in warnings[0].getMessage()
