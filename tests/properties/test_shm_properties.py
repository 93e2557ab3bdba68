"""Property tests for tinypl._shm: random shapes/dtypes round-trip exactly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinypl._shm import RingBufferRef, SharedMemoryRingBuffer, ShmPool, loads
from tinypl._shm._ring import ring_blocks

DTYPES = (
    hnp.scalar_dtypes()
    | hnp.byte_string_dtypes()
    | hnp.unicode_string_dtypes()
    | hnp.array_dtypes(subtype_strategy=hnp.scalar_dtypes(), max_size=3)
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Random arrays, often non-contiguous views (basic indexing, transposes)."""
    arr = draw(hnp.arrays(DTYPES, SHAPES))
    if arr.ndim and draw(st.booleans()):
        arr = arr[draw(hnp.basic_indices(arr.shape, allow_newaxis=True))]
    if arr.ndim > 1 and draw(st.booleans()):
        arr = arr.transpose(draw(st.permutations(range(arr.ndim))))
    if draw(st.booleans()):
        arr = np.asfortranarray(arr)
    return np.asarray(arr)


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


@pytest.fixture(scope="module")
def ring() -> Iterator[SharedMemoryRingBuffer]:
    with SharedMemoryRingBuffer(4 << 20, allow_pickle=False) as buffer:
        yield buffer


@pytest.fixture(scope="module")
def pool() -> Iterator[ShmPool]:
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as p:
        yield p


@given(arr=arrays())
def test_ring_roundtrip(ring: SharedMemoryRingBuffer, arr: np.ndarray) -> None:
    assert_same(arr, ring.read(ring.write(arr)))
    assert ring.bytes_in_use() == 0


@given(arrs=st.lists(arrays(), max_size=4))
def test_ring_roundtrip_containers(ring: SharedMemoryRingBuffer, arrs: list[np.ndarray]) -> None:
    obj = (arrs, {"k": arrs[:1]})
    out = ring.read(ring.write(obj))
    assert_same(arrs, out[0])
    assert_same(arrs[:1], out[1]["k"])


@given(arr=arrays())
def test_pool_roundtrip(pool: ShmPool, arr: np.ndarray) -> None:
    out = loads(pool.dumps(arr))
    assert_same(arr, out)
    del out  # reference counting frees the region at once (no gc.collect() needed)
    assert pool.stats()["regions_in_use"] == 0


# A random program of writes and out-of-order reads on a small buffer: exercises
# wrap-around, padding blocks and tail reclamation. With timeout=0 a write that
# does not fit raises TimeoutError at once instead of blocking.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 20_000)),
        st.tuples(st.just("read"), st.integers(0, 1_000)),
    ),
    max_size=40,
)


def check_block_invariants(buffer: SharedMemoryRingBuffer, live: list[RingBufferRef]) -> None:
    """Blocks tile the data area exactly; the bytes in use are those of the live refs."""
    blocks = ring_blocks(buffer)
    assert [b.position for b in blocks] == [0, *(b.position + b.size for b in blocks[:-1])]
    assert sum(b.size for b in blocks) == buffer.capacity
    busy = {b.position: b.size for b in blocks if b.state != "free"}
    assert busy == {ref.position: ref.nbytes for ref in live}
    assert buffer.bytes_in_use() == sum(ref.nbytes for ref in live)
    assert all(b.state == "ready" for b in blocks if b.state != "free")


@given(ops=OPS)
def test_ring_random_program(ops: list[tuple[str, int]]) -> None:
    with SharedMemoryRingBuffer(64 << 10, timeout=0) as buffer:
        live: list[tuple[RingBufferRef, np.ndarray]] = []
        for i, (op, arg) in enumerate(ops):
            if op == "write":
                arr = np.full(arg, i % 251, dtype=np.uint8)
                try:
                    live.append((buffer.write(arr), arr))
                except TimeoutError:
                    assert live  # an empty buffer always has room for this
            elif live:
                ref, arr = live.pop(arg % len(live))
                assert_same(arr, buffer.read(ref))
            check_block_invariants(buffer, [ref for ref, _arr in live])
        for ref, arr in live:
            assert_same(arr, buffer.read(ref))
        assert buffer.bytes_in_use() == 0


# A program over a pool's lent arrays: ("lend", kib) lends one; ("send", k, view, keep)
# sends the k-th live lent array (or a view of its second half), the worker keeping it
# (it may send it again: a copy) or not; ("drop", k) drops the k-th lent array;
# ("free", k) drops the k-th received array in the reader.
LEND_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("lend"), st.sampled_from([64, 512, 2048])),
        st.tuples(st.just("send"), st.integers(0, 3), st.booleans(), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 3)),
        st.tuples(st.just("free"), st.integers(0, 3)),
    ),
    max_size=16,
)


@given(ops=LEND_OPS)
# The worker keeps an array it sent, the reader frees its view, and a new lend must not
# take the region (found in review; the thorough profile finds it too).
@example(ops=[("lend", 64), ("send", 0, False, True), ("free", 0), ("lend", 64)])
def test_lent_arrays_never_alias_and_every_region_comes_back(ops: list[tuple[Any, ...]]) -> None:
    """Law: every array the reader or the worker holds keeps its values, whatever is
    lent, sent (again), dropped or freed meanwhile (no region is handed out while an
    array on it lives), and once every array is gone no region is in use."""
    import gc

    lent: list[tuple[np.ndarray, int]] = []  # (array, tag)
    held: Any = None
    received: list[tuple[np.ndarray, int]] = []
    tags = iter(range(1, 10**6))
    with ShmPool(16 << 20, reader_pid=os.getpid(), max_wait=0) as pool:
        for op in ops:
            if op[0] == "lend":
                tag = next(tags)
                array = pool.empty(op[1] * 128)  # KiB of float64
                array.fill(tag)
                lent.append((array, tag))
            elif op[0] == "send" and lent:
                index = op[1] % len(lent)
                array, tag = lent[index] if op[3] else lent.pop(index)
                part = array[len(array) // 2 :] if op[2] else array
                received.append((loads(pool.dumps(part)), tag))
            elif op[0] == "drop" and lent:
                lent.pop(op[1] % len(lent))
            elif op[0] == "free" and received:
                received.pop(op[1] % len(received))
            array = part = None  # the lists alone hold what is alive
            gc.collect()
            for held, tag in [*lent, *received]:
                assert held.min() == held.max() == tag
        del lent[:], received[:], held
        gc.collect()
        assert pool.stats()["regions_in_use"] == 0
