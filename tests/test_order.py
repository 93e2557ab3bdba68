"""Order restoration: ``.order()`` and ``pl.order.save`` / ``pl.order.load`` (issue #3).

Synchronisation uses Events; sleeps only make items slow. Every test that waits for
something has an explicit, short ``pytest.mark.timeout``.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from threadwatch import seconds_until_gone, tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe

# -- helpers ------------------------------------------------------------------------------




def run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the subprocess hung (killed after {timeout} s)")


def jitter(x: int) -> int:
    """Sleeps a short, item-dependent random time (for a third of the items), so workers
    finish out of order."""
    rng = random.Random(x)
    if rng.random() < 0.35:
        time.sleep(rng.uniform(0, 0.004))
    return x


def numbers(n: int) -> Iterator[int]:
    """A generator source that releases the GIL inside its frame (as one doing I/O does),
    so entering it from two threads at once raises 'generator already executing'."""
    for i in range(n):
        time.sleep(0)
        yield i


class InFlight:
    """Counts items pulled from a source minus items delivered to the consumer.

    ``source(n)`` is the counted source; call ``delivered()`` for each item consumed.
    ``hold_first(limit)`` is a map function that keeps item 0 until more than ``limit``
    items are in flight (the violation) or ``seconds`` have passed (backpressure held).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pulled = 0
        self.done = 0
        self.high = 0
        self.while_first_held = -1

    def source(self, n: int) -> Iterator[int]:
        for x in range(n):
            with self.lock:
                self.pulled += 1
                self.high = max(self.high, self.pulled - self.done)
            yield x

    def delivered(self) -> None:
        with self.lock:
            self.done += 1

    def hold_first(self, limit: int, seconds: float = 0.3) -> Callable[[int], int]:
        def slow_first(x: int) -> int:
            if x == 0:
                deadline = time.monotonic() + seconds
                while self.pulled <= limit and time.monotonic() < deadline:
                    time.sleep(0.002)
                self.while_first_held = self.pulled
            return x

        return slow_first


# -- the seed README, "Ordering" (verbatim) -------------------------------------------------


@pytest.mark.timeout(20)
def test_seed_ordering_example() -> None:
    pipe = range(50)

    # Save the order of items
    pipe = order = pl.order.save(pipe, maxsize=8) # pl.order.save stage is passed to pl.order.load constructor  # noqa: E501

    # Change the order of items
    import time, random  # noqa: E401, I001
    pipe = pl.thread.each(pipe, lambda x: time.sleep(random.uniform(0.1, 0.01)), workers=8)

    # Restore the order
    pipe = pl.order.load(pipe, order)

    assert list(pipe) == list(range(50))


@pytest.mark.timeout(20)
def test_seed_markers_example_cuts_the_same_segments_through_threads_and_order() -> None:
    pipe = [range(i + 1) for i in range(50)]
    pipe, marker = pl.marker.insert_periodic(pipe, n=1, after=True)
    pipe = order = pl.order.save(pipe, maxsize=8)
    pipe = pl.flatten(pipe)
    pipe = pl.thread.map(pipe, lambda x: jitter(x) + 1, workers=4)
    pipe = pl.order.load(pipe, order)
    hellos = []
    pipe = pl.marker.on(pipe, lambda: hellos.append("Hello world!"), marker=marker)

    for i in range(50):
        assert list(pl.marker.until(pipe, marker=marker)) == list(range(1, i + 2))
    assert list(pipe) == []
    assert len(hellos) == 50
    pipe.close()


# -- .order() restores the sequence ---------------------------------------------------------


def _run(build: Callable[[bool], Pipe[Any]]) -> tuple[list[Any], list[Any]]:
    """(threaded output, synchronous output) of ``build(threaded)``."""
    with iter(build(True)) as stage:
        threaded = list(stage)
    return threaded, list(build(False))


def _thread(pipe: Pipe[Any], threaded: bool, workers: int, maxsize: int | None = None) -> Any:
    return pipe.thread(workers, maxsize) if threaded else pipe


