"""Tests for tinypl._shm._ring and _ring_blocks: the public SharedMemoryRingBuffer."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import cloudpickle
import numpy as np
import pytest
from shm_helpers import (
    ARRAYS,
    START_METHODS,
    Custom,
    assert_same,
    leftover_segments,
    nested_example,
    payload,
    segment_exists,
    shm_listing,
)

from tinypl._shm import (
    BufferClosedError,
    RingBufferRef,
    SharedMemoryRingBuffer,
    _segments,
    cleanup_orphans,
)

SHM_DIR = Path(_segments.SHM_DIR)

@pytest.fixture(scope="module")
def rb() -> Any:
    with SharedMemoryRingBuffer(16 << 20) as buffer:
        yield buffer


# --------------------------------------------------------------- ring buffer basics


@pytest.mark.parametrize("allow_pickle", [True, False])
@pytest.mark.parametrize("key", list(ARRAYS))
def test_ring_roundtrip_arrays(key: str, allow_pickle: bool) -> None:
    arr = ARRAYS[key]
    with SharedMemoryRingBuffer(8 << 20, allow_pickle=allow_pickle) as buffer:
        ref = buffer.write(arr)
        assert isinstance(ref, RingBufferRef)
        out = buffer.read(ref)
        assert_same(arr, out)
        assert buffer.bytes_in_use() == 0
        if arr.size:
            # a private copy, not a view on the shared segment
            assert not np.shares_memory(out, arr)


def test_ring_read_returns_private_writable_copy(rb: SharedMemoryRingBuffer) -> None:
    ref = rb.write(np.zeros(1000))
    out = rb.read(ref)
    assert out.flags.writeable
    ref2 = rb.write(np.ones(1000))  # reuses the same space
    out[:] = 7.0
    assert_same(rb.read(ref2), np.ones(1000))
    assert (out == 7.0).all()


def test_ring_nested_containers(rb: SharedMemoryRingBuffer) -> None:
    obj = nested_example()
    assert_same(obj, rb.read(rb.write(obj)))


def test_ring_nested_containers_without_pickle() -> None:
    with SharedMemoryRingBuffer(1 << 20, allow_pickle=False) as buffer:
        obj = nested_example()
        assert_same(obj, buffer.read(buffer.write(obj)))


def test_ring_arbitrary_objects_with_pickle(rb: SharedMemoryRingBuffer) -> None:
    obj = {"custom": Custom(3), "set": {1, 2}, "arr": np.arange(3), "big": list(range(10_000))}
    out = rb.read(rb.write(obj))
    assert out["custom"] == Custom(3)
    assert out["set"] == {1, 2}
    assert out["big"] == list(range(10_000))
    assert_same(obj["arr"], out["arr"])


@pytest.mark.parametrize(
    ("obj", "type_name"),
    [
        (Custom(1), "Custom"),
        ([1, (2, {"k": Custom(2)})], "Custom"),
        ({1, 2}, "set"),
        (np.array([object(), 1], dtype=object), "object"),
        (np.ma.masked_array([1, 2]), "MaskedArray"),
        ({"f": lambda: 0}, "function"),
    ],
)
def test_ring_allow_pickle_false_rejects(obj: object, type_name: str) -> None:
    with SharedMemoryRingBuffer(1 << 20, allow_pickle=False) as buffer:
        with pytest.raises(TypeError, match=type_name):
            buffer.write(obj)
        assert buffer.bytes_in_use() == 0


def test_ring_too_large_raises_immediately() -> None:
    with SharedMemoryRingBuffer(1 << 20) as buffer:
        t0 = time.monotonic()
        with pytest.raises(ValueError, match=r"needs \d+ bytes.*capacity is 1048576 bytes"):
            buffer.write(np.zeros(1 << 20, dtype=np.uint8))
        assert time.monotonic() - t0 < 1
        assert buffer.bytes_in_use() == 0
        # the largest object that fits still works, even after wrapping around
        buffer.read(buffer.write(np.zeros(1000)))
        big = np.zeros((1 << 20) - 4096, dtype=np.uint8)
        assert_same(big, buffer.read(buffer.write(big)))


def test_ring_double_read_and_discard(rb: SharedMemoryRingBuffer) -> None:
    ref = rb.write(np.arange(10))
    rb.read(ref)
    with pytest.raises(ValueError, match="already been read"):
        rb.read(ref)
    ref2 = rb.write("x")
    rb.discard(ref2)
    with pytest.raises(ValueError, match="already been read"):
        rb.read(ref2)
    with pytest.raises(ValueError, match="already been read"):
        rb.discard(ref2)


def test_ring_stale_reference_after_space_reuse() -> None:
    with SharedMemoryRingBuffer(4096) as buffer:  # room for one block only
        ref = buffer.write(b"a" * 3000)
        assert buffer.read(ref) == b"a" * 3000
        ref2 = buffer.write(b"b" * 3000)
        assert ref2.position == ref.position  # same space, new token
        with pytest.raises(ValueError, match="already been read"):
            buffer.read(ref)
        bogus = ref2._replace(position=ref2.position + 64)  # inside a block
        with pytest.raises(ValueError, match="already been read"):
            buffer.read(bogus)
        assert buffer.read(ref2) == b"b" * 3000


@pytest.mark.timeout(30)
def test_ring_unread_reference_does_not_stall_writers() -> None:
    # timeout: fail instead of hanging if space were only reclaimed in FIFO order
    with SharedMemoryRingBuffer(1 << 20, timeout=5) as buffer:
        forgotten = buffer.write(np.zeros(100_000, dtype=np.uint8))  # never read (till the end)
        for i in range(50):  # 50 x 400 KB through the remaining ~200 KB + wrap-arounds
            ref = buffer.write(np.full(50_000, i, dtype=np.float64))
            assert_same(np.full(50_000, i, dtype=np.float64), buffer.read(ref))
        # out-of-order reads free space at once
        refs = [buffer.write(np.full(20_000, i)) for i in range(5)]
        for i in (3, 1, 4, 0, 2):
            assert_same(np.full(20_000, i), buffer.read(refs[i]))
        assert buffer.bytes_in_use() == forgotten.nbytes
        buffer.discard(forgotten)
        assert buffer.bytes_in_use() == 0
        # an empty buffer has room for the largest object again (free blocks merge)
        big = np.zeros((1 << 20) - 4096, dtype=np.uint8)
        assert_same(big, buffer.read(buffer.write(big)))


def test_ring_foreign_reference(rb: SharedMemoryRingBuffer) -> None:
    with SharedMemoryRingBuffer(1 << 16) as other:
        ref = other.write(1)
        with pytest.raises(ValueError, match="belongs to buffer"):
            rb.read(ref)
        assert other.read(ref) == 1
    with pytest.raises(TypeError, match="RingBufferRef"):
        rb.read(("not", "a", "ref", 1))  # type: ignore[arg-type]


def test_ring_reference_is_small_and_picklable(rb: SharedMemoryRingBuffer) -> None:
    ref = rb.write(np.zeros((1024, 1024)))
    data = pickle.dumps(ref)
    assert len(data) < 200
    assert pickle.loads(data) == ref
    rb.read(pickle.loads(data))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": 0}, ValueError, "size must be >= 1, got 0"),
        ({"size": -1}, ValueError, "size must be >= 1"),
        ({"size": 1.5}, TypeError, "size must be an int, got float"),
        ({"size": True}, TypeError, "size must be an int, got bool"),
        ({"size": "1024"}, TypeError, "size must be an int, got str"),
        ({"timeout": "x"}, TypeError, "timeout must be a number, got str"),
        ({"timeout": True}, TypeError, "timeout must be a number, got bool"),
        ({"timeout": -1}, ValueError, "timeout must be None or >= 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be None or >= 0"),
        ({"allow_pickle": "no"}, TypeError, "allow_pickle must be a bool, got str"),
        ({"allow_pickle": 0}, TypeError, "allow_pickle must be a bool, got int"),
        ({"allow_pickle": None}, TypeError, "allow_pickle must be a bool, got NoneType"),
    ],
)
def test_ring_constructor_validation(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Every argument is checked before a segment exists, naming the argument."""
    before = shm_listing()
    with pytest.raises(error, match=f"^SharedMemoryRingBuffer: {message}"):
        SharedMemoryRingBuffer(**{"size": 1024, **kwargs})
    assert not leftover_segments(before)


