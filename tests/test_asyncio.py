"""Asyncio stages, async sources and ``async for`` over a pipe (issue 16).

Requests go to a real server on 127.0.0.1 (``aioserver.Server``), which counts the
connections open at once and sees every one of them closed. Synchronisation is by
events and by the server's condition; sleeps only make a coroutine slow.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aioserver import Server, fetch
from threadwatch import gone_within, tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe


@pytest.fixture
def server() -> Iterator[Server]:
    with Server(delay=0.02) as running:
        yield running


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x


async def slow_double(x: int) -> int:
    await asyncio.sleep(0.001 * (x % 3))
    return 2 * x


# -- the server: many requests, a bounded number in flight --------------------------------


@pytest.mark.timeout(60)
def test_a_thousand_requests_come_back_in_order_with_at_most_100_in_flight(
    server: Server,
) -> None:
    get = functools.partial(fetch, server)
    answers = list(Pipe(range(1000)).map(get).asyncio(100).order())
    assert answers == [10 * n for n in range(1000)]
    assert server.accepted == 1000
    assert server.wait_all_closed()
    assert server.peak <= 100
    assert server.peak > 10  # the requests did overlap


@pytest.mark.timeout(60)
def test_unordered_requests_and_the_module_level_form(server: Server) -> None:
    get = functools.partial(fetch, server)
    fluent = list(Pipe(range(300)).map(get).asyncio(30))
    module = list(pl.asyncio.map(range(300), get, concurrency=30))
    assert sorted(fluent) == sorted(module) == [10 * n for n in range(300)]
    assert server.peak <= 30
    assert server.wait_all_closed()


@pytest.mark.timeout(30)
def test_concurrency_bounds_the_coroutines_in_flight() -> None:
    lock = threading.Lock()
    running = peak = 0

    async def tracked(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0.002)
        with lock:
            running -= 1
        return x

    stage = iter(Pipe(range(200)).map(tracked).asyncio(7, maxsize=3))
    assert (stage.workers, stage.maxsize) == (7, 3)  # type: ignore[attr-defined]
    assert sorted(stage) == list(range(200))
    assert peak == 7


# -- what runs where -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_plain_functions_run_inline_on_the_loop_thread_and_awaitables_are_awaited() -> None:
    threads: set[str] = set()

    def plain(x: int) -> int:
        asyncio.get_running_loop()  # raises unless called on the loop
        threads.add(threading.current_thread().name)
        return x + 1

    def later(x: int) -> Any:
        return slow_double(x)  # a plain function returning a coroutine

    pipe = (
        Pipe(range(20))
        .map(plain)
        .map(later)
        .filter(lambda x: x % 4 == 0)
        .asyncio(4)
        .order()
    )
    assert list(pipe) == [2 * (x + 1) for x in range(20) if (2 * (x + 1)) % 4 == 0]
    assert len(threads) == 1 and threads.pop().startswith("tinypl-asyncio-")


@pytest.mark.timeout(30)
def test_async_filter_and_each_and_flatten() -> None:
    seen: list[int] = []

    async def odd(x: int) -> bool:
        await asyncio.sleep(0)
        return x % 2 == 1

    async def record(x: int) -> None:
        seen.append(x)

    pipe = (
        Pipe(range(10)).filter(odd).each(record).map(lambda x: [x, x]).flatten().asyncio(3)
    )
    assert sorted(pipe) == sorted([1, 1, 3, 3, 5, 5, 7, 7, 9, 9])
    assert sorted(seen) == [1, 3, 5, 7, 9]
    awaited = Pipe(range(4)).map(AsyncCallable()).map(functools.partial(slow_double)).asyncio(2)
    assert sorted(awaited) == [0, 2, 4, 6]


@pytest.mark.timeout(30)
def test_only_the_run_directly_above_goes_on_the_loop() -> None:
    names: dict[str, set[str]] = {"before": set(), "inside": set()}

    def where(key: str) -> Any:
        def note(x: int) -> int:
            names[key].add(threading.current_thread().name)
            return x

        return note

    pipe = Pipe(range(30)).map(where("before")).thread(2).map(where("inside")).asyncio(3)
    assert sorted(pipe) == list(range(30))
    assert all(name.startswith("tinypl-thread-") for name in names["before"])
    assert all(name.startswith("tinypl-asyncio-") for name in names["inside"])
    explained = Pipe(range(3)).map(slow_double).asyncio(5, maxsize=2).explain()
    assert "asyncio(5, maxsize=2, runs=map(slow_double))" in explained


_POOL = ThreadPoolExecutor(1)  # never used: the plan is refused first


@pytest.mark.parametrize(
    ("build", "label"),
    [
        (lambda p: p.map(slow_double), "map(slow_double)"),
        (lambda p: p.filter(slow_double).thread(2), "filter(slow_double)"),
        (lambda p: p.each(functools.partial(slow_double)), "each(partial(slow_double))"),
        (lambda p: p.map(AsyncCallable()), "map("),
        (lambda p: p.map(slow_double).process(2), "map(slow_double)"),
        (lambda p: p.map(slow_double).executor(_POOL), "map(slow_double)"),
        (lambda p: p.map(slow_double).thread(2).map(str).asyncio(2), "map(slow_double)"),
    ],
)
@pytest.mark.timeout(30)
def test_an_async_function_no_asyncio_stage_runs_is_refused_at_iteration(
    build: Any, label: str
) -> None:
    pipe = build(Pipe(range(3)))  # building is fine: nothing runs yet
    with pytest.raises(TypeError, match=r"add \.asyncio\(n\)") as info:
        iter(pipe)
    assert str(info.value).startswith(label)


@pytest.mark.timeout(30)
def test_an_async_on_callback_is_refused() -> None:
    async def hook() -> None:
        pass

    pipe = Pipe(range(3)).insert_marker(MARK).on(MARK, hook).map(slow_double).asyncio(2)
    with pytest.raises(TypeError, match=r"^on\(.*pass a plain function"):
        iter(pipe)


def test_arguments_are_checked_where_the_stage_is_written() -> None:
    with pytest.raises(ValueError, match="asyncio: concurrency must be >= 1"):
        Pipe(range(3)).asyncio(0)
    with pytest.raises(TypeError, match="asyncio: concurrency must be an int"):
        Pipe(range(3)).asyncio("4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="asyncio: maxsize must be >= 1"):
        Pipe(range(3)).asyncio(4, maxsize=0)
    with pytest.raises(TypeError, match="an iterator or an async iterable"):
        Pipe(42)  # type: ignore[call-overload]


def test_building_an_asyncio_pipe_starts_nothing() -> None:
    before = tinypl_threads()
    pipe = Pipe(range(3)).map(slow_double).asyncio(4).order()
    assert tinypl_threads() == before
    assert list(pipe) == [0, 2, 4]


# -- errors ----------------------------------------------------------------------------------


async def fail_on_7(x: int) -> int:
    await asyncio.sleep(0.001)
    if x == 7:
        raise KeyError(x)
    return x


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.timeout(30)
def test_an_error_keeps_its_type_traceback_and_note(ordered: bool) -> None:
    before = tinypl_threads()
    pipe = Pipe(range(100)).map(fail_on_7).asyncio(4)
    if ordered:
        pipe = pipe.order()
    got: list[int] = []
    with pytest.raises(KeyError) as info:
        for x in pipe:
            got.append(x)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "fail_on_7" in frames
    notes = getattr(info.value, "__notes__", [])
    assert any("map(fail_on_7)" in note and "7" in note for note in notes), notes
    if ordered:
        assert got == list(range(7))  # everything before the failed item, in order
    assert 7 not in got
    assert gone_within(before, 1.0)


@pytest.mark.timeout(30)
def test_an_upstream_error_reaches_the_consumer() -> None:
    def numbers() -> Iterator[int]:
        yield from range(5)
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        list(Pipe(numbers()).map(slow_double).asyncio(3))


# -- markers ---------------------------------------------------------------------------------


MARK = Marker("aio")


def _stream(pipe: Pipe[Any]) -> list[Any]:
    """The items and markers leaving ``pipe``, in the order they left it."""
    seen: list[Any] = []
    tail = pipe.on(MARK, lambda: seen.append(MARK)).each(seen.append)
    for _ in tail:
        pass
    return seen


async def jitter(x: int) -> int:
    await asyncio.sleep(0.001 * ((x * 7) % 5))
    return x


@pytest.mark.timeout(30)
def test_markers_keep_their_places_between_unordered_items() -> None:
    pipe = Pipe(Pipe(range(40)).insert_marker(MARK, every=6)).map(jitter).asyncio(5)
    seen = _stream(pipe)
    assert seen.count(MARK) == 6
    segments: list[list[int]] = [[]]
    for x in seen:
        if x is MARK:
            segments.append([])
        else:
            segments[-1].append(x)
    expected = [list(range(i, min(i + 6, 40))) for i in range(0, 42, 6)]
    assert [sorted(s) for s in segments] == expected


@pytest.mark.timeout(30)
def test_markers_keep_exact_places_with_order() -> None:
    source = Pipe(range(25)).insert_marker(MARK, every=4)
    expected = _stream(source)
    assert _stream(Pipe(source).map(jitter).asyncio(6).order()) == expected


# -- async sources ---------------------------------------------------------------------------


class Ticks:
    """An async generator's stand-in that records where and how far it was iterated."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.threads: set[str] = set()
        self.closed = threading.Event()

    async def __aiter__(self) -> AsyncIterator[int]:
        try:
            for i in itertools.count() if self.n is None else range(self.n):
                self.threads.add(threading.current_thread().name)
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed.set()


