"""The checkpoint law (issue 14): for random pipelines over every stage kind and a random
cut k, the first k items of a run, then everything a run resumed from the state at k
yields (after a JSON round trip), equal one uninterrupted run; markers included (the
resumed run's raw stream is the rest of the uninterrupted run's raw stream). Without
``order()`` after the concurrent stages at the end, as a multiset."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tinypl import Marker, NotResumable, Pipe, _checkpoint_journal

M = Marker("m")


def double(x: int) -> int:
    return 2 * x


def inc(x: int) -> int:
    return x + 1


def odd(x: int) -> bool:
    return x % 2 == 1


def explode(x: int) -> list[int]:
    return list(range(x, x + x % 3))


def total(batch: list[int]) -> int:
    return sum(batch)


def _stage(pipe: Pipe[Any], spec: tuple[Any, ...]) -> Pipe[Any]:
    kind, *args = spec
    if kind == "map":
        return pipe.map(args[0])
    if kind == "filter":
        return pipe.filter(odd)
    if kind == "explode":
        return pipe.map(explode).flatten(eager=args[0])
    if kind == "partition":
        return pipe.partition(args[0], markers="after", split_on_marker=args[1]).map(total)
    if kind == "marker":
        return pipe.insert_marker(M, every=args[0], after=args[1])
    if kind == "shuffle":
        return pipe.shuffle(args[0], seed=args[1])
    if kind == "take":
        return pipe.take(args[0])
    if kind == "skip":
        return pipe.skip(args[0])
    if kind == "shard":
        return pipe.shard(args[0] % args[1], args[1])
    if kind == "repeat":
        return pipe.repeat(args[0])
    if kind == "thread":
        return pipe.thread(args[0]).order()
    if kind == "prefetch":
        return pipe.prefetch(args[0])
    assert kind == "mix"
    return Pipe.mix([pipe, range(100, 100 + args[0])], weights=args[1], seed=args[2])


small = st.integers(1, 4)
stages = st.one_of(
    st.tuples(st.just("map"), st.sampled_from([double, inc])),
    st.tuples(st.just("filter")),
    st.tuples(st.just("explode"), st.booleans()),
    st.tuples(st.just("partition"), small, st.booleans()),
    st.tuples(st.just("marker"), small, st.booleans()),
    st.tuples(st.just("shuffle"), small, st.integers(0, 9)),
    st.tuples(st.just("take"), st.integers(0, 30)),
    st.tuples(st.just("skip"), st.integers(0, 5)),
    st.tuples(st.just("shard"), st.integers(0, 3), small),
    st.tuples(st.just("repeat"), st.integers(0, 3)),
    st.tuples(st.just("thread"), small),
    st.tuples(st.just("prefetch"), small),
    st.tuples(
        st.just("mix"), st.integers(0, 6), st.sampled_from([None, (1.0, 2.0)]), st.integers(0, 9)
    ),
)
sources = st.one_of(
    st.lists(st.integers(0, 20), max_size=15),
    st.integers(0, 15).map(range),
    st.lists(st.integers(0, 20), max_size=15).map(tuple),
)


def build(source: Any, specs: list[tuple[Any, ...]]) -> Pipe[Any]:
    pipe: Pipe[Any] = Pipe(source)
    for spec in specs:
        pipe = _stage(pipe, spec)
    return pipe


def _rest_after(raw: list[Any], k: int) -> list[Any]:
    """What of the raw stream ``raw`` comes after its k-th item."""
    seen = 0
    for index, x in enumerate(raw):
        if seen == k:
            return raw[index:]
        if not isinstance(x, Marker):
            seen += 1
    return []


def check_law(pipe: Pipe[Any], cut: int) -> None:
    with iter(pipe) as run:
        full = list(run.raw)
    items = [x for x in full if not isinstance(x, Marker)]
    k = min(cut, len(items))
    with pipe.iter() as run:
        head = [next(run) for _ in range(k)]
        state = json.loads(json.dumps(run.state_dict()))
    assert head == items[:k]
    event(f"mode {state['mode']}")
    with pipe.iter(state=state) as resumed:
        rest = list(resumed.raw)
    assert rest == _rest_after(full, k), state
    # A state taken from a resumed run resumes as well.
    more = (len(items) - k) // 2
    with pipe.iter(state=state) as resumed:
        assert [next(resumed) for _ in range(more)] == items[k : k + more]
        again = json.loads(json.dumps(resumed.state_dict()))
    with pipe.iter(state=again) as twice:
        assert list(twice.raw) == _rest_after(full, k + more)


@pytest.mark.timeout(120)
@given(sources, st.lists(stages, max_size=5), st.integers(0, 40))
def test_first_k_then_resumed_equals_one_run(
    source: Any, specs: list[tuple[Any, ...]], cut: int
) -> None:
    check_law(build(source, specs), cut)


@pytest.mark.timeout(120)
@settings(max_examples=8)
@given(st.lists(st.integers(0, 20), max_size=12), st.integers(0, 12), st.integers(1, 3))
def test_process_stage_with_order_resumes_exactly(items: list[int], cut: int, n: int) -> None:
    pipe = Pipe(items).map(explode).flatten().partition(n).map(total).map(double)
    check_law(pipe.process(2).order().insert_marker(M, every=n), cut)


def _pull_items(raw: Any, k: int) -> list[Any]:
    """The elements of the raw stream ``raw`` up to its k-th item, markers included."""
    out: list[Any] = []
    seen = 0
    while seen < k:
        x = next(raw)
        out.append(x)
        seen += not isinstance(x, Marker)
    return out


def _bag(elements: list[Any]) -> Counter[str]:
    return Counter(map(repr, elements))


def check_unordered_law(pipe: Pipe[Any], cut: int) -> None:
    """The law without ``order()``: what the first run delivered up to its k-th item,
    then what a run resumed from its state delivers, is one run's raw stream as a
    multiset (nothing lost, nothing twice, markers included); and again from a state
    taken in the resumed run."""
    with iter(pipe) as run:
        full = list(run.raw)
    k = min(cut, sum(not isinstance(x, Marker) for x in full))
    with pipe.iter() as run:
        head = _pull_items(run.raw, k)
        state = json.loads(json.dumps(run.state_dict()))
    assert state["mode"] == "unordered"
    event(f"done beyond the prefix: {min(len(state['done']), 3)}+")
    with pipe.iter(state=state) as resumed:
        rest = list(resumed.raw)
    assert _bag(head + rest) == _bag(full), state
    more = sum(not isinstance(x, Marker) for x in rest) // 3
    with pipe.iter(state=state) as resumed:
        middle = _pull_items(resumed.raw, more)
        again = json.loads(json.dumps(resumed.state_dict()))
    with pipe.iter(state=again) as twice:
        assert _bag(head + middle + list(twice.raw)) == _bag(full), (state, again)


def _concurrent_end(pipe: Pipe[Any], ops: list[str], workers: int) -> Pipe[Any]:
    for op in ops:
        if op == "explode":
            pipe = pipe.map(explode).flatten()
        else:
            pipe = pipe.map(double) if op == "map" else pipe.filter(odd)
    return pipe.thread(workers)


per_item = st.lists(st.sampled_from(["map", "filter", "explode"]), min_size=1, max_size=3)
items = st.lists(st.integers(0, 20), max_size=20)


def marked(source: list[int], every: int) -> Pipe[Any]:
    return Pipe(source).insert_marker(M, every=every)


@pytest.mark.timeout(120)
@given(
    sources,
    st.lists(stages, max_size=3),
    per_item,
    st.tuples(small, st.booleans()),
    st.integers(0, 40),
)
def test_unordered_thread_stage_at_the_end_resumes_as_a_multiset(
    source: Any, specs: list[tuple[Any, ...]], ops: list[str], end: tuple[int, bool], cut: int
) -> None:
    workers, after = end
    pipe = _concurrent_end(build(source, specs), ops, workers)
    check_unordered_law(pipe.map(inc) if after else pipe, cut)


@pytest.mark.timeout(120)
@settings(max_examples=6)
@given(items, small, per_item, st.integers(0, 30))
def test_unordered_process_stage_resumes_as_a_multiset(
    source: list[int], every: int, ops: list[str], cut: int
) -> None:
    pipe = marked(source, every)
    for op in ops:
        pipe = pipe.map(explode).flatten() if op == "explode" else pipe.map(double)
    check_unordered_law(pipe.process(2), cut)


async def _double(x: int) -> int:
    return 2 * x


@pytest.mark.timeout(120)
@settings(max_examples=10)
@given(items, small, st.integers(0, 30))
def test_unordered_asyncio_and_executor_stages_resume_as_a_multiset(
    source: list[int], every: int, cut: int
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    check_unordered_law(marked(source, every).map(_double).asyncio(3), cut)
    with ThreadPoolExecutor(2) as pool:
        on_pool = marked(source, every).map(double).executor(pool, chunksize=1 + every % 3)
        check_unordered_law(on_pool, cut)


@pytest.mark.timeout(60)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=12), st.integers(1, 3))
def test_unordered_concurrency_before_a_stateful_stage_is_not_resumable(
    items: list[int], workers: int
) -> None:
    with Pipe(items).map(double).thread(workers).partition(2).iter() as run:
        next(run)
        with pytest.raises(NotResumable, match=r"thread\(\d\) delivers items in the order"):
            run.state_dict()


@pytest.mark.timeout(120)
@given(
    sources,
    st.lists(st.sampled_from([double, inc]), max_size=2),
    st.tuples(small, st.integers(0, 9)),
    st.booleans(),
    st.integers(0, 40),
)
def test_a_shuffle_over_a_sequence_resumes_from_its_buffer(
    source: Any, maps: list[Any], shuffle: tuple[int, int], filtered: bool, cut: int
) -> None:
    pipe: Pipe[Any] = Pipe(source)
    for f in maps:
        pipe = pipe.map(f)
    pipe = pipe.shuffle(shuffle[0], seed=shuffle[1])
    if filtered:
        pipe = pipe.filter(odd).map(inc)
    with pipe.iter() as run:
        assert run.state_dict()["mode"] == "shuffle"
    check_law(pipe, cut)


@pytest.mark.timeout(120)
@given(
    st.integers(0, 120).map(range),
    st.tuples(st.integers(1, 12), st.integers(0, 9)),
    st.lists(small, max_size=2),
    st.tuples(small, st.booleans(), st.sampled_from([1, 3, 4096])),
    st.integers(0, 60),
)
def test_a_shuffle_before_a_concurrent_region_resumes_from_its_journal(
    source: range,
    shuffle: tuple[int, int],
    batches: list[int],
    end: tuple[int, bool, int],
    cut: int,
) -> None:
    workers, ordered, span = end
    with mock.patch.object(_checkpoint_journal, "SPAN", span):  # snapshots this often
        _journal_law(source, shuffle, batches, (workers, ordered), cut)


def _journal_law(
    source: range, shuffle: tuple[int, int], batches: list[int], end: tuple[int, bool], cut: int
) -> None:
    workers, ordered = end
    pipe: Pipe[Any] = Pipe(source).map(inc).shuffle(shuffle[0], seed=shuffle[1])
    for size in batches:
        pipe = pipe.partition(size)
    pipe = pipe.map(double if not batches else len).thread(workers)
    with pipe.iter() as run:
        items = list(run)
    k = min(cut, len(items))
    with pipe.iter() as run:
        for _ in range(k):
            next(run)
        state = run.state_dict()
    event(f"journaled: {'shuffle' in state}")
    if ordered:
        check_law(pipe.order(), cut)
    else:
        check_unordered_law(pipe, cut)