def test_ring_accepted_arguments() -> None:
    with SharedMemoryRingBuffer(100, allow_pickle=False, timeout=0) as rb:
        assert (rb.capacity, rb.allow_pickle, rb.timeout) == (128, False, 0.0)
    with SharedMemoryRingBuffer(np.int64(64), timeout=np.float32(0.5)) as rb:
        assert (rb.capacity, rb.allow_pickle, rb.timeout) == (64, True, 0.5)


def test_ring_close_idempotent_and_unlinks() -> None:
    before = shm_listing()
    buffer = SharedMemoryRingBuffer(1 << 20)
    name = buffer.name
    assert segment_exists(name)
    assert (SHM_DIR / name).stat().st_mode & 0o777 == 0o600
    assert name in repr(buffer)
    buffer.close()
    buffer.close()
    assert buffer.closed
    assert not segment_exists(name)
    assert "closed" in repr(buffer)
    with pytest.raises(ValueError, match="closed"):
        buffer.write(1)
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(buffer)
    assert not leftover_segments(before)


def test_ring_unlinked_on_garbage_collection() -> None:
    before = shm_listing()
    buffer = SharedMemoryRingBuffer(1 << 20)
    name = buffer.name
    buffer.read(buffer.write(np.ones(10)))
    del buffer
    gc.collect()
    assert not segment_exists(name)
    assert not leftover_segments(before)


