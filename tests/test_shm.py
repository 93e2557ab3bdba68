"""Tests for tinypl._shm: SharedMemoryRingBuffer and the ShmPool transport."""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import cloudpickle
import numpy as np
import pytest

from tinypl import _shm
from tinypl._shm import (
    BufferClosedError,
    RingBufferRef,
    SharedMemoryRingBuffer,
    ShmPool,
    cleanup_orphans,
    discard,
    loads,
    trim_cache,
)

SHM_DIR = Path("/dev/shm")
START_METHODS = ["fork", "forkserver", "spawn"]
REPO_ROOT = Path(_shm.__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def shm_listing() -> set[str]:
    return {p.name for p in SHM_DIR.iterdir() if p.name.startswith("tinypl_")}


def _owner_pid(name: str) -> int:
    """Creator (ring buffer) or writer (pool) pid stored in a segment header, or 0."""
    try:
        head = (SHM_DIR / name).read_bytes()[:64]
    except OSError:
        return 0
    if head[:8] == b"TPLRING1":
        return int.from_bytes(head[40:48], "little")
    if head[:8] == b"TPLPOOL1":
        return int.from_bytes(head[8:16], "little")
    return 0


def leftover_segments(before: set[str]) -> set[str]:
    """Segments created since `before` that still exist, ignoring those owned by
    unrelated live processes (e.g. another test run sharing /dev/shm)."""
    return {
        name
        for name in shm_listing() - before
        if (pid := _owner_pid(name)) == os.getpid() or not _shm._pid_alive(pid)
    }


def segment_exists(name: str) -> bool:
    return (SHM_DIR / name).exists()


def assert_same(a: Any, b: Any) -> None:
    """Exact equality, including dtype, shape and raw bytes of arrays."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert type(b) is type(a)
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float)
        assert math.isnan(b)
    else:
        assert type(b) is type(a)
        assert a == b


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


STRUCTURED = np.dtype([("a", "<i4"), ("b", ">f8", (2,)), ("c", "S3")])
NESTED = np.dtype([("p", STRUCTURED), ("q", "<u2")])

ARRAYS: dict[str, np.ndarray] = {
    "int64-3d": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    "float64": np.linspace(-1, 1, 1000),
    "float32-fortran": np.asfortranarray(np.arange(30, dtype=np.float32).reshape(5, 6)),
    "float16": np.arange(10, dtype=np.float16),
    "longdouble": np.arange(5, dtype=np.longdouble) / 3,
    "complex128": np.arange(6) * (1 + 2j),
    "clongdouble": np.arange(3, dtype=np.clongdouble) * 1j,
    "bool": np.array([True, False, True]),
    "uint8": np.arange(256, dtype=np.uint8),
    "int8": np.arange(-5, 5, dtype=np.int8),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "big-endian": np.arange(7, dtype=">i4"),
    "unicode": np.array(["a", "bcd", "€uro"]),
    "bytes": np.array([b"x", b"yz"]),
    "datetime": np.array(["2024-01-01", "NaT"], dtype="M8[ns]"),
    "timedelta": np.arange(4).astype("m8[s]"),
    "structured": np.array([(1, (2.0, 3.0), b"abc"), (4, (5.0, 6.0), b"d")], dtype=STRUCTURED),
    "nested-structured": np.zeros(3, dtype=NESTED),
    "void": np.frombuffer(b"12345678" * 2, dtype="V8"),
    "0d": np.array(3.5),
    "0d-uint8": np.array(7, dtype=np.uint8),
    "empty-1d": np.empty(0),
    "empty-3d": np.empty((3, 0, 2), dtype=np.int16),
    "empty-structured": np.empty(0, dtype=STRUCTURED),
    "strided": np.arange(100.0).reshape(10, 10)[::2, 1::3],
    "transposed-3d": np.arange(60).reshape(3, 4, 5).transpose(2, 0, 1),
    "negative-stride": np.arange(20, dtype=np.int32)[::-1],
    "broadcast": np.broadcast_to(np.arange(3.0), (4, 3)),
    "strided-structured": np.zeros(10, dtype=STRUCTURED)[::3],
    "readonly": _readonly(np.arange(12.0).reshape(3, 4)),
    "large": np.random.default_rng(0).standard_normal((512, 768)),  # 3 MiB
}


def nested_example() -> dict[str, Any]:
    return {
        "arrays": [np.arange(5), (np.ones((2, 2)), np.zeros(0))],
        "meta": {"name": "x", "id": 3, "ratio": 0.5, "flag": True, "none": None, "c": 1j},
        "raw": b"\x00\x01",
        "scalar": np.float32(2.5),
        "tuple": (1, "two", [3.0, {"four": np.array([4])}]),
        5: "int key",
    }


class Custom:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


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


def test_ring_constructor_validation() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="size"):
            SharedMemoryRingBuffer(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        SharedMemoryRingBuffer(4096, timeout=-1)


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


@pytest.mark.timeout(30)
def test_ring_full_buffer_blocks_until_reader_frees() -> None:
    with SharedMemoryRingBuffer(1 << 20) as buffer:
        first = buffer.write(np.zeros(700_000, dtype=np.uint8))
        got: list[Any] = []

        def reader() -> None:
            time.sleep(0.3)
            got.append(buffer.read(first))

        thread = threading.Thread(target=reader)
        thread.start()
        t0 = time.monotonic()
        second = buffer.write(np.ones(700_000, dtype=np.uint8))  # blocks until `first` is read
        waited = time.monotonic() - t0
        thread.join()
        assert waited >= 0.25
        assert len(got) == 1
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


def payload(worker: int, i: int, max_size: int = 40_000) -> np.ndarray:
    rng = np.random.default_rng(worker * 100_003 + i)
    return rng.standard_normal(int(rng.integers(0, max_size)))


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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ring_writer_raises_when_creator_killed(method: str) -> None:
    ctx: Any = mp.get_context(method)
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=_creator, args=(send, True))
    proc.start()
    buffer = recv.recv()
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
        time.sleep(0.3)
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
        assert cleanup_orphans(pids=[proc.pid]) == [name]
        assert not segment_exists(name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ring_creator_exit_closes_and_unlinks(method: str) -> None:
    ctx: Any = mp.get_context(method)
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=_creator, args=(send, False))
    proc.start()
    buffer = recv.recv()
    name = buffer.name
    recv.send("exit now")
    proc.join(30)
    assert proc.exitcode == 0
    assert not segment_exists(name)  # the exiting creator unlinked it
    with pytest.raises(BufferClosedError, match="closed by its creator"):
        buffer.write(np.zeros(500_000, dtype=np.uint8))
    assert buffer.closed
    buffer.close()
    with pytest.raises(BufferClosedError, match="no longer exists"):
        pickle.loads(pickle.dumps(buffer_stub(name)))


def buffer_stub(name: str) -> Any:
    """Something that unpickles like a handle to the (now gone) buffer `name`."""

    class Stub:
        def __reduce__(self) -> Any:
            return _shm._attach_ring_buffer, (name, True, None)

    return Stub()


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


SPAWN_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import numpy as np
    from tinypl._shm import SharedMemoryRingBuffer, ShmPool, loads

    def child(buffer, conn):
        conn.send(buffer.write(np.arange(10.0)))
        pool = ShmPool(8 << 20)
        conn.send_bytes(pool.dumps(np.ones(100_000)))
        conn.recv()  # wait until the parent loaded it, then exit without close()

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        buffer = SharedMemoryRingBuffer(1 << 20)
        a, b = ctx.Pipe()
        p = ctx.Process(target=child, args=(buffer, b))
        p.start()
        assert buffer.read(a.recv()).sum() == 45
        x = loads(a.recv_bytes())
        a.send("bye")
        p.join()
        assert p.exitcode == 0
        assert x.sum() == 100_000
        del x
        buffer.close()
    """
)


