"""Tests for tinypl._shm._lend: arrays a worker allocates in its own pool
(``ShmPool.empty``, ``pl.process.empty``) travel without a copy, once; a worker keeps
its pool between warm runs and trims it while idle."""

from __future__ import annotations

import gc
import os
import pickle
from typing import Any

import numpy as np
import pytest

import tinypl as pl
from tinypl._shm import ShmPool, loads
from tinypl._shm._lend import check_shape


@pytest.fixture
def pool() -> Any:
    with ShmPool(64 << 20, reader_pid=os.getpid()) as p:
        yield p


def _in_use(pool: ShmPool) -> tuple[int, int]:
    stats = pool.stats()
    return stats["regions_in_use"], stats["bytes_in_use"]


def test_a_lent_array_travels_without_a_copy(pool: ShmPool) -> None:
    a = pool.empty((512, 512), np.float32)
    a.fill(3.0)
    lent = _in_use(pool)
    b = loads(pool.dumps({"x": a, "id": 1}))["x"]
    assert _in_use(pool) == lent == (1, lent[1])  # no second region was taken
    assert b.dtype == np.float32 and b.shape == (512, 512) and float(b.sum()) == 3.0 * 512**2
    a[7, 7] = -1.0  # the same memory on both sides: no copy was made
    assert b[7, 7] == -1.0
    assert b.flags.writeable


def test_a_contiguous_view_of_a_lent_array_travels_at_its_offset(pool: ShmPool) -> None:
    a = pool.empty((16, 65536), np.uint8)
    a[:] = np.arange(16, dtype=np.uint8)[:, None]
    row = loads(pool.dumps(a[5]))
    assert row.shape == (65536,) and set(np.unique(row)) == {5}
    a[5, 0] = 99
    assert row[0] == 99
    assert _in_use(pool)[0] == 1


def test_a_lent_region_is_sent_once_later_sends_copy(pool: ShmPool) -> None:
    a = pool.empty(1 << 17)
    a[:] = 1.0
    first, second = loads(pool.dumps([a, a[:]]))  # two views of one region
    later = loads(pool.dumps(a))
    assert _in_use(pool)[0] == 3
    a[0] = 5.0  # only the first travelled in place
    assert (first[0], second[0], later[0]) == (5.0, 1.0, 1.0)
    del first, a
    gc.collect()
    assert _in_use(pool)[0] == 2  # the reader freed the region it was sent
    del second, later
    gc.collect()
    assert _in_use(pool) == (0, 0)


def test_an_unsent_lent_array_gives_its_region_back_when_it_dies(pool: ShmPool) -> None:
    a = pool.empty((256, 256))
    view = a[3:]
    del a
    gc.collect()
    assert _in_use(pool)[0] == 1  # a view keeps the region
    del view
    gc.collect()
    assert _in_use(pool) == (0, 0)
    b = pool.empty((256, 256))  # and it is lent again
    assert _in_use(pool)[0] == 1 and pool.stats()["regions"] == 1
    del b


def test_a_failed_dumps_leaves_the_array_lent_and_unsent(pool: ShmPool) -> None:
    a = pool.empty(1 << 17)
    a[:] = 2.0
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        pool.dumps([a, lambda: None])
    assert _in_use(pool)[0] == 1
    b = loads(pool.dumps(a))  # still sent in place
    a[1] = 8.0
    assert b[1] == 8.0 and _in_use(pool)[0] == 1


def test_small_object_or_unplaceable_arrays_are_plain(pool: ShmPool) -> None:
    for array in (pool.empty(10), pool.empty(1 << 17, object)):
        assert array.base is None and array.flags.owndata
    with ShmPool(1 << 20, reader_pid=os.getpid()) as small:
        big = small.empty(1 << 20)  # 8 MiB: beyond the pool's capacity
        assert big.flags.owndata and big.shape == (1 << 20,)
    assert _in_use(pool) == (0, 0)


def test_fortran_order_and_dtypes_keep_their_layout(pool: ShmPool) -> None:
    a = pool.empty((300, 200), "<i8", "F")
    a[:] = np.arange(60000).reshape((300, 200))
    assert a.flags.f_contiguous
    b = loads(pool.dumps(a))
    assert b.flags.f_contiguous and b.dtype == np.dtype("<i8")
    assert np.array_equal(b, np.arange(60000).reshape((300, 200)))
    d = pool.empty(1 << 14, "M8[s]")
    d[:] = np.datetime64("2026-12-03T00:00:00", "s")
    assert loads(pool.dumps(d))[-1] == np.datetime64("2026-12-03T00:00:00", "s")


