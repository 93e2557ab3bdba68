"""Laws of the stream operations (issue #11), against itertools and reference models of
where markers go: nothing lost or duplicated, markers conserved and in place."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinypl import Marker, Pipe

A, B = Marker("a"), Marker("b")

int_lists = st.lists(st.integers(-50, 50), max_size=40)
everies = st.integers(1, 6)


def raw(pipe: Any) -> list[Any]:
    with iter(pipe) as run:
        return list(run.raw)


def marked(items: list[Any], every: int, marker: Marker = A) -> Pipe[Any]:
    return Pipe(items).insert_marker(marker, every=every)


def model_marked(items: list[Any], every: int, marker: Marker = A) -> list[Any]:
    out: list[Any] = []
    for index, x in enumerate(items, start=1):
        out.append(x)
        if index % every == 0:
            out.append(marker)
    return out


def is_marker(x: Any) -> bool:
    return isinstance(x, Marker)


def segments(stream: list[Any]) -> list[list[Any]]:
    out: list[list[Any]] = [[]]
    for x in stream:
        if is_marker(x):
            out.append([])
        else:
            out[-1].append(x)
    return out


def model_take(stream: list[Any], n: int) -> list[Any]:
    out: list[Any] = []
    count = 0
    for x in stream:
        if count == n:
            break
        out.append(x)
        count += not is_marker(x)
    return out


def model_skip(stream: list[Any], n: int) -> list[Any]:
    out: list[Any] = []
    count = 0
    for x in stream:
        if is_marker(x):
            out.append(x)
        else:
            if count >= n:
                out.append(x)
            count += 1
    return out


def model_shard(stream: list[Any], index: int, count: int) -> list[Any]:
    out: list[Any] = []
    position = 0
    for x in stream:
        if is_marker(x):
            out.append(x)
        else:
            if position % count == index:
                out.append(x)
            position += 1
    return out


def model_zip(streams: list[list[Any]]) -> list[Any]:
    """Pull each input in turn for one tuple; a marker passes as soon as it is pulled."""
    iterators = [iter(s) for s in streams]
    out: list[Any] = []
    while True:
        parts = []
        for iterator in iterators:
            for x in iterator:
                if is_marker(x):
                    out.append(x)
                    continue
                parts.append(x)
                break
            else:
                return out
        out.append(tuple(parts))


def same(observed: list[Any], expected: list[Any]) -> bool:
    return len(observed) == len(expected) and all(
        (a is b) if is_marker(a) or is_marker(b) else a == b
        for a, b in zip(observed, expected, strict=True)
    )


@given(int_lists, everies, st.integers(1, 12), st.integers(0, 99))
def test_shuffle_permutes_the_items_between_any_two_markers(
    items: list[int], every: int, size: int, seed: int
) -> None:
    stream = raw(marked(items, every).shuffle(size, seed=seed))
    expected = model_marked(items, every)
    assert [x for x in stream if is_marker(x)] == [x for x in expected if is_marker(x)]
    assert [Counter(s) for s in segments(stream)] == [Counter(s) for s in segments(expected)]


@given(int_lists, everies, st.integers(0, 45))
def test_take_and_skip_follow_the_model_and_together_give_the_input(
    items: list[int], every: int, n: int
) -> None:
    expected = model_marked(items, every)
    taken, skipped = raw(marked(items, every).take(n)), raw(marked(items, every).skip(n))
    assert same(taken, model_take(expected, n))
    assert same(skipped, model_skip(expected, n))
    assert list(Pipe(items).take(n)) + list(Pipe(items).skip(n)) == items


@given(int_lists, everies, st.integers(1, 5), st.data())
def test_shards_partition_the_input_and_each_passes_every_marker(
    items: list[int], every: int, count: int, data: st.DataObject
) -> None:
    expected = model_marked(items, every)
    shards = [raw(marked(items, every).shard(i, count)) for i in range(count)]
    for index, shard in enumerate(shards):
        assert same(shard, model_shard(expected, index, count))
    flat = [x for shard in shards for x in shard if not is_marker(x)]
    assert Counter(flat) == Counter(items)
    index = data.draw(st.integers(0, count - 1))
    assert list(Pipe(items).shard(index, count)) == items[index::count]


@given(st.lists(int_lists, min_size=1, max_size=4), st.lists(everies, min_size=4, max_size=4))
def test_zip_and_concat_agree_with_itertools_and_the_marker_model(
    inputs: list[list[int]], spacing: list[int]
) -> None:
    first, *others = inputs
    assert list(Pipe(first).zip(*others)) == list(zip(first, *others, strict=False))
    assert list(Pipe(first).concat(*others)) == list(itertools.chain(first, *others))
    markers = [Marker(str(i)) for i in range(len(inputs))]
    pipes = [marked(x, e, m) for x, e, m in zip(inputs, spacing, markers, strict=False)]
    models = [model_marked(x, e, m) for x, e, m in zip(inputs, spacing, markers, strict=False)]
    assert same(raw(pipes[0].zip(*pipes[1:])), model_zip(models))
    assert same(raw(pipes[0].concat(*pipes[1:])), list(itertools.chain(*models)))


@given(st.lists(int_lists, min_size=1, max_size=4), st.integers(0, 9), st.booleans())
def test_mix_all_is_a_merge_that_keeps_each_inputs_order(
    inputs: list[list[int]], seed: int, weighted: bool
) -> None:
    tagged = [[(i, x) for x in items] for i, items in enumerate(inputs)]
    weights = [1 + i for i in range(len(inputs))] if weighted else None
    mixed = list(Pipe.mix(tagged, weights=weights, seed=seed, stop="all"))
    assert Counter(mixed) == Counter(itertools.chain(*tagged))
    for i, items in enumerate(tagged):
        assert [x for x in mixed if x[0] == i] == items
    assert list(Pipe.mix(tagged, weights=weights, seed=seed, stop="all")) == mixed


@given(st.lists(int_lists, min_size=1, max_size=4), st.integers(0, 9), st.booleans())
def test_mix_first_is_a_prefix_of_the_merge_that_stops_at_an_exhausted_draw(
    inputs: list[list[int]], seed: int, weighted: bool
) -> None:
    tagged = [[(i, x) for x in items] for i, items in enumerate(inputs)]
    weights = [1 + i for i in range(len(inputs))] if weighted else None
    mixed = list(Pipe.mix(tagged, weights=weights, seed=seed))
    for i, items in enumerate(tagged):
        assert [x for x in mixed if x[0] == i] == items[: len([x for x in mixed if x[0] == i])]
    assert any(len([x for x in mixed if x[0] == i]) == len(t) for i, t in enumerate(tagged))


@given(int_lists, everies, st.integers(0, 3))
def test_repeat_is_the_passes_one_after_another(items: list[int], every: int, times: int) -> None:
    expected = model_marked(items, every)
    stream = raw(marked(items, every).repeat(times, marker=B))
    assert same(stream, ([*expected, B]) * times)


@pytest.mark.timeout(120)
@given(int_lists, everies, st.sampled_from(["take", "skip", "shard", "shuffle", "zip"]))
def test_markers_stay_in_place_after_threads_and_order(
    items: list[int], every: int, kind: str
) -> None:
    builds = {
        "take": lambda p: p.take(len(items) // 2),
        "skip": lambda p: p.skip(len(items) // 3),
        "shard": lambda p: p.shard(1, 2),
        "shuffle": lambda p: p.shuffle(4, seed=0),
        "zip": lambda p: p.zip(range(len(items) // 2 + 1)),
    }
    build = builds[kind]
    concurrent = marked(items, every).map(abs).thread(3).order()
    assert same(raw(build(concurrent)), raw(build(marked(items, every).map(abs))))