@pytest.mark.timeout(10)
def test_order_yields_f0_f1_in_sequence_despite_random_sleeps() -> None:
    out = list(Pipe(range(100)).map(lambda x: 3 * jitter(x)).thread(4).order())
    assert out == [3 * x for x in range(100)]


@pytest.mark.timeout(10)
def test_order_over_stacked_thread_stages() -> None:
    pipe = Pipe(range(100)).map(jitter).thread(4).map(lambda x: -jitter(x)).thread(3).order()
    assert list(pipe) == [-x for x in range(100)]


ORDER_SHAPES: dict[str, Callable[[bool], Pipe[Any]]] = {
    "filter dropping most, after the thread": lambda t: _thread(
        Pipe(range(400)).map(jitter), t, 4
    )
    .filter(lambda x: x % 17 == 0)
    .order(),
    "filter dropping most, before the thread": lambda t: _thread(
        Pipe(range(400)).filter(lambda x: x % 13 == 0).map(jitter), t, 4
    ).order(),
    "filter dropping everything": lambda t: _thread(Pipe(range(200)).map(jitter), t, 4)
    .filter(lambda x: False)
    .order(),
    "flatten of 0..4 items, before the thread": lambda t: _thread(
        Pipe(range(200)).map(lambda x: range(x % 5)).flatten().map(jitter), t, 3
    ).order(),
    "flatten of 0..3 items, after the thread": lambda t: _thread(
        Pipe(range(200)).map(jitter), t, 4
    )
    .map(lambda x: [x] * (x % 4))
    .flatten()
    .order(),
    "eager flatten after the thread": lambda t: _thread(Pipe(range(200)).map(jitter), t, 4)
    .map(lambda x: range(x % 3))
    .flatten(eager=True)
    .order(),
    "stacked with filter and flatten between": lambda t: _thread(
        _thread(Pipe(range(300)).map(jitter), t, 3, 2)
        .filter(lambda x: x % 3 != 0)
        .map(lambda x: range(x % 4))
        .flatten(),
        t,
        2,
        1,
    ).order(),
    "small window": lambda t: _thread(
        _thread(Pipe(range(80)).map(jitter), t, 4).map(jitter), t, 3
    ).order(maxsize=1),
    "two ordered regions": lambda t: _thread(
        _thread(Pipe(range(200)).map(jitter), t, 3).order().map(lambda x: x * 2), t, 2
    )
    .filter(lambda x: x % 3)
    .order(),
    "generator source": lambda t: _thread(Pipe(numbers(300)).map(jitter), t, 4)
    .map(lambda x: range(x % 3))
    .flatten()
    .order(),
    "map and filter before the thread are in the ordered region": lambda t: _thread(
        Pipe(range(300)).map(jitter).filter(lambda x: x % 2), t, 4
    ).order(),
}


@pytest.mark.timeout(15)
@pytest.mark.parametrize("shape", list(ORDER_SHAPES))
def test_order_equals_the_synchronous_run_and_never_hangs(shape: str) -> None:
    before = tinypl_threads()
    threaded, sync = _run(ORDER_SHAPES[shape])
    assert threaded == sync
    assert seconds_until_gone(before) < 1.0


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("workers", "maxsize", "order_maxsize", "window"),
    [(4, None, None, 4 + 8), (3, 2, None, 3 + 2), (4, None, 3, 3), (2, 6, 1, 1)],
)
def test_reorder_buffer_is_bounded_when_the_first_item_is_slow(
    workers: int, maxsize: int | None, order_maxsize: int | None, window: int
) -> None:
    """Backpressure, not an exception: at most ``window`` items are between the two ends
    (default window: what the thread stages can hold, workers + maxsize)."""
    count = InFlight()
    pipe = (
        Pipe(count.source(200))
        .map(count.hold_first(window))
        .thread(workers, maxsize)
        .order(order_maxsize)
    )
    out = []
    with iter(pipe) as stage:
        for x in stage:
            out.append(x)
            count.delivered()
    assert out == list(range(200))
    # While item 0 was held, nothing was delivered: exactly the window may have passed.
    assert 1 <= count.while_first_held <= window
    # +1: the load has handed an item out, the consumer's loop has not counted it yet.
    assert count.high <= window + 1


