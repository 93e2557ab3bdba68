"""Thread stages: concurrency, bounded queues, markers, errors and shutdown (issue #3).

Synchronisation in these tests uses Events and Barriers; sleeps only make a stage slow.
Every test that waits for something has an explicit, short ``pytest.mark.timeout``.
"""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from threadwatch import seconds_until_gone, tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe

# -- helpers ------------------------------------------------------------------------------




def wait_for(condition: Callable[[], bool], limit: float = 5.0) -> bool:
    """Poll ``condition`` (an observation, not a synchronisation point) until true."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def numbers(n: int) -> Iterator[int]:
    """A generator source that releases the GIL inside its frame (as one doing I/O does),
    so entering it from two threads at once raises 'generator already executing'."""
    for i in range(n):
        time.sleep(0)
        yield i


def run_python(code: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:  # pragma: no cover - only on a hang
        pytest.fail(f"the subprocess hung for {timeout} s:\n{error.stdout}\n{error.stderr}")


# -- .thread(): attributes, bounds, concurrency -------------------------------------------


@pytest.mark.timeout(10)
def test_thread_stage_exposes_workers_maxsize_and_fill() -> None:
    before = tinypl_threads()
    with iter(Pipe(range(20)).thread(4)) as stage:
        assert stage.workers == 4
        assert stage.maxsize == 8  # default: 2 * workers
        assert stage.fill == 0.0  # nothing runs before the first pull
        assert tinypl_threads() == before
        assert sorted(stage) == list(range(20))
    with iter(Pipe(range(5)).thread(3, maxsize=5)) as stage:
        assert (stage.workers, stage.maxsize) == (3, 5)
        assert sorted(stage) == list(range(5))
    # The module-level form: pl.thread.queue(pipe, workers, maxsize=None, on_worker_error=...)
    with pl.thread.queue(range(10), 4) as stage:
        assert (stage.workers, stage.maxsize) == (4, 8)
        assert sorted(stage) == list(range(10))
    with pl.thread.queue(range(10), 2, maxsize=3, on_worker_error="forward") as stage:
        assert (stage.workers, stage.maxsize) == (2, 3)
        assert sorted(stage) == list(range(10))
    with pl.thread.map(range(10), str, 3, 1) as stage:
        assert (stage.workers, stage.maxsize) == (3, 1)
        assert sorted(stage) == sorted(map(str, range(10)))


class ReentryDetector:
    """A plain (non-generator) iterator that notices being entered by two threads at once;
    it releases the GIL inside ``__next__``, as one doing I/O would."""

    def __init__(self, n: int) -> None:
        self._items = iter(range(n))
        self._inside = 0
        self.overlaps = 0

    def __iter__(self) -> ReentryDetector:
        return self

    def __next__(self) -> int:
        self._inside += 1
        if self._inside > 1:
            self.overlaps += 1
        try:
            time.sleep(0.0002)
            return next(self._items)
        finally:
            self._inside -= 1


@pytest.mark.timeout(15)
@pytest.mark.parametrize("explicit", [True, False], ids=["mutex()", "auto guard"])
def test_mutex_lets_one_thread_at_a_time_pull_the_stages_above(explicit: bool) -> None:
    source = ReentryDetector(400)
    pipe = Pipe(source).mutex() if explicit else Pipe(source)
    if explicit:
        assert "mutex()" in pipe.explain()
    with iter(pipe.map(lambda x: x).thread(8, maxsize=2)) as stage:
        assert sorted(stage) == list(range(400))
    assert source.overlaps == 0


@pytest.mark.timeout(10)
def test_fill_reaches_one_when_the_consumer_idles() -> None:
    with iter(Pipe(range(1000)).thread(2, maxsize=4)) as stage:
        next(stage)
        seen: list[float] = []

        def full() -> bool:
            seen.append(stage.fill)
            return seen[-1] == 1.0

        assert wait_for(full)
        assert all(0.0 <= f <= 1.0 for f in seen)


@pytest.mark.timeout(10)
def test_fill_is_zero_once_the_stage_is_exhausted() -> None:
    """An exhausted (empty) queue must not report itself as partly or even fully filled."""
    stage = pl.thread.queue(range(3), workers=2, maxsize=1)
    assert sorted(stage) == [0, 1, 2]
    assert stage.fill == 0.0


@pytest.mark.timeout(10)
def test_queue_holds_at_most_maxsize_plus_workers_items() -> None:
    lock = threading.Lock()
    pulled = delivered = high = 0

    def count(x: int) -> int:
        nonlocal pulled, high
        with lock:
            pulled += 1
            high = max(high, pulled - delivered)
        return x

    with iter(Pipe(range(300)).map(count).thread(3, maxsize=2)) as stage:
        for _ in stage:
            with lock:
                delivered += 1
            if delivered % 50 == 0:
                time.sleep(0.02)  # a slow consumer: the workers must block, not buffer
    assert delivered == 300
    # maxsize + workers, +1: the item the consumer has taken but not yet counted.
    assert high <= 2 + 3 + 1


def _barrier_fn(barrier: threading.Barrier) -> Callable[[Any], Any]:
    def meet(x: Any) -> Any:
        barrier.wait()  # breaks (BrokenBarrierError) unless `parties` calls overlap
        return x

    return meet


WORKERS = 4
M = Marker("m")

# Each builds a threaded pipeline whose map function ``f`` must run in WORKERS threads at
# once; the result is the expected multiset of outputs.
CONCURRENT_CASES: dict[str, tuple[Callable[[Callable[[Any], Any]], Any], list[Any]]] = {
    "range source": (lambda f: iter(Pipe(range(16)).map(f).thread(WORKERS)), list(range(16))),
    "generator source": (
        lambda f: iter(Pipe(numbers(16)).map(f).thread(WORKERS)),
        list(range(16)),
    ),
    "flatten upstream": (
        lambda f: iter(
            Pipe(numbers(8)).map(lambda x: numbers(2)).flatten().map(f).thread(WORKERS)
        ),
        [0, 1] * 8,
    ),
    "partition upstream": (
        lambda f: iter(Pipe(numbers(32)).partition(2).map(f).map(tuple).thread(WORKERS)),
        [(i, i + 1) for i in range(0, 32, 2)],
    ),
    "insert_marker upstream": (
        lambda f: iter(Pipe(numbers(16)).insert_marker(M, every=3).map(f).thread(WORKERS)),
        list(range(16)),
    ),
    "ratelimit upstream": (
        lambda f: iter(Pipe(numbers(16)).ratelimit(10_000, 0.01).map(f).thread(WORKERS)),
        list(range(16)),
    ),
    "explicit mutex": (
        lambda f: iter(Pipe(numbers(16)).mutex().map(f).thread(WORKERS)),
        list(range(16)),
    ),
    "pl.thread.map": (lambda f: pl.thread.map(numbers(16), f, workers=WORKERS), list(range(16))),
    "pl.thread.each": (
        lambda f: pl.thread.each(numbers(16), f, workers=WORKERS),
        list(range(16)),
    ),
    "pl.map + pl.thread.queue over a range": (
        lambda f: pl.thread.queue(pl.map(range(16), f), workers=WORKERS),
        list(range(16)),
    ),
    "pl.thread.mutex + pl.map + pl.thread.queue": (
        lambda f: pl.thread.queue(pl.map(pl.thread.mutex(numbers(16)), f), workers=WORKERS),
        list(range(16)),
    ),
}


@pytest.mark.timeout(15)
def test_a_live_stage_over_a_generator_is_guarded_as_a_whole() -> None:
    """Decision: `pl.map(generator, f)` is built before any thread stage exists, so a later
    `pl.thread.queue` guards it whole and `f` runs one call at a time (0.1.0 raised
    "generator already executing"). `pl.thread.map`, or `pl.thread.mutex` on the
    generator as the seed shows, runs `f` concurrently (see the cases above)."""
    active = 0
    peak = 0
    lock = threading.Lock()

    def f(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.002)
        with lock:
            active -= 1
        return x

    with pl.thread.queue(pl.map(numbers(40), f), workers=WORKERS) as stage:
        assert sorted(stage) == list(range(40))
    assert peak == 1


@pytest.mark.timeout(15)
@pytest.mark.parametrize("case", list(CONCURRENT_CASES))
def test_user_functions_upstream_run_concurrently(case: str) -> None:
    build, expected = CONCURRENT_CASES[case]
    stage = build(_barrier_fn(threading.Barrier(WORKERS, timeout=3)))
    with stage:
        assert Counter(stage) == Counter(expected)


@pytest.mark.timeout(15)
def test_stacked_thread_stages_each_run_their_functions_concurrently() -> None:
    f = _barrier_fn(threading.Barrier(4, timeout=3))
    g = _barrier_fn(threading.Barrier(3, timeout=3))
    pipe = Pipe(range(24)).map(f).map(lambda x: x + 1).thread(4).map(g).thread(3)
    with iter(pipe) as stage:
        assert sorted(stage) == list(range(1, 25))


def _tuples(items: list[Any]) -> Counter[Any]:
    return Counter(tuple(x) if isinstance(x, list) else x for x in items)


HAMMER_CASES: dict[str, tuple[Callable[[], Pipe[Any]], list[Any]]] = {
    "map": (
        lambda: Pipe(numbers(3000)).map(lambda x: x).thread(8, maxsize=2),
        list(range(3000)),
    ),
    "flatten of generators": (
        lambda: Pipe(numbers(80)).map(numbers).flatten().thread(8, maxsize=3),
        [x for n in range(80) for x in range(n)],
    ),
    "insert_marker + partition": (
        lambda: Pipe(numbers(3000)).insert_marker(M, every=7).partition(3, "after").thread(8),
        [list(range(i, i + 3)) for i in range(0, 3000, 3)],
    ),
    "ratelimit + stacked": (
        lambda: Pipe(numbers(3000)).ratelimit(10**6, 1.0).thread(8).map(str).thread(5),
        [str(i) for i in range(3000)],
    ),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(HAMMER_CASES))
def test_guarded_stages_are_never_entered_concurrently(case: str) -> None:
    """Hammered by many workers, a generator source (and flatten, partition, ratelimit
    above a thread stage) never raises 'generator already executing'."""
    build, expected = HAMMER_CASES[case]
    with iter(build()) as stage:
        assert _tuples(list(stage)) == _tuples(expected)


# -- markers --------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_every_marker_passes_a_thread_stage_exactly_once() -> None:
    m1, m2 = Marker("one"), Marker("two")
    seen: Counter[Marker] = Counter()
    lock = threading.Lock()

    def saw(marker: Marker) -> Callable[[], None]:
        def note() -> None:
            with lock:
                seen[marker] += 1

        return note

    pipe = (
        Pipe(range(100))
        .insert_marker(m1, every=3)
        .map(lambda x: time.sleep(0.0005 * (x % 3)) or x)
        .insert_marker(m2, every=7)
        .thread(4, maxsize=3)
    )
    any_marker = Marker("any")  # the key under which `.on(None, ...)` counts
    observed = pipe.on(m1, saw(m1)).on(m2, saw(m2)).on(None, saw(any_marker))
    with iter(observed) as stage:
        assert sorted(stage) == list(range(100))
    assert seen == {m1: 33, m2: 14, any_marker: 33 + 14}

    with iter(pipe.map(lambda x: x).thread(3)) as stage:
        raw = list(stage.raw)
    assert Counter(x for x in raw if isinstance(x, Marker)) == {m1: 33, m2: 14}
    assert sorted(x for x in raw if not isinstance(x, Marker)) == list(range(100))


# -- errors ---------------------------------------------------------------------------------


def _boom_at(n: int, exc: type[BaseException] = KeyError) -> Callable[[int], int]:
    def user_function_that_fails(x: int) -> int:
        if x == n:
            raise exc(f"item {x}")
        time.sleep(0.001)
        return x

    return user_function_that_fails


@pytest.mark.timeout(10)
def test_worker_error_is_reraised_with_its_type_and_worker_traceback() -> None:
    before = tinypl_threads()
    stage = iter(Pipe(range(1000)).map(_boom_at(20)).thread(4))
    got = []
    with pytest.raises(KeyError, match="item 20") as info:
        for x in stage:
            got.append(x)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "user_function_that_fails" in names
    assert 20 not in got
    # The other workers are stopped (and joined) without any close().
    assert seconds_until_gone(before) < 1.0
    stage.close()


@pytest.mark.timeout(10)
def test_source_error_is_reraised_with_its_type_and_traceback() -> None:
    def failing_source() -> Iterator[int]:
        yield from range(5)
        raise OSError("disk gone")

    before = tinypl_threads()
    stage = iter(Pipe(failing_source()).map(lambda x: x).thread(3))
    with pytest.raises(OSError, match="disk gone") as info:
        list(stage)
    assert "failing_source" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert seconds_until_gone(before) < 1.0
    stage.close()


@pytest.mark.timeout(10)
def test_error_in_the_first_of_stacked_thread_stages_reaches_the_consumer() -> None:
    before = tinypl_threads()
    pipe = Pipe(range(1000)).map(_boom_at(30, ZeroDivisionError)).thread(3).map(str).thread(2)
    stage = iter(pipe)
    with pytest.raises(ZeroDivisionError) as info:
        list(stage)
    assert "user_function_that_fails" in [
        f.name for f in traceback.extract_tb(info.value.__traceback__)
    ]
    assert seconds_until_gone(before) < 1.0
    stage.close()


@pytest.mark.timeout(10)
def test_forward_raises_worker_exception_chained_from_the_original() -> None:
    assert pl.thread.queue.WorkerException is pl.thread.WorkerException
    assert issubclass(pl.thread.queue.WorkerException, pl.WorkerError)
    stage = pl.thread.queue(
        pl.map(range(100), _boom_at(7)), workers=3, maxsize=2, on_worker_error="forward"
    )
    with stage, pytest.raises(pl.thread.queue.WorkerException) as info:
        list(stage)
    assert isinstance(info.value.__cause__, KeyError)
    names = [f.name for f in traceback.extract_tb(info.value.__cause__.__traceback__)]
    assert "user_function_that_fails" in names

    forwarding = Pipe(range(100)).map(_boom_at(7)).thread(2, on_worker_error="forward")
    with iter(forwarding) as stage, pytest.raises(pl.WorkerError) as info2:
        list(stage)
    assert isinstance(info2.value.__cause__, KeyError)


@pytest.mark.timeout(10)
def test_forward_and_print_also_logs_the_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="tinypl")
    stage = pl.thread.map(range(100), _boom_at(5), workers=2, on_worker_error="forward-and-print")
    with stage, pytest.raises(pl.thread.queue.WorkerException) as info:
        list(stage)
    assert isinstance(info.value.__cause__, KeyError)
    records = [r for r in caplog.records if r.name == "tinypl" and r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is info.value.__cause__


@pytest.mark.timeout(30)
def test_exit_mode_never_ends_the_interpreter() -> None:
    result = run_python(
        """
        import threading
        import tinypl as pl

        def boom(x):
            if x == 3:
                raise KeyError("three")
            return x

        stage = pl.thread.map(range(100), boom, workers=2, on_worker_error="exit")
        try:
            list(stage)
        except pl.WorkerError as error:
            print("caught", type(error.__cause__).__name__)
        stage.close()
        print("still alive", [t.name for t in threading.enumerate() if t.name != "MainThread"])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["caught KeyError", "still alive []"]
    assert "KeyError" in result.stderr  # logged, as with forward-and-print


