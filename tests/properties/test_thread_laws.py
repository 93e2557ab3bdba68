"""Laws of thread stages and order restoration, over random pipelines (issue #3).

A pipeline is a random stack of map / filter / flatten / thread / order stages over a
random list. Its *synchronous run* is the same stack with the thread and order stages
removed. Items carry the index of the source item they descend from, so the number of
source items *in flight* (pulled from the source, some descendant not yet delivered nor
dropped) can be counted exactly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadwatch import gone_within, tinypl_threads

from tinypl import Marker, Pipe

MARK = Marker("law")
Item = tuple[int, int]  # (index of the source item, value)

# -- the instrumented pipeline -------------------------------------------------------------


class Lineage:
    """Tracks, per source item, how many of its descendants are still alive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[int, int] = {}
        self.in_flight = 0
        self.high = 0

    def _adjust(self, sid: int, delta: int) -> None:  # with self.lock held
        if sid not in self.live:
            self.live[sid] = 0
            self.in_flight += 1
            self.high = max(self.high, self.in_flight)
        self.live[sid] += delta
        if self.live[sid] == 0:
            self.in_flight -= 1

    def generator(self, data: list[int]) -> Iterator[Item]:
        for sid, value in enumerate(data):
            if sid % 4 == 0:
                time.sleep(0)  # releases the GIL in the frame: unguarded, this would break
            with self.lock:
                self._adjust(sid, 1)
            yield (sid, value)

    def enter(self, item: Item) -> Item:
        with self.lock:
            self._adjust(item[0], 1)
        return item

    def delivered(self, item: Item) -> None:
        with self.lock:
            self._adjust(item[0], -1)

    @staticmethod
    def mapper(k: int) -> Any:
        def mapped(item: Item) -> Item:
            sid, value = item
            if value % 11 == 0:
                time.sleep(0.0005)  # some items are slow, so workers overtake each other
            return (sid, value * k + 1)

        return mapped

    def filterer(self, k: int) -> Any:
        def keep(item: Item) -> bool:
            if item[1] % k:
                return True
            with self.lock:
                self._adjust(item[0], -1)
            return False

        return keep

    def expander(self, n: int) -> Any:
        def expand(item: Item) -> list[Item]:
            sid, value = item
            out = [(sid, value * 10 + j) for j in range(value % (n + 1))]
            with self.lock:
                self._adjust(sid, len(out) - 1)
            return out

        return expand


Op = tuple[Any, ...]


def build(
    data: list[int],
    ops: list[Op],
    *,
    source: str,
    every: int,
    threaded: bool,
    lineage: Lineage,
) -> Pipe[Any]:
    pipe: Pipe[Any]
    if source == "generator":  # not thread-safe: the thread stages guard it with a lock
        pipe = Pipe(lineage.generator(data))
    else:  # a list: pulled without a lock, counted by the first map
        pipe = Pipe(list(enumerate(data))).map(lineage.enter)
    if every:
        pipe = pipe.insert_marker(MARK, every=every)
    for op in ops:
        kind = op[0]
        if kind == "map":
            pipe = pipe.map(lineage.mapper(op[1]))
        elif kind == "filter":
            pipe = pipe.filter(lineage.filterer(op[1]))
        elif kind == "flatten":
            pipe = pipe.map(lineage.expander(op[1])).flatten()
        elif kind == "thread" and threaded:
            pipe = pipe.thread(op[1], op[2])
        elif kind == "order" and threaded:
            pipe = pipe.order(op[1])
    return pipe


def bound(ops: list[Op]) -> int:
    """The sum of the bounds: a thread stage holds ``maxsize + workers`` items (a default
    ``maxsize``, ``2 * workers``, may grow up to ``16 * workers``), an order window
    ``maxsize`` (default: what all thread stages hold before any growth). Slack, named: +1
    per order for the record the load is handing out, +1 per flatten for the item it is
    expanding, +1 for the item on its way to the consumer."""
    stages = [(op[1], op[2]) for op in ops if op[0] == "thread"]
    threads = sum(w + (16 * w if m is None else m) for w, m in stages)
    first = sum(w + (2 * w if m is None else m) for w, m in stages)
    orders = sum((first if op[1] is None else op[1]) + 1 for op in ops if op[0] == "order")
    flattens = sum(1 for op in ops if op[0] == "flatten")
    return threads + orders + flattens + 1