@pytest.mark.timeout(10)
def test_stacked_default_window_is_the_sum_of_what_the_thread_stages_hold() -> None:
    count = InFlight()
    window = (4 + 8) + (3 + 2)
    pipe = (
        Pipe(count.source(300))
        .map(count.hold_first(window))
        .thread(4)
        .map(jitter)
        .thread(3, maxsize=2)
        .order()
    )
    out = []
    with iter(pipe) as stage:
        for x in stage:
            out.append(x)
            count.delivered()
    assert out == list(range(300))
    assert 1 <= count.while_first_held <= window
    assert count.high <= window + 1


# -- .order() without concurrency, and stages it cannot cross --------------------------------


@pytest.mark.timeout(10)
def test_order_without_a_concurrent_stage_is_a_no_op() -> None:
    pipe = Pipe(range(10)).map(lambda x: x * 2).filter(lambda x: x % 3)
    ordered = pipe.order()
    plan = ordered.explain()
    assert "order.save" not in plan and "order.load" not in plan
    assert plan == pipe.explain()
    assert list(ordered) == list(pipe)

    twice = Pipe(range(10)).thread(2).order().map(str).order()
    plan = twice.explain()
    assert plan.count("order.save") == 1 and plan.count("order.load") == 1
    assert list(twice) == [str(x) for x in range(10)]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "between",
    [
        lambda p: p.partition(2),
        lambda p: p.partition(2, markers="after"),
        lambda p: p.until(Marker("m")),
        lambda p: p.insert_marker(Marker("m")),
        lambda p: p.ratelimit(10, 1.0),
    ],
    ids=["partition", "partition(markers=after)", "until", "insert_marker", "ratelimit"],
)
def test_a_stateful_stage_between_thread_and_order_fails_at_build_time(
    between: Callable[[Pipe[Any]], Pipe[Any]],
) -> None:
    threaded = Pipe(range(10)).map(jitter).thread(2)
    with pytest.raises(ValueError, match="order"):
        between(threaded).order()
    assert not tinypl_threads()  # nothing ran
    # Before the thread stage (outside the ordered region) the same stage is fine.
    assert list(between(Pipe(range(4))).map(lambda x: x).thread(2).order()) == list(
        between(Pipe(range(4)))
    )


# -- markers keep their positions ---------------------------------------------------------


@pytest.mark.timeout(10)
def test_markers_keep_their_exact_positions_through_order() -> None:
    m1, m2 = Marker("one"), Marker("two")

    def build(threaded: bool) -> Pipe[Any]:
        pipe = (
            Pipe([list(range(i % 5)) for i in range(80)])
            .insert_marker(m1, every=3)
            .insert_marker(m2, every=4, after=False)
            .flatten()
            .map(jitter)
        )
        pipe = _thread(pipe, threaded, 4, 3).filter(lambda x: x % 3 != 1)
        return _thread(pipe.map(jitter), threaded, 2).order()

    with iter(build(True)) as stage:
        threaded_raw = list(stage.raw)
    with iter(build(False)) as stage:
        sync_raw = list(stage.raw)
    assert any(x is m1 for x in sync_raw) and any(x is m2 for x in sync_raw)
    assert threaded_raw == sync_raw


@pytest.mark.timeout(10)
def test_until_cuts_the_same_segments_with_threads_and_order() -> None:
    m = Marker("m")

    def segments(threaded: bool) -> list[list[int]]:
        pipe = Pipe([range(i % 7) for i in range(60)]).insert_marker(m, every=2).flatten()
        pipe = _thread(pipe.map(jitter), threaded, 4).order()
        calls: list[int] = []
        out = []
        with iter(pipe.on(m, lambda: calls.append(1))) as stage:
            for _ in range(30):
                out.append(list(pl.marker.until(stage, marker=m)))
            assert list(stage) == []
        assert len(calls) == 30
        return out

    assert segments(True) == segments(False)


