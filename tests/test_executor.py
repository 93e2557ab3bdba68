"""The executor stage (issue 15): per-item stages run on a user's executor.

The same pipelines run on real engines (a thread pool, a forkserver process pool, loky,
a Dask ``LocalCluster`` on loopback; MPI in ``test_executor_mpi.py``) and are compared
with the synchronous run and with ``.process(2)``: results, order, markers and errors.
What only Dask does (a killed worker, retries, impure tasks) is in ``test_executor_dask.py``.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from executors import forkserver_pool
from procwatch import REPO
from threadwatch import gone_within, tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe
from tinypl._errors import RemoteTraceback
from tinypl._runtime import _remote

END = Marker("end")


def triple(x: int) -> int:
    return 3 * x


def odd(x: int) -> bool:
    return x % 2 == 1


def spread(x: int) -> list[int]:
    return list(range(x % 4))


def slow(x: int) -> int:
    time.sleep(0.2)
    return x


def jittery(x: int) -> int:
    time.sleep((x * 7 % 5) / 1000)
    return x


def bad_at_7(x: int) -> int:
    if x == 7:
        raise KeyError(f"no {x}")
    return x


def pipeline(source: Any) -> Pipe[Any]:
    """map, filter, flatten: the run an executor or process stage ships."""
    return Pipe(source).map(triple).filter(odd).map(spread).flatten()


def run_sync() -> list[Any]:
    return list(pipeline(range(60)))


def submit_still_works(executor: Any) -> None:
    """The executor was not shut down, and its queue is not clogged by our chunks."""
    assert executor.submit(abs, -5).result(timeout=5) == 5


def bad_at_multiples_of_7(x: int) -> int:
    if x % 7 == 3:
        raise KeyError(f"no {x}")
    return x


# -- ignore_errors: items are dropped where they fail, on the executor's workers ----------


@pytest.mark.timeout(60)
def test_ignore_errors_drops_the_items_that_fail_on_the_engine(
    engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = Pipe(range(50)).map(bad_at_multiples_of_7).executor(engine).order()
    with caplog.at_level("WARNING", logger="tinypl"):
        out = list(pipe.ignore_errors())
    assert out == [x for x in range(50) if x % 7 != 3]
    logged = [r.getMessage() for r in caplog.records if "bad_at_multiples_of_7" in r.getMessage()]
    assert len(logged) == 7 and any("no 10" in text for text in logged)
    submit_still_works(engine)


@pytest.mark.timeout(60)
def test_an_executor_stage_past_its_failure_budget_raises_too_many_errors(engine: Any) -> None:
    pipe = Pipe(range(50)).map(bad_at_multiples_of_7).executor(engine, chunksize=5)
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe.ignore_errors(max_failures=2, log=False))
    assert caught.value.failures == 3
    assert isinstance(caught.value.__cause__, KeyError)
    submit_still_works(engine)


# -- results, order and markers on every engine --------------------------------------------


@pytest.mark.timeout(60)
def test_results_match_the_sync_run_and_process_stage(engine: Any) -> None:
    expected = run_sync()
    unordered = list(pipeline(range(60)).executor(engine))
    assert sorted(unordered) == sorted(expected)
    assert list(pipeline(range(60)).executor(engine).order()) == expected
    assert list(pipeline(range(60)).process(2).order()) == expected
    submit_still_works(engine)


@pytest.mark.timeout(60)
def test_order_is_restored_exactly_with_uneven_costs(engine: Any) -> None:
    got = list(Pipe(range(200)).map(jittery).executor(engine, chunksize=3).order())
    assert got == list(range(200))


@pytest.mark.timeout(60)
def test_markers_keep_their_places_with_order(engine: Any) -> None:
    def with_markers(pipe: Pipe[Any]) -> list[Any]:
        return list(pipe.order().partition(100, markers="after", split_on_marker=True))

    source = Pipe(range(40)).insert_marker(END, every=7).map(triple).filter(odd)
    expected = list(
        Pipe(range(40))
        .insert_marker(END, every=7)
        .map(triple)
        .filter(odd)
        .partition(100, markers="after", split_on_marker=True)
    )
    assert with_markers(source.executor(engine)) == expected
    assert with_markers(source.process(2)) == expected
    # until() cuts the same segments as the synchronous run.
    stage = iter(Pipe(range(20)).insert_marker(END, every=6).map(triple).executor(engine).order())
    assert list(pl.marker.until(stage, END)) == [0, 3, 6, 9, 12, 15]
    assert list(pl.marker.until(stage, END)) == [18, 21, 24, 27, 30, 33]
    stage.close()


@pytest.mark.timeout(60)
def test_every_marker_passes_once_without_order(engine: Any) -> None:
    seen: list[int] = []
    pipe = Pipe(range(30)).insert_marker(END, every=5).map(triple).executor(engine)
    out = list(pipe.on(END, lambda: seen.append(1)))
    assert sorted(out) == [3 * x for x in range(30)]
    assert len(seen) == 6


# -- errors --------------------------------------------------------------------------------


def _raised(pipe: Pipe[Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        list(pipe)
    return info.value


@pytest.mark.timeout(60)
def test_a_stage_error_keeps_its_type_note_and_remote_traceback(engine: Any) -> None:
    error = _raised(Pipe(range(20)).map(bad_at_7).executor(engine))
    reference = _raised(Pipe(range(20)).map(bad_at_7).process(2))
    assert type(error) is KeyError and error.args == reference.args == ("no 7",)
    assert error.__notes__ == reference.__notes__  # type: ignore[attr-defined]
    assert "map(bad_at_7)" in error.__notes__[0] and "7" in error.__notes__[0]  # type: ignore[attr-defined]
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "bad_at_7" in error.__cause__.text
    submit_still_works(engine)


@pytest.mark.timeout(60)
def test_an_upstream_error_comes_after_the_items_before_it(engine: Any) -> None:
    def source() -> Iterator[int]:
        yield from range(10)
        raise OSError("disk gone")

    stage = iter(Pipe(source()).map(triple).executor(engine))
    got: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        for x in stage:
            got.append(x)
    assert sorted(got) == [3 * x for x in range(10)]


@pytest.mark.timeout(60)
def test_a_failed_run_is_freed_when_dropped(engine: Any) -> None:
    """``for x in stage`` inside ``try`` keeps the stage in the error's traceback; once
    the caller drops both, the stage must be freed (no cycle through its finalizer)."""

    def consume() -> weakref.ref[Any]:
        stage = iter(Pipe(range(20)).map(bad_at_7).executor(engine))
        try:
            for _ in stage:
                pass
        except KeyError:
            pass
        return weakref.ref(stage)

    ref = consume()
    gc.collect()
    assert ref() is None, "the failed stage is never freed"


@pytest.mark.timeout(30)
def test_a_run_failed_by_its_executor_is_freed_when_dropped() -> None:
    pool = forkserver_pool()

    def consume(executor: Executor) -> weakref.ref[Any]:
        stage = iter(Pipe(range(20)).map(die).executor(executor, chunksize=2))
        try:
            for _ in stage:
                pass
        except pl.WorkerError:
            pass
        return weakref.ref(stage)

    try:
        refs = [consume(pool), consume(closed_pool())]  # a broken pool, a failing submit
    finally:
        pool.shutdown(wait=True)
    gc.collect()
    assert [ref() for ref in refs] == [None, None], "a failed stage is never freed"


def die(x: int) -> int:
    if x == 5:
        os._exit(3)
    return x


@pytest.mark.timeout(60)
def test_a_broken_process_pool_becomes_a_worker_error_naming_stage_and_chunk() -> None:
    pool = forkserver_pool()
    try:
        with pytest.raises(pl.WorkerError) as info:
            list(Pipe(range(20)).map(die).executor(pool, chunksize=2))
        message = str(info.value)
        assert "executor(map(die))" in message and "chunk" in message
        assert isinstance(info.value.__cause__, BrokenProcessPool)
    finally:
        pool.shutdown(wait=True)


@pytest.mark.timeout(60)
def test_a_killed_loky_worker_becomes_a_worker_error(loky_executor: Any) -> None:
    with pytest.raises(pl.WorkerError) as info:
        list(Pipe(range(20)).map(die).executor(loky_executor(), chunksize=2))
    assert "executor(map(die))" in str(info.value) and "chunk" in str(info.value)
    assert type(info.value.__cause__).__name__ == "TerminatedWorkerError"
    # loky replaces a broken pool on the next call: the user's code goes on working.
    submit_still_works(loky_executor())


def closed_pool() -> ThreadPoolExecutor:
    """A real executor that was shut down: every submit raises RuntimeError."""
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    return pool


@pytest.mark.timeout(30)
def test_a_failing_submit_becomes_a_worker_error() -> None:
    with pytest.raises(pl.WorkerError, match=r"executor\(map\(triple\)\).*chunk 1") as info:
        list(Pipe(range(5)).map(triple).executor(closed_pool()))
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.timeout(30)
def test_a_cancelled_chunk_becomes_a_worker_error() -> None:
    pool = ThreadPoolExecutor(1)
    started = threading.Event()

    def wait_then_cancel(x: int) -> int:
        if x == 0:
            started.set()
            pool.shutdown(wait=False, cancel_futures=True)  # the user shuts it down mid-run
        return x

    with pytest.raises(pl.WorkerError) as info:
        list(Pipe(range(50)).map(wait_then_cancel).executor(pool, maxsize=8, chunksize=1))
    assert started.is_set()
    assert "executor(map(" in str(info.value)
    assert type(info.value.__cause__).__name__ in ("CancelledError", "RuntimeError")
    pool.shutdown(wait=True)


# -- closing, laziness, backpressure ------------------------------------------------------


@pytest.mark.timeout(60)
def test_early_close_returns_within_two_seconds_and_leaves_the_executor_running(
    engine: Any,
) -> None:
    before = tinypl_threads()
    stage = iter(Pipe(range(200)).map(slow).executor(engine, maxsize=4, chunksize=1))
    assert next(stage) in range(200)
    start = time.monotonic()
    stage.close()
    assert time.monotonic() - start < 2.0
    assert gone_within(before, 2.0)
    # Pending chunks were cancelled: a new task does not wait behind 200 slow items.
    start = time.monotonic()
    submit_still_works(engine if not _is_client(engine) else engine.get_executor())
    assert time.monotonic() - start < 2.0


def _is_client(executor: Any) -> bool:
    return type(executor).__name__ == "Client"


@pytest.mark.timeout(30)
def test_dropping_a_run_stops_its_feeder() -> None:
    before = tinypl_threads()
    with ThreadPoolExecutor(2) as pool:
        stage = iter(Pipe(range(100)).map(slow).executor(pool, chunksize=1))
        next(stage)
        del stage
        assert gone_within(before, 2.0)


@pytest.mark.timeout(30)
def test_building_and_iter_submit_nothing() -> None:
    calls: list[int] = []
    with ThreadPoolExecutor(2) as pool:
        pipe = Pipe(range(10)).each(calls.append).executor(pool)
        before = tinypl_threads()
        stage = iter(pipe)
        assert calls == [] and tinypl_threads() == before  # no feeder until the first pull
        assert sorted(stage) == list(range(10))
    # A thread pool shares this process: the functions are not copies.
    assert sorted(calls) == list(range(10))


@pytest.mark.timeout(30)
def test_at_most_maxsize_chunks_are_in_flight() -> None:
    pulled = 0
    too_many = threading.Event()

    def source() -> Iterator[int]:
        nonlocal pulled
        for x in range(1000):
            pulled += 1
            if pulled > 2 + 3 * 2 + 2:  # read + in flight + one chunk gathered
                too_many.set()
            yield x

    with ThreadPoolExecutor(2) as pool:
        stage = iter(Pipe(source()).map(triple).executor(pool, maxsize=3, chunksize=2))
        assert next(stage) % 3 == 0
        assert stage.maxsize == 3
        assert not too_many.wait(0.5)  # the feeder waits for a free slot
        stage.close()


@pytest.mark.timeout(60)
def test_default_maxsize_is_twice_the_workers(engine: Any) -> None:
    with iter(Pipe(range(3)).map(triple).executor(engine)) as stage:
        assert stage.workers == 2
        assert stage.maxsize == 4
        assert sorted(stage) == [0, 3, 6]


class _Delegating(Executor):
    """A real executor whose worker count cannot be read (it hides its pool's)."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._pool.submit(fn, *args, **kwargs)


@pytest.mark.timeout(30)
def test_default_maxsize_is_8_when_the_workers_are_unknown() -> None:
    with ThreadPoolExecutor(2) as pool:
        with iter(Pipe(range(30)).map(triple).executor(_Delegating(pool))) as stage:
            assert stage.maxsize == 8 and stage.workers == 1
            assert sorted(stage) == [3 * x for x in range(30)]
        ordered = Pipe(range(30)).map(triple).executor(_Delegating(pool)).order()
        assert list(ordered) == [3 * x for x in range(30)]


# -- building ------------------------------------------------------------------------------


def test_executor_without_a_per_item_stage_above_fails_at_build() -> None:
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match=r"executor: no map, filter, each or flatten"):
            Pipe(range(3)).executor(pool)
        with pytest.raises(ValueError, match="executor"):
            Pipe(range(3)).map(abs).partition(2).executor(pool)
        with pytest.raises(ValueError, match="maxsize"):
            Pipe(range(3)).map(abs).executor(pool, maxsize=0)
        with pytest.raises(TypeError, match="chunksize"):
            Pipe(range(3)).map(abs).executor(pool, chunksize=1.5)  # type: ignore[arg-type]


