"""Laws of the synchronous stages, checked with hypothesis against toolz/itertools and
against a reference model of where markers go."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import toolz
from hypothesis import given
from hypothesis import strategies as st

import tinypl as pl
from tinypl import Marker, MarkerNotAllowedError, Pipe

# -- a small catalogue of pure functions ----------------------------------------------------


def _item(x: Any) -> Any:
    # Catalogue functions double as a check that no marker ever reaches a user function.
    assert not isinstance(x, Marker), f"a user function received {x!r}"
    return x


def inc(x: int) -> int:
    return _item(x) + 1


def double(x: int) -> int:
    return 2 * _item(x)


def neg(x: int) -> int:
    return -_item(x)


def mod7(x: int) -> int:
    return _item(x) % 7


def is_even(x: int) -> bool:
    return _item(x) % 2 == 0


def is_positive(x: int) -> bool:
    return _item(x) > 0


def is_small(x: int) -> bool:
    return abs(_item(x)) < 10


def check(x: int) -> None:
    _item(x)


def expand(x: int) -> list[int]:
    """0 to 2 copies of x: flatten can shrink, keep or grow the stream."""
    return [_item(x)] * (abs(x) % 3)


def expand_lazy(x: int) -> Iterable[int]:
    return iter(expand(x))


def total(batch: list[int]) -> int:
    return sum(_item(batch))


MAPS = [inc, double, neg, mod7]
PREDS = [is_even, is_positive, is_small]

# An op is a tuple; ``fluent``, ``module_level`` and ``reference`` interpret it.
Op = tuple[Any, ...]

ops = st.one_of(
    st.tuples(st.just("map"), st.sampled_from(MAPS)),
    st.tuples(st.just("filter"), st.sampled_from(PREDS)),
    st.tuples(st.just("each")),
    st.tuples(st.just("flatten"), st.sampled_from([expand, expand_lazy]), st.booleans()),
    st.tuples(st.just("partition-sum"), st.integers(1, 4)),
    st.tuples(st.just("partition-flatten"), st.integers(1, 4)),
)
chains = st.lists(ops, max_size=6)
int_lists = st.lists(st.integers(-20, 20), max_size=25)


def fluent(pipe: Pipe[Any], chain: list[Op]) -> Pipe[Any]:
    for op in chain:
        kind = op[0]
        if kind == "map":
            pipe = pipe.map(op[1])
        elif kind == "filter":
            pipe = pipe.filter(op[1])
        elif kind == "each":
            pipe = pipe.each(check)
        elif kind == "flatten":
            pipe = pipe.map(op[1]).flatten(eager=op[2])
        elif kind == "partition-sum":
            pipe = pipe.partition(op[1], markers="after").map(total)
        elif kind == "partition-flatten":
            pipe = pipe.partition(op[1], markers="before").flatten()
        else:  # pragma: no cover
            raise AssertionError(op)
    return pipe


def module_level(stage: Any, chain: list[Op]) -> Any:
    for op in chain:
        kind = op[0]
        if kind == "map":
            stage = pl.map(stage, op[1])
        elif kind == "filter":
            stage = pl.filter(stage, op[1])
        elif kind == "each":
            stage = pl.each(stage, check)
        elif kind == "flatten":
            flatten = pl.flatten_eager if op[2] else pl.flatten
            stage = flatten(pl.map(stage, op[1]))
        elif kind == "partition-sum":
            stage = pl.map(pl.partition(stage, op[1], markers="after"), total)
        elif kind == "partition-flatten":
            stage = pl.flatten(pl.partition(stage, op[1], markers="before"))
        else:  # pragma: no cover
            raise AssertionError(op)
    return stage


def reference(items: Iterable[Any], chain: list[Op]) -> list[Any]:
    seq: Iterable[Any] = items
    for op in chain:
        kind = op[0]
        if kind == "map":
            seq = toolz.map(op[1], seq)
        elif kind == "filter":
            seq = toolz.filter(op[1], seq)
        elif kind == "each":
            seq = toolz.map(lambda x: (check(x), x)[1], seq)
        elif kind == "flatten":
            seq = itertools.chain.from_iterable(toolz.map(op[1], seq))
        elif kind == "partition-sum":
            seq = toolz.map(sum, toolz.partition_all(op[1], seq))
        elif kind == "partition-flatten":
            seq = toolz.concat(toolz.partition_all(op[1], seq))
        else:  # pragma: no cover
            raise AssertionError(op)
    return list(seq)


# -- markers: a reference model -------------------------------------------------------------

MARKERS = (Marker("a"), Marker("b"), Marker("c"))


def is_marker(x: Any) -> bool:
    return isinstance(x, Marker)


def model_insert(stream: list[Any], marker: Marker, every: int, after: bool) -> list[Any]:
    out: list[Any] = []
    count = 0
    for x in stream:
        if is_marker(x):
            out.append(x)
            continue
        if not after and count % every == 0:
            out.append(marker)
        out.append(x)
        count += 1
        if after and count % every == 0:
            out.append(marker)
    return out


def model_partition(stream: list[Any], n: int, mode: str | None, split: bool) -> list[Any]:
    """Batches from the item boundaries; each marker placed after the number of batches
    that precede it: the completed ones, plus the one in construction for ``"after"``."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    placed: list[tuple[int, Marker]] = []
    for x in stream:
        if is_marker(x):
            if mode is None:
                raise MarkerNotAllowedError("model")
            placed.append((len(batches) + (1 if current and mode == "after" else 0), x))
            if split and current:
                batches.append(current)
                current = []
        else:
            current.append(x)
            if len(current) == n:
                batches.append(current)
                current = []
    if current:
        batches.append(current)
    out: list[Any] = []
    for index in range(len(batches) + 1):
        out.extend(marker for before, marker in placed if before == index)
        if index < len(batches):
            out.append(batches[index])
    return out


