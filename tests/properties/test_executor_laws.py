"""Laws of executor stages (issue 15), on a thread pool to keep examples fast.

A pipeline is a random stack of segments of map / filter / expand (map to a list, then
flatten) stages, each followed by an ``executor()`` (random ``maxsize`` and
``chunksize``) or a thread stage, and maybe an ``order()``, over a random list with
markers inserted at the source. Its *synchronous run* is the same stack without the
executor, thread and order stages.

- the output equals the synchronous run as a multiset, and exactly (markers included, at
  their positions) once an ``order()`` follows the last concurrent stage;
- every marker comes out exactly once (markers never go to the executor);
- ``executor()`` builds iff a map, filter or expand stands directly before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinypl import Marker, Pipe

MARK = Marker("law")
POOL = ThreadPoolExecutor(3)

Op = tuple[str, int, int]

PER_ITEM = st.one_of(
    st.tuples(st.just("map"), st.integers(1, 5), st.just(0)),
    st.tuples(st.just("filter"), st.integers(2, 5), st.just(0)),
    st.tuples(st.just("expand"), st.integers(1, 3), st.just(0)),
)
CONCURRENT = st.one_of(
    st.tuples(st.just("executor"), st.integers(0, 4), st.integers(0, 7)),
    st.tuples(st.just("thread"), st.integers(1, 3), st.just(0)),
)


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    POOL.shutdown(wait=True)


@st.composite
def pipelines(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for index in range(draw(st.integers(1, 3))):
        ops += draw(st.lists(PER_ITEM, max_size=3, min_size=1 if index == 0 else 0))
        stage = draw(CONCURRENT)
        ops.append(stage if index else ("executor", stage[1] % 5, draw(st.integers(0, 7))))
        if draw(st.booleans()):
            ops.append(("order", 0, 0))
    ops += draw(st.lists(PER_ITEM, max_size=2))
    if draw(st.booleans()):
        ops.append(("order", 0, 0))
    return ops


def apply(pipe: Pipe[Any], kind: str, k: int) -> Pipe[Any]:
    if kind == "map":
        return pipe.map(lambda x: x * k + 1)
    if kind == "filter":
        return pipe.filter(lambda x: x % k != 0)
    return pipe.map(lambda x: [x + i for i in range(x % (k + 1))]).flatten()


def build(data: list[int], every: int, ops: list[Op]) -> tuple[Pipe[Any], Pipe[Any], bool]:
    """The concurrent pipe, its synchronous run, and whether its output is ordered."""
    concurrent: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    sync: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    previous, ordered = "source", True
    for kind, a, b in ops:
        if kind in ("map", "filter", "expand"):
            concurrent, sync = apply(concurrent, kind, a), apply(sync, kind, a)
        elif kind == "executor":
            maxsize, chunksize = a or None, b or None
            if previous not in ("map", "filter", "expand"):
                with pytest.raises(ValueError, match="executor"):
                    concurrent.executor(POOL, maxsize, chunksize)
                continue
            concurrent = concurrent.executor(POOL, maxsize, chunksize)
            ordered = False
        elif kind == "thread":
            concurrent, ordered = concurrent.thread(a), False
        else:
            concurrent, ordered = concurrent.order(), True
        previous = kind
    return concurrent, sync, ordered


def run(pipe: Pipe[Any]) -> list[Any]:
    """The items and markers that come out of ``pipe``, in order (``"M"`` for a marker)."""
    events: list[Any] = []
    for x in pipe.on(MARK, lambda: events.append("M")):
        events.append(x)
    return events


@pytest.mark.timeout(120)
@settings(max_examples=40)
@given(
    data=st.lists(st.integers(0, 50), max_size=40),
    repeat=st.sampled_from([1, 1, 10, 100]),
    every=st.integers(1, 30),
    ops=pipelines(),
)
def test_executor_pipelines_agree_with_the_sync_run(
    data: list[int], repeat: int, every: int, ops: list[Op]
) -> None:
    concurrent, sync, ordered = build(data * repeat, every, ops)
    expected, got = run(sync), run(concurrent)
    assert got.count("M") == expected.count("M")
    if ordered:
        assert got == expected
    else:
        assert Counter(got) == Counter(expected)
