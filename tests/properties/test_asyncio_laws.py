"""Laws of asyncio stages mixed with thread and sync stages, over random pipelines
(issue 16).

A pipeline is a random sequence of *segments*: a few per-item stages (map, filter, an
expanding map followed by flatten) ended by ``.asyncio(c)``, ``.thread(w)`` or nothing,
each optionally followed by ``.order()``. Only segments ended by ``.asyncio()`` hold
``async def`` functions. The source carries markers. The *reference* is the same stack
run synchronously with plain functions. Laws:

- the items are the reference's (exactly, markers included, when an ``order()`` follows
  the last concurrent stage);
- every marker arrives;
- when only asyncio stages stand after the last ``order()``, each marker still separates
  the same items: the items between two markers are the reference's, in any order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadwatch import gone_within, tinypl_threads

from tinypl import Marker, Pipe

MARK = Marker("law")


def _mapper(k: int, is_async: bool) -> Any:
    def plain(x: int) -> int:
        return x * k + 1

    async def coro(x: int) -> int:
        await asyncio.sleep(0.0005 if x % 5 == 0 else 0)  # some items overtake others
        return x * k + 1

    return coro if is_async else plain


def _keeper(k: int, is_async: bool) -> Any:
    def plain(x: int) -> bool:
        return x % k != 0

    async def coro(x: int) -> bool:
        await asyncio.sleep(0)
        return x % k != 0

    return coro if is_async else plain


def _expander(is_async: bool) -> Any:
    def plain(x: int) -> list[int]:
        return [x] * (x % 3)

    async def coro(x: int) -> list[int]:
        await asyncio.sleep(0)
        return [x] * (x % 3)

    return coro if is_async else plain


op = st.one_of(
    st.tuples(st.just("map"), st.integers(2, 5)),
    st.tuples(st.just("filter"), st.integers(2, 4)),
    st.tuples(st.just("expand"), st.just(0)),
)
segment = st.tuples(
    st.lists(op, min_size=0, max_size=3),
    st.sampled_from(["asyncio", "thread", "sync"]),
    st.integers(1, 6),  # concurrency or workers
    st.booleans(),  # followed by order()
)


def _build(pipe: Pipe[Any], segments: list[Any], *, reference: bool) -> Pipe[Any]:
    for ops, end, n, ordered in segments:
        is_async = end == "asyncio" and not reference
        for kind, k in ops:
            if kind == "map":
                pipe = pipe.map(_mapper(k, is_async))
            elif kind == "filter":
                pipe = pipe.filter(_keeper(k, is_async))
            else:
                pipe = pipe.map(_expander(is_async)).flatten()
        if reference:
            continue
        if end == "asyncio":
            pipe = pipe.asyncio(n, maxsize=max(1, n // 2))
        elif end == "thread":
            pipe = pipe.thread(n)
        if ordered:
            pipe = pipe.order()
    return pipe


def _stream(pipe: Pipe[Any]) -> list[Any]:
    seen: list[Any] = []
    for _ in pipe.on(MARK, lambda: seen.append(MARK)).each(seen.append):
        pass
    return seen


def _segments(stream: list[Any]) -> list[Counter[Any]]:
    parts: list[Counter[Any]] = [Counter()]
    for x in stream:
        if x is MARK:
            parts.append(Counter())
        else:
            parts[-1][x] += 1
    return parts


def _tail(segments: list[Any]) -> list[str]:
    """The ends of the concurrent segments after the last order()."""
    tail: list[str] = []
    for _ops, end, _n, ordered in segments:
        if end != "sync":
            tail.append(end)
        if ordered:
            tail = []
    return tail


@pytest.mark.timeout(300)
@given(
    data=st.lists(st.integers(0, 50), max_size=30),
    every=st.integers(1, 8),
    segments=st.lists(segment, min_size=1, max_size=4),
)
def test_mixed_pipelines_equal_the_sync_reference(
    data: list[int], every: int, segments: list[Any]
) -> None:
    before = tinypl_threads()
    source = Pipe(data).insert_marker(MARK, every=every)
    expected = _stream(_build(Pipe(source), segments, reference=True))
    got = _stream(_build(Pipe(source), segments, reference=False))
    tail = _tail(segments)
    if not tail:
        assert got == expected
    elif "thread" not in tail:
        assert _segments(got) == _segments(expected)
    else:
        assert got.count(MARK) == expected.count(MARK)
        assert Counter(x for x in got if x is not MARK) == Counter(
            x for x in expected if x is not MARK
        )
    assert gone_within(before, 2.0)


@pytest.mark.timeout(120)
@given(
    data=st.lists(st.integers(0, 50), max_size=40),
    concurrency=st.integers(1, 8),
    fail_at=st.integers(0, 40),
)
def test_an_error_is_raised_after_the_items_before_it_when_ordered(
    data: list[int], concurrency: int, fail_at: int
) -> None:
    before = tinypl_threads()

    async def work(item: tuple[int, int]) -> int:
        index, value = item
        await asyncio.sleep(0.0005 if value % 4 == 0 else 0)
        if index == fail_at:
            raise ValueError(index)
        return value

    pipe = Pipe(list(enumerate(data))).map(work).asyncio(concurrency).order()
    got: list[int] = []
    if fail_at < len(data):
        with pytest.raises(ValueError, match=str(fail_at)):
            got.extend(pipe)
        assert got == data[:fail_at]
    else:
        assert list(pipe) == data
    assert gone_within(before, 2.0)
