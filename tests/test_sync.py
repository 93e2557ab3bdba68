"""The synchronous stages: behaviour on plain and marked streams, runs, closing, errors."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tinypl as pl
from tinypl import Marker, MarkerNotAllowedError, Pipe

M = Marker("m")
N = Marker("n")


def raw(pipe: Pipe[Any]) -> list[Any]:
    """Everything that flows out of the pipe's last stage, markers included."""
    return list(iter(pipe).raw)


def marked(items: Any, every: int = 1, after: bool = True, marker: Marker = M) -> Pipe[Any]:
    return Pipe(items).insert_marker(marker, every=every, after=after)


class Boom(Exception):
    """A user function's own exception type."""


# -- map / filter / each --------------------------------------------------------------------


def test_map() -> None:
    assert list(Pipe(range(5)).map(lambda x: 3 * x + 1)) == [1, 4, 7, 10, 13]
    assert list(Pipe([]).map(str)) == []


def test_filter() -> None:
    assert list(Pipe(range(10)).filter(lambda x: x % 3 == 0)) == [0, 3, 6, 9]
    # Truthiness, not `is True`, decides.
    assert list(Pipe([0, 1, "", "a", None, [0]]).filter(lambda x: x)) == [1, "a", [0]]


def test_each_calls_fn_and_passes_items_unchanged() -> None:
    seen: list[int] = []
    assert list(Pipe(range(4)).each(lambda x: seen.append(x) or "ignored")) == [0, 1, 2, 3]
    assert seen == [0, 1, 2, 3]


def test_map_filter_each_on_a_marked_stream() -> None:
    seen: list[int] = []
    pipe = marked(range(6), every=2).map(lambda x: x * 10).filter(lambda x: x != 20)
    pipe = pipe.each(seen.append)
    assert raw(pipe) == [0, 10, M, 30, M, 40, 50, M]
    assert seen == [0, 10, 30, 40, 50]
    assert list(pipe) == [0, 10, 30, 40, 50]


def test_user_functions_never_see_markers() -> None:
    received: list[Any] = []

    def record(x: Any) -> Any:
        received.append(x)
        return x

    pipe = (
        marked([[1, 2], [3]], every=1, after=False)
        .map(record)
        .filter(record)
        .each(record)
        .flatten()
        .insert_marker(N)
        .map(record)
        .partition(2, markers="after")
        .map(record)
    )
    assert list(pipe) == [[1, 2], [3]]
    assert received
    assert not [x for x in received if isinstance(x, Marker)]


def test_trace_message_function_never_sees_markers() -> None:
    # Marker's contract: markers "are never handed to a user function".
    received: list[Any] = []

    def message(*item: Any) -> str:
        received.extend(item)
        return "t"

    assert list(marked(range(3)).trace(message)) == [0, 1, 2]
    assert received == [0, 1, 2]


# -- flatten --------------------------------------------------------------------------------


def test_flatten() -> None:
    assert list(Pipe([[1, 2], [], (3,), "ab", range(2)]).flatten()) == [1, 2, 3, "a", "b", 0, 1]
    assert list(Pipe([[1, 2], [], [3]]).flatten(eager=True)) == [1, 2, 3]


def _chunks(log: list[str]) -> list[Iterator[int]]:
    def chunk(name: str, n: int) -> Iterator[int]:
        for i in range(n):
            log.append(f"{name}{i}")
            yield i

    return [chunk("a", 3), chunk("b", 2)]


@pytest.mark.parametrize("with_markers", [False, True])
def test_flatten_lazy_pulls_one_element_at_a_time(with_markers: bool) -> None:
    log: list[str] = []
    pipe = Pipe(_chunks(log))
    if with_markers:
        pipe = pipe.insert_marker(M)
    stage = iter(pipe.flatten())
    assert next(stage) == 0
    assert log == ["a0"]
    assert next(stage) == 1
    assert log == ["a0", "a1"]
    assert list(stage) == [2, 0, 1]