def test_a_non_executor_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"executor must be a concurrent\.futures\.Executor"):
        Pipe(range(3)).map(abs).executor(4)


def test_explain_shows_what_runs_on_the_executor() -> None:
    with ThreadPoolExecutor(1) as pool:
        text = Pipe(range(3)).map(abs).filter(odd).executor(pool, chunksize=5).explain()
    assert "executor(ThreadPoolExecutor, chunksize=5, runs=map(abs) -> filter(odd))" in text


def test_module_level_map_and_each() -> None:
    with ThreadPoolExecutor(2) as pool:
        assert sorted(pl.executor.map(range(5), triple, pool)) == [0, 3, 6, 9, 12]
        seen: list[int] = []
        assert sorted(pl.executor.each(range(4), seen.append, pool, 2)) == [0, 1, 2, 3]
        assert sorted(seen) == [0, 1, 2, 3]


# -- shipping ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stage_functions_are_compiled_once_per_worker() -> None:
    pool = forkserver_pool(1)
    try:
        before = pool.submit(_remote.compiled_count).result()
        factor = 5
        got = list(Pipe(range(40)).map(lambda x: x * factor).executor(pool, chunksize=1).order())
        assert got == [5 * x for x in range(40)]
        assert pool.submit(_remote.compiled_count).result() == before + 1
    finally:
        pool.shutdown(wait=True)