def test_ring_pickle_in_same_process_shares_segment(rb: SharedMemoryRingBuffer) -> None:
    copy = pickle.loads(pickle.dumps(rb))
    assert copy.name == rb.name
    assert copy.capacity == rb.capacity
    ref = copy.write(np.arange(4))
    assert_same(np.arange(4), rb.read(ref))
    copy.close()  # an attached handle only detaches
    assert not rb.closed
    assert segment_exists(rb.name)


@pytest.fixture
def writer_waits(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set as soon as some waiter in this process sleeps for free space."""
    event = threading.Event()
    sleep = _segments.Backoff.sleep

    def observed(self: _segments.Backoff) -> None:
        event.set()
        sleep(self)

    monkeypatch.setattr(_segments.Backoff, "sleep", observed)
    return event


@pytest.mark.timeout(30)
def test_ring_full_buffer_blocks_until_reader_frees(writer_waits: threading.Event) -> None:
    with SharedMemoryRingBuffer(1 << 20) as buffer:
        first = buffer.write(np.zeros(700_000, dtype=np.uint8))
        got: list[Any] = []

        def reader() -> None:
            assert writer_waits.wait(20)  # the writer found the buffer full
            got.append(buffer.read(first))

        thread = threading.Thread(target=reader)
        thread.start()
        second = buffer.write(np.ones(700_000, dtype=np.uint8))  # blocks until `first` is read
        assert got, "the write returned before the reader freed space"
        thread.join(20)
        assert not thread.is_alive()
        assert_same(np.ones(700_000, dtype=np.uint8), buffer.read(second))


@pytest.mark.timeout(30)
def test_ring_timeout() -> None:
    with SharedMemoryRingBuffer(1 << 20, timeout=0.2) as buffer:
        assert buffer.timeout == 0.2
        ref = buffer.write(np.zeros(700_000, dtype=np.uint8))
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no space"):
            buffer.write(np.zeros(700_000, dtype=np.uint8))
        assert 0.15 <= time.monotonic() - t0 < 5
        buffer.read(ref)
        assert buffer.bytes_in_use() == 0
        # the failed write left nothing behind
        buffer.read(buffer.write(np.zeros(1_000_000, dtype=np.uint8)))


@pytest.mark.timeout(60)
def test_ring_threads_stress() -> None:
    with SharedMemoryRingBuffer(256 << 10) as buffer:
        n_writers, per_writer = 4, 60
        refs: list[tuple[int, int, RingBufferRef]] = []
        cond = threading.Condition()
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            try:
                for i in range(per_writer):
                    ref = buffer.write(payload(w, i, max_size=4000))
                    with cond:
                        refs.append((w, i, ref))
                        cond.notify()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
        for t in threads:
            t.start()
        for _ in range(n_writers * per_writer):
            with cond:
                cond.wait_for(lambda: bool(refs) or bool(errors), timeout=30)
                assert not errors
                # read in a scrambled order
                w, i, ref = refs.pop(len(refs) // 2)
            assert_same(payload(w, i, max_size=4000), buffer.read(ref))
        for t in threads:
            t.join()
        assert not errors
        assert buffer.bytes_in_use() == 0


# ------------------------------------------------------- ring buffer across processes


def _write_range(buffer: SharedMemoryRingBuffer, start: int, n: int) -> list[RingBufferRef]:
    return [
        buffer.write({"i": i, "a": np.full((32, 16), i, dtype=np.float32)})
        for i in range(start, start + n)
    ]


def _read_sum(buffer: SharedMemoryRingBuffer, ref: RingBufferRef) -> float:
    obj = buffer.read(ref)
    return float(obj["a"].sum()) + obj["i"]


def _run_cloudpickled(payload_bytes: bytes, arg: int) -> Any:
    return cloudpickle.loads(payload_bytes)(arg)


def _process_writer(buffer: SharedMemoryRingBuffer, conn: Any, start: int, n: int) -> None:
    conn.send(_write_range(buffer, start, n))
    conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_ring_worker_processes(method: str) -> None:
    ctx: Any = mp.get_context(method)
    before = shm_listing()
    with SharedMemoryRingBuffer(4 << 20) as buffer:
        # 1. buffer passed as an argument to a Process
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_process_writer, args=(buffer, send, 0, 5))
        proc.start()
        send.close()
        refs = recv.recv()
        proc.join(30)
        assert proc.exitcode == 0
        for i, ref in enumerate(refs):
            obj = buffer.read(ref)
            assert obj["i"] == i
            assert_same(np.full((32, 16), i, dtype=np.float32), obj["a"])

        with ctx.Pool(2) as pool:
            # 2. buffer passed as an argument to pool tasks; read back in the parent
            refs = pool.starmap(_write_range, [(buffer, 10 * k, 3) for k in range(4)])
            for k, chunk in enumerate(refs):
                for j, ref in enumerate(chunk):
                    assert buffer.read(ref)["i"] == 10 * k + j

            # 3. buffer captured in a cloudpickled closure (README usage)
            def stage1(i: int) -> RingBufferRef:
                return buffer.write(np.full((64, 64, 2), i, dtype=np.float64))

            blob = cloudpickle.dumps(stage1)
            refs = pool.starmap(_run_cloudpickled, [(blob, i) for i in range(6)])
            for i, ref in enumerate(refs):
                assert_same(np.full((64, 64, 2), i, dtype=np.float64), buffer.read(ref))

            # 4. read in a worker process (stage2 running elsewhere)
            refs = _write_range(buffer, 100, 6)
            sums = pool.starmap(_read_sum, [(buffer, ref) for ref in refs])
            assert sums == [100 + i + 512.0 * (100 + i) for i in range(6)]
            with pytest.raises(ValueError, match="already been read"):
                buffer.read(refs[0])
        assert buffer.bytes_in_use() == 0
    assert not leftover_segments(before)


def _concurrent_writer(buffer: SharedMemoryRingBuffer, queue: Any, worker: int, n: int) -> None:
    for i in range(n):
        queue.put((worker, i, buffer.write(payload(worker, i))))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ring_concurrent_writer_processes(method: str) -> None:
    """Several processes write into a small buffer (forcing waits and wrap-around)
    while the parent reads concurrently."""
    ctx: Any = mp.get_context(method)
    with SharedMemoryRingBuffer(1 << 20) as buffer:
        queue = ctx.Queue()
        n_workers, per_worker = 3, 40
        procs = [
            ctx.Process(target=_concurrent_writer, args=(buffer, queue, w, per_worker))
            for w in range(n_workers)
        ]
        for p in procs:
            p.start()
        pending: list[tuple[int, int, RingBufferRef]] = []
        received = 0
        deadline = time.monotonic() + 45
        while received < n_workers * per_worker or pending:
            assert time.monotonic() < deadline
            try:
                pending.append(queue.get(timeout=0.02))
                received += 1
            except Empty:
                if pending:  # writers may be blocked on us: free the oldest block
                    w, i, ref = pending.pop(0)
                    assert_same(payload(w, i), buffer.read(ref))
                continue
            if len(pending) >= 3:  # otherwise read out of order (newer first)
                w, i, ref = pending.pop(1)
                assert_same(payload(w, i), buffer.read(ref))
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert buffer.bytes_in_use() == 0


def _creator(conn: Any, hold: bool) -> None:
    buffer = SharedMemoryRingBuffer(1 << 20)
    buffer.write(np.zeros(900_000, dtype=np.uint8))  # fill it, never read
    conn.send(buffer)
    conn.recv()  # hold: block until killed; otherwise: the parent attached, exit


def start_creator(method: str, hold: bool) -> tuple[Any, Any, SharedMemoryRingBuffer]:
    """A child process that created a full buffer; (process, pipe end, our handle)."""
    ctx: Any = mp.get_context(method)
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=_creator, args=(send, hold))
    proc.start()
    return proc, recv, recv.recv()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ring_writer_raises_when_creator_killed(
    method: str, writer_waits: threading.Event
) -> None:
    proc, _conn, buffer = start_creator(method, hold=True)
    name = buffer.name
    try:
        errors: list[BaseException] = []

        def blocked_writer() -> None:
            try:
                buffer.write(np.zeros(500_000, dtype=np.uint8))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=blocked_writer)
        thread.start()
        assert writer_waits.wait(20)
        assert thread.is_alive()  # waiting for space
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        thread.join(10)
        assert not thread.is_alive()
        assert len(errors) == 1
        assert isinstance(errors[0], BufferClosedError)
        assert "died" in str(errors[0])
    finally:
        buffer.close()
        # SIGKILL gave the creator no chance to clean up
        # Another sweep (a process stage starting elsewhere) may have removed it first.
        assert set(cleanup_orphans(pids=[proc.pid])) <= {name}
        assert not segment_exists(name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ring_creator_exit_closes_and_unlinks(method: str) -> None:
    proc, recv, buffer = start_creator(method, hold=False)
    name = buffer.name
    handle = pickle.dumps(buffer)
    recv.send("exit now")
    proc.join(30)
    assert proc.exitcode == 0
    assert not segment_exists(name)  # the exiting creator unlinked it
    with pytest.raises(BufferClosedError, match="closed by its creator"):
        buffer.write(np.zeros(500_000, dtype=np.uint8))
    assert buffer.closed
    buffer.close()
    with pytest.raises(BufferClosedError, match="no longer exists"):
        pickle.loads(handle)  # a handle pickled while the buffer existed


def _die_holding_block(buffer: SharedMemoryRingBuffer) -> None:
    core = buffer._core
    assert core is not None
    core.alloc(600_000, None)  # reserve space, then die mid-"write"
    os._exit(0)


@pytest.mark.timeout(60)
def test_ring_reclaims_block_of_dead_writer() -> None:
    ctx: Any = mp.get_context("fork")
    with SharedMemoryRingBuffer(1 << 20) as buffer:
        proc = ctx.Process(target=_die_holding_block, args=(buffer,))
        proc.start()
        proc.join(30)
        assert buffer.bytes_in_use() == 600_000
        ref = buffer.write(np.zeros(600_000, dtype=np.uint8))  # reclaims after ~0.1 s
        buffer.read(ref)
        assert buffer.bytes_in_use() == 0