def consume(stage: Any, lineage: Lineage, limit: int | None = None) -> list[Any]:
    """Everything the final stage emits, markers included (its raw stream)."""
    out: list[Any] = []
    for x in stage.raw:
        out.append(x)
        if not isinstance(x, Marker):
            lineage.delivered(x)
        if len(out) % 9 == 0:
            time.sleep(0.0005)  # a consumer slower than the workers: queues fill up
        if limit is not None and len(out) >= limit:
            break
    return out


def run(
    data: list[int], ops: list[Op], source: str, every: int, *, limit: int | None = None
) -> tuple[list[Any], list[Any], Lineage]:
    """(threaded raw output, synchronous raw output, the threaded run's lineage)."""
    lineage = Lineage()
    pipe = build(data, ops, source=source, every=every, threaded=True, lineage=lineage)
    with iter(pipe) as stage:
        threaded = consume(stage, lineage, limit)
    pipe = build(data, ops, source=source, every=every, threaded=False, lineage=Lineage())
    with iter(pipe) as stage:
        sync = consume(stage, Lineage())
    return threaded, sync, lineage


# -- strategies ----------------------------------------------------------------------------

sizes = st.integers(1, 8)
thread_op = st.tuples(st.just("thread"), sizes, st.none() | sizes)
item_op = st.one_of(
    st.tuples(st.just("map"), st.integers(1, 5)),
    st.tuples(st.just("filter"), st.integers(2, 5)),
    st.tuples(st.just("flatten"), st.integers(0, 3)),
)
order_op = st.tuples(st.just("order"), st.none() | sizes)
any_op = st.one_of(item_op, item_op, thread_op, order_op)
# Every stack has at least one thread stage, and at most three.
stacks = st.builds(
    lambda before, thread, after: [*before, thread, *after],
    st.lists(any_op, max_size=3),
    thread_op,
    st.lists(any_op, max_size=3),
).filter(lambda ops: sum(op[0] == "thread" for op in ops) <= 3)
datas = st.integers(0, 50).flatmap(lambda n: st.lists(st.integers(0, 40), min_size=n, max_size=n))
sources = st.sampled_from(["generator", "list"])
everies = st.sampled_from([0, 1, 3])


def markers(stream: list[Any]) -> int:
    return sum(1 for x in stream if x is MARK)


def items(stream: list[Any]) -> Counter[Any]:
    return Counter(x for x in stream if x is not MARK)


# -- the laws -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@settings()
@given(data=datas, ops=stacks, source=sources, every=everies)
def test_threaded_outputs_are_the_synchronous_multiset(
    data: list[int], ops: list[Op], source: str, every: int
) -> None:
    threaded, sync, _ = run(data, ops, source, every)
    assert items(threaded) == items(sync)
    assert markers(threaded) == markers(sync)  # every marker exactly once


@pytest.mark.timeout(60)
@settings()
@given(data=datas, ops=stacks, last=order_op, source=sources, every=everies)
def test_with_order_the_sequence_equals_the_synchronous_run(
    data: list[int], ops: list[Op], last: Op, source: str, every: int
) -> None:
    threaded, sync, _ = run(data, [*ops, last], source, every)
    assert threaded == sync  # items and markers, each in its exact position


@pytest.mark.timeout(60)
@settings()
@given(data=datas, ops=stacks, ordered=st.booleans(), source=sources, every=everies)
def test_items_in_flight_never_exceed_the_sum_of_the_bounds(
    data: list[int], ops: list[Op], ordered: bool, source: str, every: int
) -> None:
    if ordered:
        ops = [*ops, ("order", None)]
    threaded, sync, lineage = run(data, ops, source, every)
    assert items(threaded) == items(sync)
    assert lineage.in_flight == 0  # every source item was accounted for
    assert lineage.high <= bound(ops), f"{lineage.high} in flight, bound {bound(ops)}"


@pytest.mark.timeout(60)
@settings()
@given(
    data=datas,
    ops=stacks,
    ordered=st.booleans(),
    limit=st.integers(0, 30),
    source=sources,
    every=everies,
)
def test_after_close_the_threads_are_back_to_what_they_were(
    *, data: list[int], ops: list[Op], ordered: bool, limit: int, source: str, every: int
) -> None:
    if ordered:
        ops = [*ops, ("order", None)]
    before = tinypl_threads()
    threaded, sync, _ = run(data, ops, source, every, limit=limit or None)
    assert gone_within(before, 1.0), [t.name for t in tinypl_threads() - before]
    if ordered:
        assert threaded == sync[: len(threaded)]
    else:
        assert not items(threaded) - items(sync)