@pytest.mark.timeout(60)
def test_import_and_build_do_not_load_the_engines() -> None:
    probe = (
        "import sys, tinypl as pl\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pipe = pl.Pipe(range(4)).map(abs).executor(ThreadPoolExecutor(1))\n"
        "heavy = ['cloudpickle', 'dask', 'distributed', 'mpi4py', 'loky',"
        " 'tinypl._runtime._executor']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=50,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.timeout(60)
def test_large_stage_functions_go_to_each_worker_only_when_it_asks() -> None:
    from tinypl._runtime._executor import INLINE_BYTES

    weights = os.urandom(4 * INLINE_BYTES)  # a closure over a "model" too big to resend

    def score(x: int) -> int:
        return weights[x % len(weights)] + x

    pool = forkserver_pool(1)
    try:
        compiled = pool.submit(_remote.compiled_count).result()
        received = pool.submit(_remote.received_count).result()
        pipe = Pipe(range(60)).map(score).executor(pool, maxsize=4, chunksize=1)
        assert list(pipe.order()) == [weights[x] + x for x in range(60)]
        assert pool.submit(_remote.compiled_count).result() == compiled + 1
        # Only the chunks that reached the worker before it had the functions asked for
        # them (at most the 4 in flight); the other chunks carried only their digest.
        assert 1 <= pool.submit(_remote.received_count).result() - received <= 4
    finally:
        pool.shutdown(wait=True)


def test_a_chunk_without_its_program_asks_for_it() -> None:
    from tinypl._ops import MapOp

    payload = cloudpickle_dumps((MapOp(triple),))
    digest = os.urandom(16)
    assert _remote.run_chunk((digest, None, False, False), [1]) == _remote.MISSING
    assert _remote.run_chunk((digest, payload, False, False), [1, 2])[2:4] == (2, [3, 6])
    assert _remote.run_chunk((digest, None, False, False), [4])[2:4] == (1, [12])  # cached now


def cloudpickle_dumps(value: Any) -> bytes:
    import cloudpickle

    data: bytes = cloudpickle.dumps(value)
    return data


@pytest.mark.timeout(30)
def test_ctrl_c_while_waiting_stops_the_run_and_leaves_the_executor_running() -> None:
    before = tinypl_threads()
    main = threading.get_ident()
    started, release = threading.Event(), threading.Event()

    def stuck(x: int) -> int:
        started.set()
        release.wait(20)
        return x

    def interrupt() -> None:
        if started.wait(10):
            signal.pthread_kill(main, signal.SIGINT)

    with ThreadPoolExecutor(2) as pool:
        helper = threading.Thread(target=interrupt, name="test-interrupter")
        stage = iter(Pipe(range(100)).map(stuck).executor(pool, chunksize=1))
        helper.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                next(stage)
            assert gone_within(before, 2.0)  # the feeder is stopped in the background
        finally:
            release.set()
            helper.join(10)
        submit_still_works(pool)