@pytest.mark.timeout(30)
def test_an_async_source_is_driven_on_the_loop_of_the_asyncio_stage_below() -> None:
    ticks = Ticks(50)
    assert sorted(Pipe(ticks).map(slow_double).asyncio(4)) == [2 * i for i in range(50)]
    assert len(ticks.threads) == 1 and ticks.threads.pop().startswith("tinypl-asyncio-")
    assert ticks.closed.is_set()


@pytest.mark.timeout(30)
def test_an_async_source_without_asyncio_stage_gets_a_loop_of_its_own() -> None:
    ticks = Ticks(20)
    assert list(Pipe(ticks).map(str).thread(2).order()) == [str(i) for i in range(20)]
    assert len(ticks.threads) == 1 and ticks.threads.pop().startswith("tinypl-asource-")
    ordered = Ticks(30)
    assert list(Pipe(ordered).map(slow_double).asyncio(4).order()) == [2 * i for i in range(30)]


@pytest.mark.timeout(30)
def test_closing_an_endless_async_source_stops_it() -> None:
    before = tinypl_threads()
    for pipe_of in (lambda t: Pipe(t).map(slow_double).asyncio(3), Pipe):
        ticks = Ticks(None)
        stage = iter(pipe_of(ticks))
        assert [next(stage) for _ in range(5)]
        stage.close()
        assert ticks.closed.wait(1.0)
    assert gone_within(before, 1.0)