# -- pl.order.save / pl.order.load ----------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("maxsize", [1, 5])
def test_save_lets_at_most_maxsize_items_past_before_load_hands_out_the_oldest(
    maxsize: int,
) -> None:
    count = InFlight()
    order = pl.order.save(count.source(150), maxsize=maxsize)
    pipe = pl.thread.map(order, count.hold_first(maxsize), workers=4)
    pipe = pl.thread.map(pipe, jitter, workers=3, maxsize=2)
    pipe = pl.order.load(pipe, order)
    out = []
    for x in pipe:
        out.append(x)
        count.delivered()
    assert out == list(range(150))
    assert 1 <= count.while_first_held <= maxsize
    assert count.high <= maxsize + 1
    pipe.close()


@pytest.mark.timeout(20)
def test_save_guards_a_generator_source_from_concurrent_workers() -> None:
    order = pl.order.save(numbers(3000), maxsize=16)
    pipe = pl.order.load(pl.thread.each(order, lambda x: None, workers=8), order)
    assert list(pipe) == list(range(3000))


@pytest.mark.timeout(10)
def test_load_rejects_what_is_not_the_matching_save_stage() -> None:
    order = pl.order.save(range(5), maxsize=2)
    other = pl.order.save(range(5), maxsize=2)
    threaded = pl.thread.queue(order, workers=2)
    with pytest.raises(TypeError):
        pl.order.load(threaded, pl.map(range(3), str))
    with pytest.raises(ValueError):
        pl.order.load(threaded, other)
    assert list(pl.order.load(threaded, order)) == [0, 1, 2, 3, 4]


# -- errors and shutdown inside an ordered region -------------------------------------------


class Boom(Exception):
    pass


def _fails_at(n: int) -> Callable[[int], int]:
    def fails(x: int) -> int:
        if x == n:
            raise Boom(f"item {x}")
        return x

    return fails


