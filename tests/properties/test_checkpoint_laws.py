"""The checkpoint law (issue 14): for random pipelines over every stage kind and a random
cut k, the first k items of a run, then everything a run resumed from the state at k
yields (after a JSON round trip), equal one uninterrupted run; markers included (the
resumed run's raw stream is the rest of the uninterrupted run's raw stream)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tinypl import Marker, NotResumable, Pipe

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


@pytest.mark.timeout(60)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=12), st.integers(1, 3))
def test_unordered_concurrency_is_not_resumable(items: list[int], workers: int) -> None:
    with Pipe(items).map(double).thread(workers).iter() as run:
        next(run)
        with pytest.raises(NotResumable, match=r"thread\(\d\)"):
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