# -- closing, breaking, cancelling -----------------------------------------------------------


@pytest.mark.timeout(30)
def test_close_cancels_the_requests_in_flight_within_a_second(server: Server) -> None:
    before = tinypl_threads()
    server.delay = 30.0  # every request would hang
    stage = iter(Pipe(itertools.count()).map(functools.partial(fetch, server)).asyncio(50))
    reader = threading.Thread(target=lambda: next(stage, None), daemon=True)
    reader.start()
    with server.changed:
        assert server.changed.wait_for(lambda: server.serving == 50, 10)
    start = time.monotonic()
    stage.close()
    assert time.monotonic() - start < 1.0
    reader.join(1.0)
    assert not reader.is_alive()
    assert gone_within(before, 1.0)
    assert server.wait_all_closed(2.0)
    assert server.peak == 50


@pytest.mark.timeout(30)
def test_break_out_of_a_for_loop_stops_everything(server: Server) -> None:
    before = tinypl_threads()
    for x in Pipe(itertools.count()).map(functools.partial(fetch, server)).asyncio(20):
        if x >= 50:
            break
    gc.collect()
    assert gone_within(before, 1.0)
    assert server.wait_all_closed(2.0)


def _tasks_left() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@pytest.mark.timeout(30)
def test_async_for_does_not_block_the_loop_and_ends_cleanly(server: Server) -> None:
    before = tinypl_threads()

    async def main() -> tuple[list[int], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.ensure_future(ticker())
        pipe = Pipe(range(60)).map(functools.partial(fetch, server)).asyncio(10).order()
        got = [x async for x in pipe]
        beat.cancel()
        return got, ticks

    got, ticks = asyncio.run(main())
    assert got == [10 * n for n in range(60)]
    assert ticks > 20  # the loop kept running while the pipe worked (~0.12 s)
    assert gone_within(before, 1.0)
    assert server.wait_all_closed()


@pytest.mark.timeout(30)
def test_cancelling_the_consuming_task_closes_the_run(server: Server) -> None:
    before = tinypl_threads()
    server.delay = 30.0

    async def consume(pipe: Pipe[int], first: asyncio.Event) -> None:
        async for _ in pipe:
            first.set()

    async def main() -> set[asyncio.Task[Any]]:
        first = asyncio.Event()
        source = Pipe(itertools.count()).map(lambda x: x)
        fast = source.filter(lambda x: x < 3)
        hanging = fast.map(functools.partial(fetch, server)).asyncio(30)
        task = asyncio.ensure_future(consume(hanging, first))
        await asyncio.sleep(0)  # let it start
        while server.serving < 3:  # all three requests are being served
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return _tasks_left()

    start = time.monotonic()
    assert asyncio.run(main()) == set()
    assert gone_within(before, 1.0)
    assert time.monotonic() - start < 5.0
    assert server.wait_all_closed(1.0)


@pytest.mark.timeout(30)
def test_break_and_aclose_of_async_for() -> None:
    before = tinypl_threads()

    async def main() -> list[int]:
        got = []
        async for x in Pipe(itertools.count()).map(slow_double).asyncio(4).order():
            got.append(x)
            if len(got) == 5:
                break
        run = Pipe(itertools.count()).map(str).thread(2).__aiter__()
        assert await run.__anext__() in {str(i) for i in range(10)}
        await run.aclose()
        with pytest.raises(StopAsyncIteration):
            await run.__anext__()
        return got

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    gc.collect()
    assert gone_within(before, 1.0)


@pytest.mark.timeout(30)
def test_async_for_raises_errors_and_bad_plans_in_the_consumer() -> None:
    async def collect(pipe: Pipe[Any]) -> list[Any]:
        return [x async for x in pipe]

    with pytest.raises(KeyError):
        asyncio.run(collect(Pipe(range(20)).map(fail_on_7).asyncio(3)))
    with pytest.raises(TypeError, match=r"map\(fail_on_7\)"):
        asyncio.run(collect(Pipe(range(20)).map(fail_on_7)))


# -- the stage as an object ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_stage_closed_before_its_first_pull_yields_nothing_and_starts_nothing() -> None:
    before = tinypl_threads()
    stage = iter(Pipe(range(10)).map(slow_double).asyncio(3))
    assert "asyncio(3, runs=map(slow_double))" in repr(stage)
    stage.close()
    assert list(stage) == []
    assert tinypl_threads() == before
    assert stage.closed


@pytest.mark.timeout(30)
def test_fill_reports_the_output_queue() -> None:
    stage: Any = iter(Pipe(range(50)).map(slow_double).asyncio(4, maxsize=4))
    first = next(stage)
    assert 0.0 <= stage.fill <= 1.0
    assert sorted([first, *stage]) == [2 * x for x in range(50)]
    assert stage.fill == 0.0


@pytest.mark.timeout(60)
def test_asyncio_stages_after_a_process_stage_and_after_each_other() -> None:
    pipe = (
        Pipe(range(40))
        .map(abs)
        .process(2)
        .map(slow_double)
        .asyncio(5)
        .map(jitter)
        .asyncio(3)
        .order()
    )
    assert list(pipe) == [2 * x for x in range(40)]


@pytest.mark.timeout(30)
def test_async_for_over_an_async_source_without_asyncio_stage() -> None:
    async def main() -> list[str]:
        return [x async for x in Pipe(Ticks(5)).map(str)]

    assert asyncio.run(main()) == ["0", "1", "2", "3", "4"]


# -- ignore_errors and timeouts (the control issue) apply to asyncio stages -------------


async def checked(x: int) -> int:
    await asyncio.sleep(0)
    if x % 5 == 3:
        raise ValueError(f"bad {x}")
    return x


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ordered", [False, True])
def test_ignore_errors_drops_the_items_an_asyncio_stage_fails_on(
    ordered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = Pipe(range(40)).map(checked).asyncio(8)
    pipe = pipe.order() if ordered else pipe
    with caplog.at_level("WARNING", logger="tinypl"):
        out = list(pipe.ignore_errors())
    expected = [x for x in range(40) if x % 5 != 3]
    assert (out if ordered else sorted(out)) == expected
    dropped = [r for r in caplog.records if "map(checked)" in r.getMessage()]
    assert len(dropped) == 8
    assert any("bad 13" in r.getMessage() for r in dropped)


@pytest.mark.timeout(30)
def test_an_asyncio_stage_past_its_failure_budget_raises_too_many_errors() -> None:
    pipe = Pipe(range(40)).map(checked).asyncio(1).ignore_errors(max_failures=2, log=False)
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe)
    assert caught.value.failures == 3
    assert isinstance(caught.value.__cause__, ValueError)


async def stuck_on_seven(x: int) -> int:
    if x == 7:
        await asyncio.Event().wait()  # never set: only the timeout ends it
    await asyncio.sleep(0)
    return x


@pytest.mark.timeout(30)
def test_an_item_past_its_timeout_fails_with_timeout_error_naming_stage_and_item() -> None:
    before = tinypl_threads()
    run = iter(Pipe(range(20)).map(stuck_on_seven).asyncio(4, timeout=0.2).order())
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timeout=0\.2 s") as caught:
        list(run)
    assert time.monotonic() - started < 0.2 + 1
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "map(stuck_on_seven)" in notes and "7" in notes
    run.close()
    assert gone_within(before, 1.0)


@pytest.mark.timeout(30)
def test_with_ignore_errors_a_timed_out_item_is_dropped_and_the_run_goes_on() -> None:
    pipe = Pipe(range(20)).map(stuck_on_seven).asyncio(4, timeout=0.2).order()
    assert list(pipe.ignore_errors(log=False)) == [x for x in range(20) if x != 7]
    assert sorted(pl.asyncio.map(range(3), stuck_on_seven, 2, timeout=0.5)) == [0, 1, 2]


def test_a_bad_asyncio_timeout_fails_where_the_stage_is_written() -> None:
    with pytest.raises(ValueError, match="asyncio: timeout must be > 0"):
        Pipe(range(3)).map(checked).asyncio(2, timeout=0)
    with pytest.raises(TypeError, match="asyncio: timeout must be a number"):
        Pipe(range(3)).map(checked).asyncio(2, timeout="1")