ERROR_SHAPES: dict[str, Callable[[Callable[[int], int]], Pipe[int]]] = {
    "thread(2)": lambda f: Pipe(range(50)).map(f).thread(2).order(),
    "thread(4)": lambda f: Pipe(range(50)).map(f).thread(4).order(),
    "stacked, first": lambda f: Pipe(range(50)).map(f).thread(3).map(jitter).thread(2).order(),
    "stacked, second": lambda f: Pipe(range(50)).map(jitter).thread(3).map(f).thread(2).order(),
    "after the thread stage": lambda f: Pipe(range(50)).thread(3).map(f).order(),
    "pl.order.save/load": lambda f: Pipe(
        pl.order.load(
            pl.thread.map(order := pl.order.save(range(50), maxsize=8), f, workers=3), order
        )
    ),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("fail_at", [0, 3, 40])
@pytest.mark.parametrize("shape", list(ERROR_SHAPES))
def test_error_inside_the_ordered_region_is_raised_before_any_later_item(
    shape: str, fail_at: int
) -> None:
    """The sync run yields 0 .. fail_at - 1, then raises. Threaded and ordered, the consumer
    gets a prefix of that (the error may come sooner, at its next pull), never an item
    after the one that failed."""
    before = tinypl_threads()
    stage = iter(ERROR_SHAPES[shape](_fails_at(fail_at)))
    out = []
    with pytest.raises(Boom, match=f"item {fail_at}"):
        for x in stage:
            out.append(x)
    stage.close()
    assert seconds_until_gone(before) < 1.0
    assert out == list(range(len(out))), out
    assert len(out) <= fail_at, f"got {out[fail_at:]} after item {fail_at} failed"


@pytest.mark.timeout(10)
def test_error_while_the_other_workers_wait_for_the_window_is_raised() -> None:
    """Item 0 fails once item 1 is done: the window (2) is then full, so every other
    worker waits for a number that only item 0 could free. The error must still come."""
    before = tinypl_threads()
    one_done = threading.Event()

    def f(x: int) -> int:
        if x == 0:
            one_done.wait(5)
            raise Boom("item 0")
        if x == 1:
            one_done.set()
        return x

    order = pl.order.save(range(100), maxsize=2)
    stage = pl.order.load(pl.thread.map(order, f, workers=3), order)
    with pytest.raises(Boom, match="item 0"):
        next(stage)
    stage.close()
    assert seconds_until_gone(before) < 1.0


@pytest.mark.timeout(10)
def test_close_while_workers_wait_for_the_window() -> None:
    before = tinypl_threads()
    count = InFlight()
    stage = iter(Pipe(count.source(10**6)).map(count.hold_first(3)).thread(4).order(maxsize=3))
    assert next(stage) == 0
    assert next(stage) == 1
    started = time.monotonic()
    stage.close()
    assert seconds_until_gone(before) < 1.0
    assert time.monotonic() - started < 1.0
    assert count.high <= 3 + 1


@pytest.mark.timeout(10)
def test_closing_never_makes_an_ordered_stage_skip_or_reorder() -> None:
    """After close(), pulling again yields nothing, or the sequence right where it was."""
    release_1, release_3, holding_3 = threading.Event(), threading.Event(), threading.Event()

    def f(x: int) -> int:
        if x == 1:
            release_1.wait(3)  # the load buffers later items while it waits for 1
        elif x == 3:
            holding_3.set()
            release_3.wait(3)  # item 3 is still in a worker when the stage is closed
        elif x == 8:
            release_1.set()
        return x

    stage = iter(Pipe(range(50)).map(f).thread(4).order())
    assert [next(stage), next(stage), next(stage)] == [0, 1, 2]
    assert holding_3.wait(3)
    release_3.set()
    stage.close()
    rest = list(stage)
    assert rest == list(range(3, 3 + len(rest))), f"after close: {rest}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("how", "window"), [("del", "maxsize=2"), ("break", "")])
def test_dropping_an_ordered_run_stalled_on_its_window_stops_the_workers(
    how: str, window: str
) -> None:
    """Garbage collection of an ordered run whose workers wait for the order window
    (``del`` of the stage, or leaving a ``for`` loop with the stage dropped).

    Run in a subprocess: the failure mode is a finalizer blocking for minutes.
    """
    result = run_python(
        f"""
        import gc, threading, time
        from tinypl import Pipe

        def alive():
            return [t.name for t in threading.enumerate() if t.name.startswith("tinypl-")]

        lock = threading.Lock()
        pulled = 0
        window = 2 if "{window}" else 9  # maxsize=2, or 3 workers + a queue of 6
        full = threading.Event()  # every number of the window is issued

        def count(x):
            global pulled
            with lock:
                pulled += 1
                if pulled == window:
                    full.set()
            return x

        def slow_first(x):
            if x == 0:
                assert full.wait(5)  # the other items fill the window meanwhile
            return x

        pipe = Pipe(range(10**6)).map(count).map(slow_first).thread(3).order({window})
        # The first item comes out once the window is full: the workers now wait on it.
        if "{how}" == "del":
            stage = iter(pipe)
            next(stage)
        else:
            def first_item():
                for x in iter(pipe):
                    return x
            first_item()
        started = time.monotonic()
        if "{how}" == "del":
            del stage
        gc.collect()
        while alive() and time.monotonic() - started < 3:
            time.sleep(0.01)
        print("stopped" if not alive() else "alive", round(time.monotonic() - started, 2))
        """,
        timeout=6,
    )
    assert result.returncode == 0, result.stderr
    verdict, seconds = result.stdout.split()
    assert verdict == "stopped"
    assert float(seconds) < 1.0


@pytest.mark.timeout(10)
def test_dropping_an_ordered_run_that_is_not_stalled() -> None:
    before = tinypl_threads()
    stage = iter(Pipe(range(100)).map(jitter).thread(3).order())
    assert list(stage) == list(range(100))
    del stage
    gc.collect()
    assert seconds_until_gone(before) < 1.0
