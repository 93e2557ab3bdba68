"""The module-level API of tinypl 0.1.0: ``pl.map(pipe, f)`` and friends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from threadwatch import tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe

# -- each function --------------------------------------------------------------------------


def test_map() -> None:
    stage = pl.map(range(4), lambda x: x + 1)
    assert isinstance(stage, pl.Stage)
    assert list(stage) == [1, 2, 3, 4]


def test_filter() -> None:
    assert list(pl.filter(range(10), lambda x: x % 3 == 0)) == [0, 3, 6, 9]


def test_each() -> None:
    seen: list[int] = []
    assert list(pl.each([1, 2, 3], seen.append)) == [1, 2, 3]
    assert seen == [1, 2, 3]


def test_flatten_and_flatten_lazy() -> None:
    assert pl.flatten_lazy is pl.flatten
    assert list(pl.flatten([[1], [], [2, 3]])) == [1, 2, 3]

    log: list[int] = []

    def chunk() -> Iterator[int]:
        for i in range(3):
            log.append(i)
            yield i

    stage = pl.flatten([chunk()])
    assert next(stage) == 0
    assert log == [0]


def test_flatten_eager() -> None:
    log: list[int] = []

    def chunk() -> Iterator[int]:
        for i in range(3):
            log.append(i)
            yield i

    stage = pl.flatten_eager([chunk(), [9]])
    assert next(stage) == 0
    assert log == [0, 1, 2]
    assert list(stage) == [1, 2, 9]


def test_partition() -> None:
    assert list(pl.partition(range(5), 2)) == [[0, 1], [2, 3], [4]]
    stage, marker = pl.marker.insert_periodic(range(5), n=2)
    assert list(pl.partition(stage, 3, markers="after", split_on_marker=True).raw) == [
        [0, 1],
        marker,
        [2, 3],
        marker,
        [4],
    ]


def test_partition_markers_none_raises() -> None:
    stage, _ = pl.marker.insert_periodic(range(5), n=1)
    with pytest.raises(pl.MarkerNotAllowedError, match="partition"):
        list(pl.partition(stage, 2))


def test_ratelimit() -> None:
    start = time.monotonic()
    assert list(pl.ratelimit(range(7), num=3, period=0.1)) == list(range(7))
    assert time.monotonic() - start >= 0.2 - 0.01


def test_validation_happens_at_call_time() -> None:
    with pytest.raises(TypeError, match="fn"):
        pl.map(range(3), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="markers"):
        pl.partition(range(3), 2, markers="sideways")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        pl.map(5, str)  # type: ignore[arg-type]


MODULE_LEVEL_INVALID: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("map", lambda: pl.map([1], None), TypeError, "fn"),  # type: ignore[arg-type]
    ("filter", lambda: pl.filter([1], None), TypeError, "pred"),  # type: ignore[arg-type]
    ("each", lambda: pl.each([1], None), TypeError, "fn"),  # type: ignore[arg-type]
    ("partition", lambda: pl.partition([1], 0), ValueError, "n"),
    ("ratelimit-num", lambda: pl.ratelimit([1], 0, 1.0), ValueError, "num"),
    ("ratelimit-period", lambda: pl.ratelimit([1], 1, 0.0), ValueError, "period"),
    ("insert_periodic-n", lambda: pl.marker.insert_periodic([1], n=0), ValueError, "n"),
    (
        "insert_periodic-after",
        lambda: pl.marker.insert_periodic([1], after=None),  # type: ignore[arg-type]
        TypeError,
        "after",
    ),
    ("on-fn", lambda: pl.marker.on([1], None), TypeError, "fn"),  # type: ignore[arg-type]
    ("on-marker", lambda: pl.marker.on([1], print, marker="m"), TypeError, "marker"),  # type: ignore[arg-type]
    ("until-marker", lambda: pl.marker.until([1], "m"), TypeError, "marker"),  # type: ignore[arg-type]
    ("thread-workers", lambda: pl.thread.queue([1], 0), ValueError, "workers"),
    ("thread-map-fn", lambda: pl.thread.map([1], None, 2), TypeError, "fn"),  # type: ignore[arg-type]
    ("thread-maxsize", lambda: pl.thread.map([1], str, 2, maxsize=0), ValueError, "maxsize"),
    ("order-save", lambda: pl.order.save([1], maxsize=0), ValueError, "maxsize"),
    ("print_on_item", lambda: pl.debug.print_on_item([1], 3), TypeError, "msg_fn"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [case[1:] for case in MODULE_LEVEL_INVALID],
    ids=[case[0] for case in MODULE_LEVEL_INVALID],
)
def test_validation_errors_name_the_module_level_argument(
    build: Callable[[], object], error: type[Exception], argument: str
) -> None:
    # The message should name the argument as the module-level function calls it.
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert argument in message.replace(":", " ").split(), message


def test_calls_do_not_start_generators_or_user_functions() -> None:
    started: list[bool] = []
    calls: list[Any] = []

    def numbers() -> Iterator[int]:
        started.append(True)
        yield from range(3)

    stage = pl.map(numbers(), calls.append)
    stage = pl.filter(stage, calls.append)
    stage, marker = pl.marker.insert_periodic(stage, n=1)
    stage = pl.marker.on(stage, lambda: calls.append("on"), marker=marker)
    assert started == []
    assert calls == []
    stage.close()


# -- shared state ---------------------------------------------------------------------------


def test_an_iterable_gets_its_own_iterator_per_stage() -> None:
    numbers = [0, 1, 2, 3, 4]
    pipe1 = pl.map(numbers, lambda x: x + 1)
    pipe2 = pl.map(numbers, lambda x: x + 1)
    assert next(pipe1) == 1
    assert next(pipe2) == 1
    assert list(pipe1) == [2, 3, 4, 5]
    assert list(pipe2) == [2, 3, 4, 5]


def test_a_fluent_pipe_gets_a_fresh_run_per_stage() -> None:
    pipe = Pipe(range(3)).map(lambda x: x * 2)
    assert list(pl.map(pipe, str)) == ["0", "2", "4"]
    assert list(pl.map(pipe, str)) == ["0", "2", "4"]


def test_an_iterator_is_shared() -> None:
    numbers = iter([0, 1, 2, 3, 4])
    pipe1 = pl.map(numbers, lambda x: x + 1)
    pipe2 = pl.map(numbers, lambda x: x + 1)
    assert next(pipe1) == 1
    assert next(pipe2) == 2
    assert next(pipe1) == 3


def test_a_live_stage_is_shared() -> None:
    mapped = pl.map(range(100), lambda x: x + 1)
    even = pl.filter(mapped, lambda x: x % 2 == 0)
    odd = pl.filter(mapped, lambda x: x % 2 == 1)
    assert next(mapped) == 1
    assert next(odd) == 3
    assert next(even) == 4
    assert next(even) == 6
    assert next(mapped) == 7


def test_a_live_marked_stage_is_shared() -> None:
    stage, marker = pl.marker.insert_periodic(range(6), n=2)
    doubled = pl.map(stage, lambda x: 2 * x)
    assert list(pl.marker.until(doubled, marker)) == [0, 2]
    assert list(pl.marker.until(stage, marker)) == [2, 3]
    assert list(pl.marker.until(doubled, marker)) == [8, 10]
    assert list(pl.marker.until(doubled, marker)) == []


def test_closing_a_stage_closes_the_shared_upstream() -> None:
    log: list[str] = []

    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            log.append("finally")

    upstream = pl.map(numbers(), lambda x: x)
    downstream = pl.filter(upstream, lambda x: True)
    assert next(downstream) == 0
    downstream.close()
    assert log == ["finally"]
    assert upstream.closed


# -- unpack ---------------------------------------------------------------------------------


def test_unpack() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    unpacked = pl.unpack(add)
    assert unpacked((1, 2)) == 3
    assert unpacked.__name__ == "add"
    assert list(pl.map([(1, 2), (3, 4)], unpacked)) == [3, 7]
    assert list(pl.map([[1, 2, 3]], pl.unpack(lambda *args: sum(args)))) == [6]


def test_unpack_generator_function_stays_a_generator_function() -> None:
    import inspect

    def pairs(a: int, b: int) -> Iterator[int]:
        yield a
        yield b

    unpacked = pl.unpack(pairs)
    assert inspect.isgeneratorfunction(unpacked)
    assert unpacked.__name__ == "pairs"
    assert list(unpacked((1, 2))) == [1, 2]
    assert list(pl.flatten(pl.map([(1, 2), (3, 4)], unpacked))) == [1, 2, 3, 4]


def test_unpack_generator_is_lazy() -> None:
    started: list[bool] = []

    def gen(a: int) -> Iterator[int]:
        started.append(True)
        yield a

    result = pl.unpack(gen)((5,))
    assert started == []
    assert list(result) == [5]


# -- pl.marker ------------------------------------------------------------------------------


def test_insert_periodic_returns_stage_and_marker() -> None:
    result = pl.marker.insert_periodic(range(5), n=2)
    assert isinstance(result, tuple)
    stage, marker = result
    assert isinstance(stage, pl.Stage)
    assert isinstance(marker, Marker)
    assert list(stage.raw) == [0, 1, marker, 2, 3, marker, 4]


def test_insert_periodic_defaults_and_before() -> None:
    stage, marker = pl.marker.insert_periodic(range(3))
    assert list(stage.raw) == [0, marker, 1, marker, 2, marker]
    stage, marker = pl.marker.insert_periodic(range(4), n=2, after=False)
    assert list(stage.raw) == [marker, 0, 1, marker, 2, 3]


def test_insert_periodic_makes_a_new_marker_each_time() -> None:
    _, first = pl.marker.insert_periodic(range(1))
    _, second = pl.marker.insert_periodic(range(1))
    assert first is not second
    assert first != second


def test_marker_namespace_exports_marker() -> None:
    assert pl.marker.Marker is Marker


def test_on_matches_only_its_marker() -> None:
    calls: list[str] = []
    stage, first = pl.marker.insert_periodic(range(4), n=1)
    stage, _second = pl.marker.insert_periodic(stage, n=2)
    stage = pl.marker.on(stage, lambda: calls.append("first"), marker=first)
    assert list(stage) == [0, 1, 2, 3]
    assert calls == ["first"] * 4


def test_on_with_marker_none_matches_every_marker() -> None:
    calls: list[str] = []
    stage, _first = pl.marker.insert_periodic(range(4), n=1)
    stage, _second = pl.marker.insert_periodic(stage, n=2)
    stage = pl.marker.on(stage, lambda: calls.append("any"), marker=None)
    assert list(stage) == [0, 1, 2, 3]
    assert len(calls) == 6
    stage, _ = pl.marker.insert_periodic(range(2), n=1)
    calls.clear()
    assert list(pl.marker.on(stage, lambda: calls.append("default"))) == [0, 1]
    assert calls == ["default", "default"]


def test_on_consume() -> None:
    stage, marker = pl.marker.insert_periodic(range(4), n=2)
    stage = pl.marker.on(stage, lambda: None, marker=marker, consume=True)
    assert list(stage.raw) == [0, 1, 2, 3]


def test_until() -> None:
    stage, marker = pl.marker.insert_periodic(range(4), n=3)
    assert list(pl.marker.until(stage, marker)) == [0, 1, 2]
    assert list(pl.marker.until(stage, marker=marker)) == [3]
    assert list(pl.marker.until(stage, marker)) == []


def test_until_marker_none() -> None:
    stage, _ = pl.marker.insert_periodic(range(4), n=2)
    assert list(pl.marker.until(stage)) == [0, 1]
    assert list(pl.marker.until(stage, None)) == [2, 3]


def test_until_on_the_runtime_iterator_of_a_fluent_pipe() -> None:
    marker = Marker("m")
    pipe = Pipe(range(7)).insert_marker(marker, every=3).map(lambda x: x * 10)
    stage = iter(pipe)
    assert list(pl.marker.until(stage, marker)) == [0, 10, 20]
    assert list(pl.marker.until(stage, marker)) == [30, 40, 50]
    assert list(pl.marker.until(stage, marker)) == [60]


def test_map_on_the_runtime_iterator_of_a_fluent_pipe() -> None:
    marker = Marker("m")
    stage = iter(Pipe(range(4)).insert_marker(marker, every=2))
    mapped = pl.map(stage, lambda x: -x)
    assert list(mapped.raw) == [0, -1, marker, -2, -3, marker]
    plain = iter(Pipe(range(3)).map(lambda x: x + 1))
    assert list(pl.map(plain, str)) == ["1", "2", "3"]


# -- pl.debug -------------------------------------------------------------------------------


def test_print_on_item_logs_through_logging(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="tinypl.debug")
    assert list(pl.debug.print_on_item([1, 2], "numbers")) == [1, 2]
    records = [r for r in caplog.records if r.name == "tinypl.debug"]
    assert len(records) >= 2
    assert all("numbers" in r.getMessage() for r in records)
    assert all(r.levelno == logging.INFO for r in records)
    assert capsys.readouterr().out == ""


def test_print_on_item_with_a_message_function(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinypl.debug")
    stage = pl.debug.print_on_item([5], lambda *item: f"seen {item}")
    assert list(stage) == [5]
    assert any("seen (5,)" in r.getMessage() for r in caplog.records)


# -- pl.thread and pl.order -----------------------------------------------------------------


@pytest.mark.timeout(10)
def test_thread_queue() -> None:
    stage = pl.thread.queue(pl.map(range(20), lambda x: 2 * x), workers=4, maxsize=8)
    assert sorted(stage) == [2 * x for x in range(20)]


@pytest.mark.timeout(10)
def test_thread_map_and_each() -> None:
    assert sorted(pl.thread.map(range(10), lambda x: x * x, workers=3)) == [
        x * x for x in range(10)
    ]
    seen: list[int] = []
    lock = threading.Lock()

    def record(x: int) -> None:
        with lock:
            seen.append(x)

    assert sorted(pl.thread.each(range(10), record, workers=2, maxsize=4)) == list(range(10))
    assert sorted(seen) == list(range(10))


@pytest.mark.timeout(10)
def test_thread_stage_starts_no_thread_until_pulled() -> None:
    before = set(tinypl_threads())
    stage = pl.thread.map(range(5), lambda x: x, workers=2)
    assert set(tinypl_threads()) == before
    assert next(stage) in range(5)
    assert set(tinypl_threads()) - before
    stage.close()


@pytest.mark.timeout(10)
def test_thread_mutex_guards_a_generator() -> None:
    def numbers() -> Iterator[int]:
        for i in range(50):
            time.sleep(0.0005)
            yield i

    stage = pl.thread.map(pl.thread.mutex(numbers()), str, workers=8)
    assert sorted(stage, key=int) == [str(i) for i in range(50)]


@pytest.mark.timeout(10)
def test_thread_worker_exception_names() -> None:
    assert pl.thread.queue.WorkerException is pl.thread.WorkerException  # type: ignore[attr-defined]
    assert issubclass(pl.thread.WorkerException, pl.WorkerError)

    def fail(x: int) -> int:
        raise KeyError(x)

    stage = pl.thread.map([1], fail, workers=1, on_worker_error="forward")
    with pytest.raises(pl.thread.WorkerException) as info:
        next(stage)
    assert isinstance(info.value.__cause__, KeyError)
    stage.close()


@pytest.mark.timeout(10)
def test_order_save_and_load() -> None:
    import random

    pipe = order = pl.order.save(range(30), maxsize=8)
    pipe = pl.thread.each(pipe, lambda x: time.sleep(random.uniform(0, 0.003)), workers=4)
    pipe = pl.order.load(pipe, order)
    assert list(pipe) == list(range(30))


def test_order_load_rejects_a_non_save_stage() -> None:
    with pytest.raises(TypeError, match="order"):
        pl.order.load(pl.map(range(3), str), pl.map(range(3), str))  # type: ignore[arg-type]


def test_order_save_validates_maxsize() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        pl.order.save(range(3), maxsize=0)


@pytest.mark.parametrize("function", [pl.process.map, pl.process.each])
def test_a_0_1_0_process_alias_is_checked_under_its_own_name(function: Any) -> None:
    # Checked when the stage is built, before any worker starts.
    with pytest.raises(TypeError, match="force_single_thread"):
        function(range(3), abs, force_single_thread="yes")
    with pytest.raises(TypeError, match="multiprocessing_context"):
        function(range(3), abs, multiprocessing_context=3)