def model_on(stream: list[Any], marker: Marker | None, consume: bool) -> tuple[list[Any], int]:
    def matches(x: Any) -> bool:
        return is_marker(x) and (marker is None or x is marker)

    calls = sum(1 for x in stream if matches(x))
    return [x for x in stream if not (consume and matches(x))], calls


def model_until(stream: list[Any], marker: Marker | None) -> list[Any]:
    out = []
    for x in stream:
        if is_marker(x) and (marker is None or x is marker):
            break
        out.append(x)
    return out


inserts = st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=3)


def with_markers(pipe: Pipe[Any], spec: list[tuple[int, bool]]) -> Pipe[Any]:
    for marker, (every, after) in zip(MARKERS, spec, strict=False):
        pipe = pipe.insert_marker(marker, every=every, after=after)
    return pipe


def model_stream(items: list[Any], spec: list[tuple[int, bool]]) -> list[Any]:
    stream = list(items)
    for marker, (every, after) in zip(MARKERS, spec, strict=False):
        stream = model_insert(stream, marker, every, after)
    return stream


def raw(pipe: Pipe[Any]) -> list[Any]:
    return list(iter(pipe).raw)


def same(observed: list[Any], expected: list[Any]) -> bool:
    """Equal, with markers compared by identity."""
    if len(observed) != len(expected):
        return False
    for a, b in zip(observed, expected, strict=True):
        if is_marker(a) or is_marker(b):
            if a is not b:
                return False
        elif a != b:
            return False
    return True


# -- laws -----------------------------------------------------------------------------------


@given(int_lists, chains)
def test_chain_equals_toolz_reference(items: list[int], chain: list[Op]) -> None:
    assert list(fluent(Pipe(items), chain)) == reference(items, chain)


@given(int_lists, chains)
def test_module_level_equals_fluent(items: list[int], chain: list[Op]) -> None:
    assert list(module_level(items, chain)) == list(fluent(Pipe(items), chain))


@given(int_lists, chains)
def test_iterating_twice_over_a_reiterable_source_is_equal(
    items: list[int], chain: list[Op]
) -> None:
    pipe = fluent(Pipe(items), chain)
    assert list(pipe) == list(pipe)
    pipe = fluent(Pipe(tuple(items)), chain)
    first, second = iter(pipe), iter(pipe)
    assert list(first) == list(second)


@given(int_lists, chains)
def test_iterator_source_matches_list_source_once(items: list[int], chain: list[Op]) -> None:
    pipe = fluent(Pipe(iter(items)), chain)
    assert list(pipe) == reference(items, chain)
    assert list(pipe) == reference([], chain)


@given(int_lists, chains, inserts)
def test_markers_never_change_the_items(
    items: list[int], chain: list[Op], spec: list[tuple[int, bool]]
) -> None:
    # Every op of the catalogue tolerates markers (partitions use markers="after"/"before").
    pipe = fluent(with_markers(Pipe(items), spec), chain)
    assert list(pipe) == reference(items, chain)
    stage = module_level(pl.marker.insert_periodic(items, n=spec[0][0], after=spec[0][1])[0], chain)
    assert list(stage) == reference(items, chain)


@given(int_lists, st.integers(1, 5))
def test_partition_then_flatten_is_the_identity(items: list[int], n: int) -> None:
    assert list(Pipe(items).partition(n).flatten()) == items
    assert list(Pipe(items).partition(n).flatten(eager=True)) == items
    assert list(pl.flatten(pl.partition(items, n))) == items


@given(
    int_lists,
    st.integers(1, 5),
    inserts,
    st.sampled_from(["after", "before"]),
    st.booleans(),
)
def test_partition_then_flatten_keeps_items_with_markers(
    items: list[int], n: int, spec: list[tuple[int, bool]], mode: str, split: bool
) -> None:
    pipe = with_markers(Pipe(items), spec).partition(n, mode, split).flatten()  # type: ignore[arg-type]
    assert list(pipe) == items
    assert sum(map(is_marker, raw(pipe))) == sum(map(is_marker, model_stream(items, spec)))