# -- shutdown -------------------------------------------------------------------------------


class SlowCalls:
    """A map function that takes ``seconds``; counts calls started and finished."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0
        self.finished = 0
        self._lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self._lock:
            self.started += 1
        time.sleep(self.seconds)
        with self._lock:
            self.finished += 1
        return x


SHUTDOWN_PIPES: dict[str, Callable[[SlowCalls], Pipe[Any]]] = {
    "thread": lambda f: Pipe(range(10**6)).map(f).thread(4),
    "generator source": lambda f: Pipe(numbers(10**6)).map(f).thread(4, maxsize=1),
    "stacked": lambda f: Pipe(range(10**6)).map(f).thread(4).map(str).thread(3),
    "stacked, ordered": lambda f: Pipe(range(10**6)).map(f).thread(3).map(f).thread(2).order(),
    "ordered, small window": lambda f: Pipe(range(10**6)).map(f).thread(4).order(maxsize=2),
}
UNORDERED = ["thread", "generator source", "stacked"]
ORDERED = ["stacked, ordered", "ordered, small window"]
# Dropping an ordered run without close() ("break", "del") is tested in test_order.py, in a
# subprocess: when its workers wait on the order window, a finalizer can block for minutes.


def _stop(pipe: Pipe[Any], how: str) -> float:
    """Run ``pipe`` to its first item, stop it as ``how`` says; the time it was stopped."""
    if how == "close":
        stage = iter(pipe)
        next(stage)
        started = time.monotonic()
        stage.close()
        assert stage.closed
        stage.close()  # idempotent
        return started
    if how == "with":
        with iter(pipe) as stage:
            next(stage)
            started = time.monotonic()
        return started
    if how == "break":

        def first_item() -> Any:
            for x in iter(pipe):
                return x  # leaves the loop; the stage is dropped with the frame
            return None

        assert first_item() is not None
        started = time.monotonic()
        gc.collect()
        return started
    assert how == "del"
    stage = iter(pipe)
    next(stage)
    started = time.monotonic()
    del stage
    gc.collect()
    return started


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("kind", "how"),
    [(kind, how) for kind in UNORDERED for how in ("close", "with", "break", "del")]
    + [(kind, how) for kind in ORDERED for how in ("close", "with")],
)
def test_workers_stop_and_are_joined_within_one_second(kind: str, how: str) -> None:
    before_all = set(threading.enumerate())
    before = tinypl_threads()
    slow = SlowCalls(0.2)
    started = _stop(SHUTDOWN_PIPES[kind](slow), how)
    elapsed = seconds_until_gone(before)
    assert elapsed < 1.0, f"{kind}/{how}: workers alive {time.monotonic() - started:.2f} s"
    assert time.monotonic() - started < 1.0
    # A worker inside the slow function finished that call; none is left half-way.
    assert slow.started == slow.finished
    assert set(threading.enumerate()) <= before_all  # no thread of any kind left behind


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    "build",
    [
        lambda: Pipe(_slow_numbers(0.25)).map(lambda x: x).thread(6),
        lambda: Pipe(range(10**6)).ratelimit(1, 0.25).thread(6),
    ],
    ids=["slow generator source", "ratelimit"],
)
def test_close_does_not_start_new_pulls_of_a_guarded_upstream(
    build: Callable[[], Pipe[Any]],
) -> None:
    """Workers queued on the auto mutex must not each run one more slow pull after close.

    Only the pull in progress when close() is called may finish (<= 0.25 s here).
    """
    before = tinypl_threads()
    stage = iter(build())
    next(stage)
    started = time.monotonic()
    stage.close()
    closing = time.monotonic() - started
    assert seconds_until_gone(before) < 1.0
    assert closing < 1.0, f"close() took {closing:.2f} s"


def _slow_numbers(seconds: float) -> Iterator[int]:
    i = 0
    while True:
        time.sleep(seconds)
        yield i
        i += 1


@pytest.mark.timeout(10)
def test_close_before_the_first_pull_starts_no_thread() -> None:
    calls = []
    stage = iter(Pipe(range(10)).map(calls.append).thread(4))
    stage.close()
    assert not tinypl_threads()
    assert list(stage) == []
    assert calls == []


@pytest.mark.timeout(10)
def test_worker_threads_are_named_tinypl() -> None:
    before = set(threading.enumerate())
    before_tinypl = tinypl_threads()
    entered = threading.Barrier(3 + 1, timeout=5)
    release = threading.Event()

    def hold(x: int) -> int:
        if x < 3:
            entered.wait()
            release.wait(5)
        return x

    with iter(Pipe(range(10)).map(hold).thread(3)) as stage:
        pulling = threading.Thread(target=lambda: next(stage), name="consumer")
        pulling.start()
        entered.wait()  # all three workers are inside `hold`
        new = set(threading.enumerate()) - before - {pulling}
        release.set()
        pulling.join(5)
    assert len(new) == 3
    assert all(t.name.startswith("tinypl-") for t in new), [t.name for t in new]
    assert seconds_until_gone(before_tinypl) < 1.0


@pytest.mark.timeout(10)
def test_keyboard_interrupt_while_blocked_on_the_queue_stops_the_workers() -> None:
    """A real SIGINT (Ctrl-C) while the consumer waits: the workers stop with no close()."""
    before = tinypl_threads()
    go = threading.Event()

    def slow(x: int) -> int:
        go.wait(3)
        return x

    stage = iter(Pipe(range(100)).map(slow).thread(2))
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()

    def interrupt() -> None:
        signal.pthread_kill(main, signal.SIGINT)
        go.set()

    timer = threading.Timer(0.1, interrupt)
    timer.start()
    interrupted = False
    try:
        next(stage)
    except KeyboardInterrupt:
        interrupted = True
        stopped = time.monotonic()
    timer.join()
    assert interrupted
    assert seconds_until_gone(before) < 1.0
    assert time.monotonic() - stopped < 1.0
    stage.close()


@pytest.mark.timeout(10)
def test_keyboard_interrupt_raised_downstream_in_the_consumer() -> None:
    before = tinypl_threads()
    slow = SlowCalls(0.05)

    def interrupt(x: int) -> int:
        raise KeyboardInterrupt

    interrupted = False
    try:
        with iter(Pipe(range(10**6)).map(slow).thread(4).map(interrupt)) as stage:
            next(stage)
    except KeyboardInterrupt:
        interrupted = True
    assert interrupted
    assert stage.closed
    assert seconds_until_gone(before) < 1.0
    assert slow.started == slow.finished


@pytest.mark.timeout(10)
def test_keyboard_interrupt_in_a_worker_reaches_the_consumer() -> None:
    before = tinypl_threads()

    def interrupt(x: int) -> int:
        if x == 10:
            raise KeyboardInterrupt
        return x

    stage = iter(Pipe(range(1000)).map(interrupt).thread(3))
    interrupted = False
    try:
        list(stage)
    except KeyboardInterrupt:
        interrupted = True
    assert interrupted
    assert seconds_until_gone(before) < 1.0
    stage.close()


# -- the seed README, "Multi-threading" (verbatim) ------------------------------------------


@pytest.mark.timeout(10)
def test_seed_multithreading_queue_example(capsys: pytest.CaptureFixture[str]) -> None:
    pipe = range(100)
    pipe = pl.map(pipe, lambda x: 2 * x)

    # Prefetches up to 8 items from the pipe using 4 concurrent threads
    pipe = pl.thread.queue(pipe, workers=4, maxsize=8)

    print(next(pipe)) # Pulls a single prefetched item from the queue

    assert int(capsys.readouterr().out) in range(0, 200, 2)
    assert (pipe.workers, pipe.maxsize) == (4, 8)
    pipe.close()


@pytest.mark.timeout(10)
def test_seed_multithreading_stacking_example() -> None:
    pipe = range(100)                                   #       ||
                                                        #       ||
    pipe = pl.map(pipe, lambda x: x + 1)                #       ||
    pipe = pl.thread.queue(pipe, workers=4, maxsize=8)  # ||    \/ Workers from this queue will executed these stages  # noqa: E501
                                                        # ||
    pipe = pl.map(pipe, lambda x: x * 2)                # ||
    pipe = pl.thread.queue(pipe, workers=4, maxsize=8)  # \/ Workers from this queue will executed these stages  # noqa: E501

    assert sorted(pipe) == [2 * (x + 1) for x in range(100)]


@pytest.mark.timeout(10)
def test_seed_multithreading_thread_map_example() -> None:
    pipe = range(100)
    pipe = pl.thread.map(pipe, lambda x: 2 * x, workers=4, maxsize=8)

    assert sorted(pipe) == [2 * x for x in range(100)]


@pytest.mark.timeout(10)
def test_seed_multithreading_mutex_example() -> None:
    def numbers(): # Raises "ValueError: generator already executing" when called concurrently
        i = 0
        while True:
            i += 2
            yield i

    pipe = numbers()
    pipe = pl.thread.mutex(pipe) # Enforce mutually exclusive access to previous stages
    pipe = pl.thread.map(pipe, lambda x: 10 * x, workers=16)

    got = [next(pipe) for _ in range(200)]
    pipe.close()
    assert len(set(got)) == 200
    assert all(x % 20 == 0 and x > 0 for x in got)