@pytest.mark.parametrize("with_markers", [False, True])
def test_flatten_eager_lists_the_whole_item_first(with_markers: bool) -> None:
    log: list[str] = []
    pipe = Pipe(_chunks(log))
    if with_markers:
        pipe = pipe.insert_marker(M)
    stage = iter(pipe.flatten(eager=True))
    assert next(stage) == 0
    assert log == ["a0", "a1", "a2"]
    assert list(stage) == [1, 2, 0, 1]


@pytest.mark.parametrize("eager", [False, True])
def test_flatten_passes_markers_between_items(eager: bool) -> None:
    pipe = marked([[1, 2], [], [3]], every=1).flatten(eager=eager)
    assert raw(pipe) == [1, 2, M, M, 3, M]
    pipe = marked([[1, 2], [], [3]], every=1, after=False).flatten(eager=eager)
    assert raw(pipe) == [M, 1, 2, M, M, 3]


# -- partition ------------------------------------------------------------------------------


def test_partition_plain() -> None:
    assert list(Pipe(range(7)).partition(3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(Pipe(range(6)).partition(3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(Pipe(range(2)).partition(1)) == [[0], [1]]
    assert list(Pipe([]).partition(3)) == []


def test_partition_batches_are_lists() -> None:
    batches = list(Pipe("abcde").partition(2))
    assert batches == [["a", "b"], ["c", "d"], ["e"]]
    assert all(type(b) is list for b in batches)


@pytest.mark.parametrize("markers", ["after", "before"])
def test_partition_with_marker_modes_yields_only_batches(markers: str) -> None:
    pipe = marked(range(7), every=2).partition(3, markers=markers)  # type: ignore[arg-type]
    assert list(pipe) == [[0, 1, 2], [3, 4, 5], [6]]


def test_partition_after_holds_the_marker_until_the_batch_is_emitted() -> None:
    # 0 1 M 2 3 M 4 5 M 6  ->  batches of 3
    pipe = marked(range(7), every=2).partition(3, markers="after")
    assert raw(pipe) == [[0, 1, 2], M, [3, 4, 5], M, M, [6]]


def test_partition_after_emits_at_once_when_no_batch_is_in_construction() -> None:
    pipe = marked(range(4), every=2).partition(2, markers="after")
    assert raw(pipe) == [[0, 1], M, [2, 3], M]
    pipe = marked(range(4), every=2, after=False).partition(2, markers="after")
    assert raw(pipe) == [M, [0, 1], M, [2, 3]]


def test_partition_after_holds_markers_to_the_end_of_the_stream() -> None:
    pipe = marked(range(2), every=1).partition(5, markers="after")
    assert raw(pipe) == [[0, 1], M, M]


def test_partition_before_emits_the_marker_at_once() -> None:
    pipe = marked(range(7), every=2).partition(3, markers="before")
    assert raw(pipe) == [M, [0, 1, 2], M, [3, 4, 5], M, [6]]


def test_partition_split_on_marker_after() -> None:
    pipe = marked(range(7), every=2).partition(3, markers="after", split_on_marker=True)
    assert raw(pipe) == [[0, 1], M, [2, 3], M, [4, 5], M, [6]]
    assert list(pipe) == [[0, 1], [2, 3], [4, 5], [6]]


def test_partition_split_on_marker_before() -> None:
    pipe = marked(range(5), every=2).partition(3, markers="before", split_on_marker=True)
    assert raw(pipe) == [M, [0, 1], M, [2, 3], [4]]


def test_partition_split_on_marker_never_emits_empty_batches() -> None:
    pipe = (
        Pipe(range(4))
        .insert_marker(M, every=2)
        .insert_marker(N, every=2)
        .partition(2, markers="after", split_on_marker=True)
    )
    # After item 1, N (inserted downstream) comes out before the M that follows.
    assert raw(Pipe(range(4)).insert_marker(M, every=2).insert_marker(N, every=2)) == [
        0,
        1,
        N,
        M,
        2,
        3,
        N,
        M,
    ]
    assert raw(pipe) == [[0, 1], N, M, [2, 3], N, M]


def test_partition_markers_none_raises_when_a_marker_arrives() -> None:
    pipe = marked(range(5), every=2).partition(3)
    stage = iter(pipe)
    with pytest.raises(MarkerNotAllowedError) as info:
        next(stage)
    message = str(info.value)
    assert "partition" in message
    assert "markers" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(MarkerNotAllowedError):
        list(pl.partition(pl.marker.insert_periodic(range(3))[0], 2))


def test_partition_markers_none_is_fine_when_no_marker_arrives() -> None:
    pipe = Pipe(range(5)).insert_marker(M, every=10).partition(2)
    assert list(pipe) == [[0, 1], [2, 3], [4]]
    consumed = Pipe(range(5)).insert_marker(M).on(M, lambda: None, consume=True).partition(2)
    assert list(consumed) == [[0, 1], [2, 3], [4]]


# -- insert_marker --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "after", "expected"),
    [
        (1, True, [0, M, 1, M, 2, M]),
        (2, True, [0, 1, M, 2]),
        (3, True, [0, 1, 2, M]),
        (1, False, [M, 0, M, 1, M, 2]),
        (2, False, [M, 0, 1, M, 2]),
        (5, False, [M, 0, 1, 2]),
    ],
)
def test_insert_marker(every: int, after: bool, expected: list[Any]) -> None:
    assert raw(marked(range(3), every=every, after=after)) == expected


def test_insert_marker_before_every_two() -> None:
    assert raw(marked(range(4), every=2, after=False)) == [M, 0, 1, M, 2, 3]


def test_insert_marker_on_an_empty_stream() -> None:
    assert raw(marked([], every=1)) == []
    assert raw(marked([], every=1, after=False)) == []


def test_insert_marker_counts_items_not_markers() -> None:
    pipe = Pipe(range(4)).insert_marker(M, every=1).insert_marker(N, every=2)
    assert raw(pipe) == [0, M, 1, N, M, 2, M, 3, N, M]


def test_insert_marker_is_invisible_to_iteration() -> None:
    assert list(marked(range(4), every=1)) == [0, 1, 2, 3]


# -- on -------------------------------------------------------------------------------------


def test_on_calls_fn_for_each_matching_marker_and_passes_it_on() -> None:
    calls: list[str] = []
    pipe = Pipe(range(4)).insert_marker(M, every=2).insert_marker(N, every=3)
    pipe = pipe.on(M, lambda: calls.append("M"))
    assert raw(pipe) == [0, 1, M, 2, N, 3, M]
    assert calls == ["M", "M"]


def test_on_calls_fn_when_the_marker_passes() -> None:
    events: list[Any] = []
    pipe = marked(range(4), every=2).on(M, lambda: events.append("M")).each(events.append)
    assert list(pipe) == [0, 1, 2, 3]
    assert events == [0, 1, "M", 2, 3, "M"]


def test_on_consume_drops_the_marker() -> None:
    calls: list[int] = []
    pipe = marked(range(4), every=2).on(M, lambda: calls.append(1), consume=True)
    assert raw(pipe) == [0, 1, 2, 3]
    assert calls == [1, 1]
    assert list(pipe.until(M)) == [0, 1, 2, 3]


def test_on_consume_only_drops_the_matching_marker() -> None:
    pipe = Pipe(range(2)).insert_marker(M).insert_marker(N).on(M, lambda: None, consume=True)
    assert raw(pipe) == [0, N, 1, N]


def test_on_with_marker_none_matches_every_marker() -> None:
    calls: list[int] = []
    pipe = Pipe(range(3)).insert_marker(M, every=1).insert_marker(N, every=2)
    assert raw(pipe.on(None, lambda: calls.append(1))) == [0, M, 1, N, M, 2, M]
    assert len(calls) == 4
    assert raw(pipe.on(None, lambda: None, consume=True)) == [0, 1, 2]


def test_on_without_markers_never_calls_fn() -> None:
    calls: list[int] = []
    assert list(Pipe(range(3)).on(None, lambda: calls.append(1))) == [0, 1, 2]
    assert calls == []


# -- until ----------------------------------------------------------------------------------


def test_until_ends_at_the_first_marker_and_consumes_it() -> None:
    pipe = marked(range(10), every=3).until(M)
    assert raw(pipe) == [0, 1, 2]
    assert list(pipe) == [0, 1, 2]


def test_until_stays_ended() -> None:
    stage = iter(marked(range(10), every=3).until(M))
    assert list(stage) == [0, 1, 2]
    assert list(stage) == []
    with pytest.raises(StopIteration):
        next(stage)


def test_until_ignores_other_markers() -> None:
    pipe = Pipe(range(6)).insert_marker(N, every=1).insert_marker(M, every=4).until(M)
    assert raw(pipe) == [0, N, 1, N, 2, N, 3]
    assert list(pipe) == [0, 1, 2, 3]


def test_until_marker_none_ends_at_any_marker() -> None:
    pipe = Pipe(range(6)).insert_marker(N, every=4).insert_marker(M, every=2).until(None)
    assert list(pipe) == [0, 1]


def test_until_without_a_marker_runs_to_the_end() -> None:
    assert list(Pipe(range(4)).until(M)) == [0, 1, 2, 3]
    assert list(marked(range(4), every=10).until(M)) == [0, 1, 2, 3]


def test_until_leaves_the_rest_of_a_shared_stage() -> None:
    stage = iter(marked(range(5), every=2))
    assert list(Pipe(stage).until(M)) == [0, 1]
    assert list(Pipe(stage).until(M)) == [2, 3]
    assert list(Pipe(stage).until(M)) == [4]
    assert list(Pipe(stage).until(M)) == []


# -- ratelimit ------------------------------------------------------------------------------


def test_ratelimit_limits_the_rate() -> None:
    start = time.monotonic()
    assert list(Pipe(range(11)).ratelimit(5, 0.2)) == list(range(11))
    elapsed = time.monotonic() - start
    assert elapsed >= 0.4 - 0.01  # items 5 and 10 each wait for a new period
    assert elapsed < 2.0


def test_ratelimit_lets_a_burst_of_num_items_through_at_once() -> None:
    # Nothing waits: five items fit in one period, and the end of the stream is no item.
    start = time.monotonic()
    assert list(Pipe(range(5)).ratelimit(5, 0.5)) == [0, 1, 2, 3, 4]
    assert time.monotonic() - start < 0.25


def test_ratelimit_passes_markers_and_counts_only_items() -> None:
    pipe = marked(range(6), every=1).ratelimit(3, 0.15)
    start = time.monotonic()
    assert raw(pipe) == [0, M, 1, M, 2, M, 3, M, 4, M, 5, M]
    elapsed = time.monotonic() - start
    assert 0.15 - 0.01 <= elapsed < 0.29  # one wait for the 4th item, none for markers


# -- trace ----------------------------------------------------------------------------------


def test_trace_logs_pulls_and_items(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinypl.debug")
    assert list(Pipe([1, 2]).trace("numbers")) == [1, 2]
    records = [r for r in caplog.records if r.name == "tinypl.debug"]
    assert records
    assert all(r.levelno == logging.INFO for r in records)
    messages = [r.getMessage() for r in records]
    assert all("numbers" in m for m in messages)
    assert sum(m.startswith("Pulling") for m in messages) == 3  # two items and the end
    assert sum(m.startswith("Returning") for m in messages) == 2


def test_trace_with_a_callable_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tinypl.debug")

    def message(*item: Any) -> str:
        return f"item={item[0]}" if item else "pulling"

    assert list(Pipe([7, 8]).trace(message)) == [7, 8]
    messages = [r.getMessage() for r in caplog.records if r.name == "tinypl.debug"]
    assert any("item=7" in m for m in messages)
    assert any("item=8" in m for m in messages)
    assert any("pulling" in m for m in messages)


# -- markers never reach the consumer ------------------------------------------------------


MARKED_PIPES: list[tuple[str, Callable[[], Pipe[Any]]]] = [
    ("insert", lambda: marked(range(5), every=1)),
    ("insert-before", lambda: marked(range(5), every=2, after=False)),
    ("map", lambda: marked(range(5)).map(str)),
    ("filter", lambda: marked(range(5)).filter(lambda x: x % 2)),
    ("each", lambda: marked(range(5)).each(lambda x: None)),
    ("flatten", lambda: marked([[1], [2, 3]]).flatten()),
    ("flatten-eager", lambda: marked([[1], [2, 3]]).flatten(eager=True)),
    ("partition-after", lambda: marked(range(5)).partition(2, markers="after")),
    ("partition-before", lambda: marked(range(5)).partition(2, markers="before")),
    ("partition-split", lambda: marked(range(5)).partition(2, "after", True)),
    ("on", lambda: marked(range(5)).on(M, lambda: None)),
    ("ratelimit", lambda: marked(range(5)).ratelimit(100, 1.0)),
    ("trace", lambda: marked(range(5)).trace("t")),
    ("mutex", lambda: marked(range(5)).mutex()),
]


@pytest.mark.parametrize("build", [b for _, b in MARKED_PIPES], ids=[n for n, _ in MARKED_PIPES])
def test_markers_are_invisible_to_iteration(build: Callable[[], Pipe[Any]]) -> None:
    pipe = build()
    assert any(isinstance(x, Marker) for x in raw(pipe)), "the raw stream should carry markers"
    items_for = [x for x in pipe]
    items_list = list(pipe)
    stage = iter(pipe)
    items_next = []
    while True:
        try:
            items_next.append(next(stage))
        except StopIteration:
            break
    assert items_for == items_list == items_next
    assert items_list
    assert not [x for x in items_list if isinstance(x, Marker)]


# -- runs -----------------------------------------------------------------------------------


def test_each_iteration_is_a_fresh_run() -> None:
    calls: list[int] = []
    pipe = Pipe(range(4)).each(calls.append).map(lambda x: x + 1)
    assert list(pipe) == [1, 2, 3, 4]
    assert list(pipe) == [1, 2, 3, 4]
    assert calls == [0, 1, 2, 3, 0, 1, 2, 3]
    marked_pipe = marked(range(4), every=2).partition(2, markers="after")
    assert list(marked_pipe) == list(marked_pipe) == [[0, 1], [2, 3]]


def test_two_live_runs_of_one_pipe_are_independent() -> None:
    pipe = Pipe([1, 2, 3]).map(lambda x: x * 2)
    first, second = iter(pipe), iter(pipe)
    assert next(first) == 2
    assert next(second) == 2
    assert list(first) == [4, 6]
    assert list(second) == [4, 6]


def test_an_iterator_source_is_consumed_once() -> None:
    pipe = Pipe(iter(range(4))).map(lambda x: x * 10)
    stage = iter(pipe)
    assert next(stage) == 0
    assert list(pipe) == [10, 20, 30]  # a new run pulls the same, shared iterator
    assert list(pipe) == []
    assert list(stage) == []


def test_a_generator_source_is_consumed_once() -> None:
    def numbers() -> Iterator[int]:
        yield from range(3)

    pipe = Pipe(numbers())
    assert list(pipe) == [0, 1, 2]
    assert list(pipe) == []


# -- close and context manager --------------------------------------------------------------


def _generator(log: list[str]) -> Iterator[int]:
    try:
        for i in range(100):
            log.append(f"yield {i}")
            yield i
    finally:
        log.append("finally")


@pytest.mark.parametrize(
    "extend",
    [
        lambda p: p,
        lambda p: p.map(str),
        lambda p: p.filter(lambda x: True).map(str).partition(2),
        lambda p: p.insert_marker(M).map(str).on(M, lambda: None).until(N),
        lambda p: p.map(lambda x: [x]).flatten(),
        lambda p: p.ratelimit(1000, 1.0).trace("t"),
    ],
    ids=["source", "map", "partition", "markers", "flatten", "ratelimit-trace"],
)
def test_close_closes_a_generator_source(extend: Callable[[Pipe[Any]], Pipe[Any]]) -> None:
    log: list[str] = []
    stage = iter(extend(Pipe(_generator(log))))
    next(stage)
    assert "finally" not in log
    stage.close()
    assert log[-1] == "finally"
    assert stage.closed
    stage.close()  # idempotent
    assert log.count("finally") == 1
    assert list(stage) == []


@pytest.mark.parametrize(
    "pipe",
    [
        Pipe(range(5)),
        Pipe(range(5)).map(str),
        Pipe([0, 1, 2, 3]).filter(lambda x: True),
        Pipe(range(5)).insert_marker(M).map(str),
        Pipe([[1, 2], [3]]).flatten(),
        Pipe(range(5)).partition(2),
    ],
    ids=["source", "map", "filter", "marked", "flatten", "partition"],
)
def test_a_closed_stage_yields_nothing_more(pipe: Pipe[Any]) -> None:
    # close() "stops this stage": also over a source that has no close() of its own.
    stage = iter(pipe)
    next(stage)
    stage.close()
    assert stage.closed
    assert list(stage) == []


def test_close_before_any_pull() -> None:
    log: list[str] = []
    stage = iter(Pipe(_generator(log)).map(str))
    assert not stage.closed
    stage.close()
    stage.close()
    assert stage.closed
    assert log == []  # never started, nothing to finalize
    assert list(stage) == []


def test_context_manager_closes_the_stage() -> None:
    log: list[str] = []
    with iter(Pipe(_generator(log)).map(lambda x: x + 1)) as stage:
        assert next(stage) == 1
        assert next(stage) == 2
    assert stage.closed
    assert log[-1] == "finally"


def test_context_manager_closes_on_error() -> None:
    log: list[str] = []
    with pytest.raises(Boom), iter(Pipe(_generator(log)).insert_marker(M)) as stage:
        next(stage)
        raise Boom
    assert stage.closed
    assert log[-1] == "finally"


def test_module_level_stages_are_context_managers() -> None:
    log: list[str] = []
    with pl.map(_generator(log), lambda x: -x) as stage:
        assert next(stage) == 0
    assert log[-1] == "finally"


# -- exceptions -----------------------------------------------------------------------------


def _fail_on(bad: int) -> Callable[[int], int]:
    def fn(x: int) -> int:
        if x == bad:
            raise Boom(x)
        return x

    return fn


STAGES_WITH_USER_FUNCTIONS: list[tuple[str, Callable[[Pipe[Any]], Pipe[Any]]]] = [
    ("map", lambda p: p.map(_fail_on(2))),
    ("filter", lambda p: p.filter(_fail_on(2))),
    ("each", lambda p: p.each(_fail_on(2))),
    ("fused", lambda p: p.map(lambda x: x).filter(lambda x: True).each(_fail_on(2))),
    ("flatten", lambda p: p.map(lambda x: map(_fail_on(2), [x])).flatten()),
    ("flatten-eager", lambda p: p.map(lambda x: map(_fail_on(2), [x])).flatten(eager=True)),
]


@pytest.mark.parametrize("with_markers", [False, True])
@pytest.mark.parametrize(
    "extend",
    [b for _, b in STAGES_WITH_USER_FUNCTIONS],
    ids=[n for n, _ in STAGES_WITH_USER_FUNCTIONS],
)
def test_user_exceptions_propagate_with_their_type(
    extend: Callable[[Pipe[Any]], Pipe[Any]], with_markers: bool
) -> None:
    source = Pipe(range(5))
    if with_markers:
        source = source.insert_marker(M)
    stage = iter(extend(source))
    assert next(stage) in (0, True)
    with pytest.raises(Boom) as info:
        list(stage)
    assert info.value.args == (2,)


def test_exception_in_the_source_propagates() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        raise Boom("source")

    with pytest.raises(Boom, match="source"):
        list(Pipe(numbers()).map(str).partition(2))


def test_exception_in_on_and_trace_callbacks_propagates() -> None:
    def fail() -> None:
        raise Boom("on")

    with pytest.raises(Boom, match="on"):
        list(marked(range(3)).on(M, fail))

    def message(*item: Any) -> str:
        raise Boom("trace")

    with pytest.raises(Boom, match="trace"):
        list(Pipe(range(3)).trace(message))


@pytest.mark.parametrize("with_markers", [False, True])
def test_a_failed_item_does_not_end_the_stream(with_markers: bool) -> None:
    source = Pipe(range(4))
    if with_markers:
        source = source.insert_marker(M)
    stage = iter(source.map(_fail_on(1)))
    out: list[Any] = []
    while True:
        try:
            out.append(next(stage))
        except Boom:
            out.append("error")
        except StopIteration:
            break
    assert out == [0, "error", 2, 3]


@pytest.mark.parametrize("with_markers", [False, True])
def test_a_failed_item_does_not_lose_the_batch_in_construction(with_markers: bool) -> None:
    # The pull that raised is the only casualty; items already pulled into the partial
    # batch stay there, on the marker-free path as on the marker-aware one.
    source = Pipe(range(7)).map(_fail_on(2))
    if with_markers:
        source = source.insert_marker(M, every=100)
    stage = iter(source.partition(3, markers="after"))
    out: list[Any] = []
    while True:
        try:
            out.append(next(stage))
        except Boom:
            out.append("error")
        except StopIteration:
            break
    assert out == ["error", [0, 1, 3], [4, 5, 6]]


# -- fast path and marker-aware path --------------------------------------------------------


def test_per_item_stages_compile_to_one_chain_when_no_marker_can_occur() -> None:
    # A fused run is one generated generator pulled through a C-level chain: no view, no
    # marker check, no frame per stage.
    for pipe in (Pipe(range(3)).map(str), Pipe(range(3)).filter(bool), Pipe("ab").each(str)):
        assert itertools.chain in type(iter(pipe)).__mro__
    assert itertools.chain in type(iter(Pipe([[1]]).flatten())).__mro__
    assert itertools.chain in type(iter(Pipe([[1]]).flatten(eager=True))).__mro__
    fused = iter(Pipe(range(5)).map(str).filter(bool).map(int))
    assert itertools.chain in type(fused).__mro__
    assert fused.raw is fused  # nothing but items flows out
    assert list(fused) == [0, 1, 2, 3, 4]


def test_every_stage_is_a_tinypl_stage() -> None:
    for pipe in (Pipe(range(2)), Pipe(range(2)).map(str), marked(range(2)).map(str)):
        stage = iter(pipe)
        assert isinstance(stage, pl.Stage)
        assert iter(stage) is stage


def test_marker_aware_path_is_used_when_markers_can_occur() -> None:
    for pipe in (
        marked(range(3)).map(str),
        marked(range(3)).filter(bool),
        marked(range(3)).each(str),
        marked([[1]]).flatten(),
    ):
        stage = iter(pipe)
        assert map not in type(stage).__mro__
        assert filter not in type(stage).__mro__
        assert stage.raw is not stage
        assert any(isinstance(x, Marker) for x in stage.raw)


def test_fast_path_resumes_after_markers_are_consumed() -> None:
    # Downstream of until the stream may still carry markers, so it stays marker-aware.
    pipe = marked(range(4), every=2).until(M).map(str)
    assert list(pipe) == ["0", "1"]