@given(int_lists, inserts)
def test_insert_marker_matches_the_model(items: list[int], spec: list[tuple[int, bool]]) -> None:
    observed = raw(with_markers(Pipe(items), spec))
    assert same(observed, model_stream(items, spec)), observed


# Every sync stage, with the model of what it does to a stream of items and markers.
StageCase = tuple[Callable[[Pipe[Any]], Pipe[Any]], Callable[[list[Any]], list[Any]]]


def _map_model(fn: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    return lambda s: [x if is_marker(x) else fn(x) for x in s]


def _filter_model(pred: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    return lambda s: [x for x in s if is_marker(x) or pred(x)]


def _flatten_model(fn: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    return lambda s: [y for x in s for y in ([x] if is_marker(x) else list(fn(x)))]


stage_cases = st.one_of(
    st.sampled_from(MAPS).map(lambda f: (lambda p: p.map(f), _map_model(f))),
    st.sampled_from(PREDS).map(lambda f: (lambda p: p.filter(f), _filter_model(f))),
    st.just((lambda p: p.each(check), lambda s: s)),
    st.tuples(st.sampled_from([expand, expand_lazy]), st.booleans()).map(
        lambda a: (lambda p: p.map(a[0]).flatten(eager=a[1]), _flatten_model(a[0]))
    ),
    st.tuples(st.integers(1, 4), st.sampled_from([None, "after", "before"]), st.booleans()).map(
        lambda a: (
            # Summing each batch keeps the stream one of numbers for the next stage.
            lambda p: p.partition(a[0], a[1], a[2]).map(total),
            lambda s: _map_model(sum)(model_partition(s, a[0], a[1], a[2])),
        )
    ),
    st.tuples(st.sampled_from([None, *MARKERS]), st.booleans()).map(
        lambda a: (lambda p: p.on(a[0], lambda: None, a[1]), lambda s: model_on(s, *a)[0])
    ),
    st.sampled_from([None, *MARKERS]).map(
        lambda m: (lambda p: p.until(m), lambda s: model_until(s, m))
    ),
    st.just((lambda p: p.ratelimit(10_000, 0.001), lambda s: s)),
    st.just((lambda p: p.trace("law"), lambda s: s)),
    st.just((lambda p: p.mutex(), lambda s: s)),
)


@given(int_lists, inserts, st.lists(stage_cases, min_size=1, max_size=3))
def test_every_sync_stage_conserves_markers_in_place(
    items: list[int], spec: list[tuple[int, bool]], cases: list[StageCase]
) -> None:
    pipe = with_markers(Pipe(items), spec)
    expected: list[Any] | None = model_stream(items, spec)
    for build, model in cases:
        pipe = build(pipe)
        if expected is not None:
            try:
                expected = model(expected)
            except MarkerNotAllowedError:
                expected = None
    if expected is None:
        with pytest.raises(MarkerNotAllowedError):
            raw(pipe)
        return
    observed = raw(pipe)
    assert same(observed, expected), (observed, expected)
    assert list(pipe) == [x for x in expected if not is_marker(x)]


@given(int_lists, inserts, st.sampled_from([None, *MARKERS]), st.booleans())
def test_on_calls_back_once_per_matching_marker(
    items: list[int], spec: list[tuple[int, bool]], marker: Marker | None, consume: bool
) -> None:
    calls: list[int] = []
    pipe = with_markers(Pipe(items), spec).on(marker, lambda: calls.append(1), consume)
    observed = raw(pipe)
    expected, count = model_on(model_stream(items, spec), marker, consume)
    assert same(observed, expected)
    assert len(calls) == count


@given(int_lists, inserts)
def test_marker_on_none_callbacks_see_markers_at_their_positions(
    items: list[int], spec: list[tuple[int, bool]]
) -> None:
    # Observe the stream without .raw: an each() records items, on(None) records markers.
    events: list[Any] = []
    stage = pl.each(with_markers(Pipe(items), spec), events.append)
    stage = pl.marker.on(stage, lambda: events.append("marker"), marker=None)
    assert list(stage) == items
    expected = ["marker" if is_marker(x) else x for x in model_stream(items, spec)]
    assert events == expected


@given(int_lists, inserts, st.integers(1, 4), st.sampled_from(["after", "before"]))
def test_until_splits_a_marked_stream_into_its_segments(
    items: list[int], spec: list[tuple[int, bool]], n: int, mode: str
) -> None:
    stream = model_stream(items, spec[:1])
    stage = iter(with_markers(Pipe(items), spec[:1]))
    segments: list[list[Any]] = []
    current: list[Any] = []
    for x in stream:
        if is_marker(x):
            segments.append(current)
            current = []
        else:
            current.append(x)
    segments.append(current)
    for segment in segments:
        assert list(pl.marker.until(stage, MARKERS[0])) == segment
    assert list(stage) == []
