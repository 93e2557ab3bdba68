"""Laws of process stages mixed with thread stages and order restoration (issue #4).

A pipeline is a random stack of map / filter / expand (map to a list, then flatten) /
thread / process / order stages over a random list, with markers inserted at the source.
Its *synchronous run* is the same stack without the thread, process and order stages.

- ``process()`` builds iff a map, filter or expand stands directly before it, and
  otherwise raises ``ValueError`` at once;
- the output equals the synchronous run as a multiset, and exactly (markers included, at
  their positions) once an ``order()`` follows the last concurrent stage;
- every marker comes out exactly once.

Each example starts worker processes, so examples are few and small. ``fork`` is used
when the only concurrent stage is one process stage and no thread runs (it is then safe
and much faster); otherwise ``forkserver``.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadwatch import tinypl_threads

from tinypl import Marker, Pipe

MARK = Marker("law")

Op = tuple[str, int]

PER_ITEM = st.one_of(
    st.tuples(st.just("map"), st.integers(1, 5)),
    st.tuples(st.just("filter"), st.integers(2, 5)),
    st.tuples(st.just("expand"), st.integers(1, 3)),
)
ANY_OP = st.one_of(
    PER_ITEM,
    st.tuples(st.just("thread"), st.integers(1, 3)),
    st.tuples(st.just("process"), st.integers(1, 2)),
    st.tuples(st.just("order"), st.just(0)),
)


@st.composite
def pipelines(draw: st.DrawFn) -> list[Op]:
    """Segments of per-item stages, each followed by a thread or process stage and
    maybe an order(); at least one process stage; maybe per-item stages at the end."""
    ops: list[Op] = []
    segments = draw(st.integers(1, 3))
    with_process = draw(st.integers(0, segments - 1))
    for index in range(segments):
        ops += draw(st.lists(PER_ITEM, min_size=1, max_size=3))
        if index == with_process or draw(st.booleans()):
            ops.append(("process", draw(st.integers(1, 2))))
        else:
            ops.append(("thread", draw(st.integers(1, 3))))
        if draw(st.booleans()):
            ops.append(("order", 0))
    ops += draw(st.lists(PER_ITEM, max_size=2))
    if draw(st.booleans()):
        ops.append(("order", 0))
    return ops


def mapper(k: int) -> Callable[[int], int]:
    return lambda x: x * k + 1


def keeper(k: int) -> Callable[[int], bool]:
    return lambda x: x % k != 0


def expander(k: int) -> Callable[[int], list[int]]:
    return lambda x: [x + i for i in range(x % (k + 1))]


def apply(pipe: Pipe[Any], kind: str, k: int) -> Pipe[Any]:
    if kind == "map":
        return pipe.map(mapper(k))
    if kind == "filter":
        return pipe.filter(keeper(k))
    return pipe.map(expander(k)).flatten()


def build(
    data: list[int], every: int, ops: list[Op], method: str | None
) -> tuple[Pipe[Any], Pipe[Any], bool, int]:
    """The concurrent pipe, its synchronous run, whether its output is ordered, and how
    many process stages it has. ``method=None`` picks fork or forkserver (see above)."""
    concurrent: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    sync: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    previous = "source"
    ordered = True
    processes = threads = 0
    kinds = [kind for kind, _ in ops]
    only_one_process = kinds.count("process") == 1 and "thread" not in kinds
    for kind, k in ops:
        if kind in ("map", "filter", "expand"):
            concurrent, sync = apply(concurrent, kind, k), apply(sync, kind, k)
        elif kind == "thread":
            concurrent = concurrent.thread(k)
            ordered = False
            threads += 1
        elif kind == "process":
            if previous not in ("map", "filter", "expand"):
                with pytest.raises(ValueError, match="process"):
                    concurrent.process(k)
                continue  # the law holds; the stage is not added
            chosen = method or ("fork" if only_one_process else "forkserver")
            concurrent = concurrent.process(k, start_method=chosen)
            ordered = False
            processes += 1
        else:
            concurrent = concurrent.order()
            ordered = True
        previous = kind
    return concurrent, sync, ordered, processes


def run(pipe: Pipe[Any]) -> list[Any]:
    """The items and markers that come out of ``pipe``, in order (``"M"`` for a marker)."""
    events: list[Any] = []
    for x in pipe.on(MARK, lambda: events.append("M")):
        events.append(x)
    return events


@pytest.mark.timeout(120)
@settings(max_examples=25)
@given(
    data=st.lists(st.integers(0, 50), max_size=40),
    repeat=st.sampled_from([1, 1, 10, 100]),
    every=st.integers(1, 30),
    ops=pipelines(),
)
def test_process_pipelines_agree_with_the_sync_run(
    data: list[int], repeat: int, every: int, ops: list[Op]
) -> None:
    data = data * repeat  # long runs get large chunks
    # Threads of a previous example still winding down would make fork unsafe.
    method = "forkserver" if tinypl_threads() else None
    concurrent, sync, ordered, processes = build(data, every, ops, method)
    assert processes >= 1
    expected = run(sync)
    got = run(concurrent)
    assert got.count("M") == expected.count("M")  # every marker exactly once
    if ordered:
        assert got == expected
    else:
        assert Counter(got) == Counter(expected)


@pytest.mark.timeout(30)
@given(ops=st.lists(ANY_OP, min_size=1, max_size=8))
def test_process_builds_iff_per_item_stages_stand_before_it(ops: list[Op]) -> None:
    """``build`` asserts the law for every process stage; building starts nothing."""
    threads = threading.active_count()
    build([1, 2, 3], 2, ops, "forkserver")
    assert threading.active_count() == threads
    assert multiprocessing.active_children() == []


@pytest.mark.timeout(120)
@settings(max_examples=15)
@given(
    data=st.lists(st.integers(0, 50), min_size=1, max_size=60),
    repeat=st.sampled_from([1, 30]),
    every=st.integers(1, 40),
    head=st.lists(
        st.one_of(
            st.tuples(st.just("map"), st.integers(1, 5)),
            st.tuples(st.just("filter"), st.integers(2, 5)),
            st.tuples(st.just("expand"), st.integers(1, 3)),
        ),
        min_size=1,
        max_size=3,
    ),
    workers=st.integers(1, 2),
    tail=st.sampled_from([[], [("map", 2)], [("thread", 2)], [("map", 3), ("thread", 1)]]),
)
def test_order_after_a_process_stage_restores_items_and_markers(
    *, data: list[int], repeat: int, every: int, head: list[Op], workers: int, tail: list[Op]
) -> None:
    data = data * repeat
    ops: list[Op] = [*head, ("process", workers), *tail, ("order", 0)]
    method = "forkserver" if tail or tinypl_threads() else "fork"
    concurrent, sync, ordered, processes = build(data, every, ops, method)
    assert ordered and processes == 1
    assert run(concurrent) == run(sync)