@pytest.mark.parametrize(
    ("shape", "order", "error", "text"),
    [
        ((2, -1), "C", ValueError, "shape must hold non-negative ints"),
        ("3", "C", TypeError, "shape must be an int or a tuple of ints"),
        ((True,), "C", TypeError, "shape must be an int or a tuple of ints"),
        (3, "K", ValueError, "order must be 'C' or 'F'"),
    ],
)
def test_bad_arguments_name_the_argument(
    pool: ShmPool, shape: Any, order: str, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        pool.empty(shape, float, order)
    with pytest.raises(error, match=text):
        pl.process.empty(shape, float, order=order)


def test_check_shape_accepts_an_int_or_ints() -> None:
    assert check_shape(0) == (0,) and check_shape(()) == () and check_shape((1, 2)) == (1, 2)


def test_trim_unmaps_only_free_segments_newest_first() -> None:
    with ShmPool(256 << 20, reader_pid=os.getpid()) as pool:
        held = [loads(pool.dumps(np.ones(1 << 20))) for _ in range(6)]  # 6 x 8 MiB
        segments = pool.stats()["segments"]
        assert pool.trim(0) == 0  # every segment holds a region in use
        del held[:]
        gc.collect()
        assert pool.trim(8 << 20) == segments - 1  # the oldest (8 MiB) stays
        assert pool.stats()["allocated"] == 8 << 20 and pool.stats()["segments"] == 1
        assert float(loads(pool.dumps(np.ones(1 << 19))).sum()) == 1 << 19


# -- in process stages -----------------------------------------------------------------------


def _frame(i: int) -> Any:
    out = pl.process.empty((256, 1024), np.float64)
    out.fill(float(i))
    return out


def _in_shared_memory(array: Any) -> bool:
    import mmap

    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_process_stage_results_from_empty_arrive_in_shared_memory(method: str) -> None:
    pipe = pl.Pipe(range(40)).map(_frame).process(2, start_method=method).order()
    seen = []
    for i, frame in enumerate(pipe):
        assert _in_shared_memory(frame) and frame.shape == (256, 1024)
        assert float(frame[0, 0]) == float(frame[-1, -1]) == float(i)
        seen.append(i)
    assert seen == list(range(40))


@pytest.mark.timeout(60)
def test_empty_outside_process_workers_is_numpy_empty() -> None:
    for frame in pl.Pipe(range(3)).map(_frame).thread(2):
        assert frame.flags.owndata and not _in_shared_memory(frame)
    assert pl.process.empty((2, 2), "int8").dtype == np.int8


def _pool_segments(_: int) -> Any:
    from tinypl._shm import _lend

    pool = _lend._Serving.pool
    assert pool is not None
    return os.getpid(), [segment.name for segment in pool._state.segments]


@pytest.mark.timeout(60)
def test_a_warm_worker_serves_its_next_run_from_the_same_pool() -> None:
    previous = pl.process.keep_warm(30)
    try:
        first = dict(pl.Pipe(range(40)).map(_frame).map(_pool_segments).process(2))
        second = dict(pl.Pipe(range(40)).map(_frame).map(_pool_segments).process(2))
        assert first.keys() == second.keys()  # the same two workers
        for pid, names in second.items():
            assert names and names[: len(first[pid])] == first[pid]
    finally:
        pl.process.keep_warm(previous)


# -- found in review: pinning, fork, reentrancy, shapes ---------------------------------------


def test_a_sent_region_stays_pinned_while_the_worker_holds_its_array(pool: ShmPool) -> None:
    a = pool.empty(1 << 17)
    a[:] = 1.0
    b = loads(pool.dumps(a))
    del b  # the reader is done; the worker still holds `a`
    gc.collect()
    c = pool.empty(1 << 17)
    c[:] = 7.0
    assert not np.shares_memory(a, c) and float(a.max()) == 1.0
    again = loads(pool.dumps(a))  # a copy of what `a` holds
    assert float(again.min()) == float(again.max()) == 1.0
    del a, c, again
    gc.collect()
    assert _in_use(pool) == (0, 0)


@pytest.mark.timeout(30)
def test_a_forked_child_dropping_a_lent_array_leaves_the_parents_region(pool: ShmPool) -> None:
    from tinypl._shm import _lend

    a = pool.empty(1 << 17)
    a[:] = 3.0
    _lend.serve(pool)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop the inherited array, and lend from no pool
            try:
                del a
                gc.collect()
                plain = _lend.empty(1 << 17)
                os.write(write, b"1" if plain.flags.owndata else b"0")
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
    finally:
        _lend.serve(None)
    assert answer == b"1"  # pl.process.empty in the child was numpy.empty
    assert _in_use(pool)[0] == 1  # the parent's `a` still holds its region
    b = pool.empty(1 << 17)
    b[:] = 9.0
    assert float(a.max()) == 3.0


class _LendsWhilePickled:
    def __init__(self, pool: ShmPool) -> None:
        self.pool = pool

    def __reduce__(self) -> Any:
        array = self.pool.empty(1 << 17)
        array[:] = 4.0
        return (np.asarray, (array,))


@pytest.mark.timeout(30)
def test_a_result_that_lends_while_it_is_pickled_does_not_deadlock(pool: ShmPool) -> None:
    out = loads(pool.dumps([_LendsWhilePickled(pool)]))
    assert float(out[0].min()) == float(out[0].max()) == 4.0


def test_shapes_take_numpy_ints_and_lists_and_subarray_dtypes_are_plain(pool: ShmPool) -> None:
    assert pool.empty(np.int64(1 << 14)).shape == (1 << 14,)
    assert pool.empty([np.int32(128), 256]).shape == (128, 256)
    sub = pool.empty(1 << 14, ("f8", (3,)))
    assert sub.shape == (1 << 14, 3) and sub.flags.owndata