@pytest.mark.timeout(60)
def test_no_resource_tracker_warnings_and_no_leaks(tmp_path: Path) -> None:
    script = tmp_path / "spawn_script.py"
    script.write_text(SPAWN_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    before = shm_listing()
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not leftover_segments(before)


# ----------------------------------------------------------------------- ShmPool


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
    assert trim_cache() >= 1
    assert not leftover_segments(before)


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


def _pool_worker(conn: Any, n: int, mode: str) -> None:
    pool = ShmPool(64 << 20)
    for i in range(n):
        conn.send_bytes(pool.dumps({"i": i, "a": np.full((256, 1024), i, dtype=np.float64)}))
    if mode == "close":
        pool.close()
    elif mode == "hold":
        conn.recv()  # wait to be killed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("mode", ["close", "exit", "kill"])
def test_pool_worker_to_parent(method: str, mode: str) -> None:
    """Messages stay loadable after the worker closed its pool, exited or was killed."""
    ctx: Any = mp.get_context(method)
    before = shm_listing()
    recv, send = ctx.Pipe()
    n = 6
    proc = ctx.Process(target=_pool_worker, args=(send, n, "hold" if mode == "kill" else mode))
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
    assert trim_cache() >= 1


@pytest.mark.timeout(60)
def test_cleanup_orphans_after_killed_worker() -> None:
    ctx: Any = mp.get_context("fork")
    before = shm_listing()
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=_pool_worker, args=(send, 3, "hold"))
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
