"""Laws of ``ignore_errors`` and its failure budget over random pipelines (issue 13).

A pipeline is a random stack of map / filter / flatten / thread stages over a random
list, with markers inserted at the source; some items make a stage function raise.
Its *reference* is a plain-Python run of the same stack that drops an item (or a
flattened element) wherever a function raises for it. With ``ignore_errors()`` the
pipeline's output is exactly the reference (ordered with ``.order()``, markers in
place); with a budget, the run raises ``TooManyErrors`` exactly at the failure that
breaks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinypl as pl
from tinypl import Marker, Pipe

MARK = Marker("law")


class Boom(Exception):
    pass


def _failing(kind: str, salt: int, modulus: int) -> Callable[[int], Any]:
    def fails(x: int) -> bool:
        return (x * salt + 7) % modulus == 0

    if kind == "map":

        def fn(x: int) -> Any:
            if fails(x):
                raise Boom(x)
            return x + salt

    elif kind == "filter":

        def fn(x: int) -> Any:
            if fails(x):
                raise Boom(x)
            return x % 3 != 0

    else:  # "expand": map to a list, flattened by the next stage

        def fn(x: int) -> Any:
            if fails(x):
                raise Boom(x)
            return [x, x + 1]

    return fn


Stage = tuple[str, int, int]  # (kind, salt, modulus) or ("thread", workers, 0)

stages = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["map", "filter", "expand"]), st.integers(1, 9), st.integers(2, 7)
        ),
        st.tuples(st.just("thread"), st.integers(1, 4), st.just(0)),
    ),
    min_size=1,
    max_size=5,
)


def _reference(data: list[int], stack: list[Stage], every: int) -> list[Any]:
    """The plain-Python run: markers pass, an element is dropped where it fails."""
    stream: list[Any] = []
    for i, x in enumerate(data):
        stream.append(x)
        if (i + 1) % every == 0:
            stream.append(MARK)
    for kind, salt, modulus in stack:
        if kind == "thread":
            continue
        fn = _failing(kind, salt, modulus)
        out: list[Any] = []
        for x in stream:
            if x is MARK:
                out.append(x)
                continue
            try:
                result = fn(x)
            except Boom:
                continue
            if kind == "map":
                out.append(result)
            elif kind == "filter":
                if result:
                    out.append(x)
            else:
                out.extend(result)
        stream = out
    return stream


def _build(data: list[int], stack: list[Stage], every: int) -> Pipe[Any]:
    pipe: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    for kind, salt, modulus in stack:
        if kind == "thread":
            pipe = pipe.thread(salt)
            continue
        fn = _failing(kind, salt, modulus)
        if kind == "map":
            pipe = pipe.map(fn)
        elif kind == "filter":
            pipe = pipe.filter(fn)
        else:
            pipe = pipe.map(fn).flatten()
    return pipe


@pytest.mark.timeout(120)
@given(data=st.lists(st.integers(0, 50), max_size=40), stack=stages, every=st.integers(1, 6))
def test_ignore_errors_is_the_reference_minus_failing_items_in_order(
    data: list[int], stack: list[Stage], every: int
) -> None:
    seen: list[Any] = []
    pipe = _build(data, stack, every).ignore_errors(log=False).order()
    out = list(pipe.on(MARK, lambda: seen.append(MARK)).each(seen.append))
    assert out == [x for x in seen if x is not MARK]
    assert seen == _reference(data, stack, every)


@pytest.mark.timeout(120)
@given(data=st.lists(st.integers(0, 50), max_size=40), stack=stages, every=st.integers(1, 6))
def test_ignore_errors_unordered_keeps_the_same_items(
    data: list[int], stack: list[Stage], every: int
) -> None:
    out = list(_build(data, stack, every).ignore_errors(log=False))
    expected = [x for x in _reference(data, stack, every) if x is not MARK]
    assert sorted(out) == sorted(expected)


def _expected_budget(
    failing: list[bool], budget: int | float
) -> tuple[list[int], tuple[int, int] | None]:
    """The items delivered and, when the budget breaks, (failures, seen) at that point."""
    out: list[int] = []
    failures = 0
    for seen, bad in enumerate(failing, start=1):
        if not bad:
            out.append(seen - 1)
            continue
        failures += 1
        if isinstance(budget, int):
            over = failures > budget
        else:
            over = seen >= 100 and failures > budget * seen
        if over:
            return out, (failures, seen)
    return out, None


@st.composite
def failure_patterns(draw: st.DrawFn) -> list[bool]:
    """Which of up to 300 items fail: a random set, or a steady rate (which makes share
    budgets break near the 100-item threshold)."""
    if draw(st.booleans()):
        return draw(st.lists(st.booleans(), max_size=300))
    size, rate, salt = draw(st.integers(0, 300)), draw(st.integers(0, 10)), draw(st.integers())
    return [(i * 7 + salt) % 10 < rate for i in range(size)]


@given(
    failing=failure_patterns(),
    budget=st.one_of(st.integers(0, 40), st.floats(0.01, 0.99)),
)
def test_the_budget_breaks_at_exactly_the_right_count_or_share(
    failing: list[bool], budget: int | float
) -> None:
    def check(i: int) -> int:
        if failing[i]:
            raise Boom(i)
        return i

    expected, breaks = _expected_budget(failing, budget)
    stage = iter(Pipe(range(len(failing))).map(check).ignore_errors(budget, log=False))
    out: list[int] = []
    if breaks is None:
        out.extend(stage)
        assert out == expected
        return
    with pytest.raises(pl.TooManyErrors) as caught:
        for x in stage:
            out.append(x)
    assert out == expected
    assert (caught.value.failures, caught.value.seen) == breaks
    assert isinstance(caught.value.__cause__, Boom)
    assert caught.value.__cause__.args == (breaks[1] - 1,)


@pytest.mark.timeout(120)
@given(
    failing=st.lists(st.booleans(), max_size=120),
    budget=st.integers(0, 10),
    workers=st.integers(1, 4),
)
def test_with_threads_a_count_budget_breaks_exactly_when_exceeded(
    failing: list[bool], budget: int, workers: int
) -> None:
    def check(i: int) -> int:
        if failing[i]:
            raise Boom(i)
        return i

    pipe = Pipe(range(len(failing))).map(check).thread(workers)
    pipe = pipe.ignore_errors(budget, log=False).order()
    if sum(failing) <= budget:
        assert list(pipe) == [i for i, bad in enumerate(failing) if not bad]
        return
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe)
    assert caught.value.failures == budget + 1


def _process_stack(stack: list[Stage]) -> list[Stage]:
    """The stack with its thread stages turned into process stages (a process stage
    needs per-item work directly before it: thread stages with none before are left
    out), and one process stage at the end."""
    out: list[Stage] = []
    for kind, salt, modulus in stack:
        if kind == "thread":
            if out and out[-1][0] != "process":
                out.append(("process", min(salt, 2), 0))
            continue
        out.append((kind, salt, modulus))
    if not out:
        out.append(("map", 1, 2))
    if out[-1][0] != "process":
        out.append(("process", 2, 0))  # at least one process stage
    return out


@pytest.mark.timeout(300)
@settings(max_examples=8)
@given(data=st.lists(st.integers(0, 50), max_size=40), stack=stages, every=st.integers(1, 6))
def test_with_processes_ignore_errors_is_the_reference_minus_failing_items(
    data: list[int], stack: list[Stage], every: int
) -> None:
    stack = _process_stack(stack)
    pipe: Pipe[Any] = Pipe(data).insert_marker(MARK, every=every)
    for kind, salt, modulus in stack:
        if kind == "process":
            pipe = pipe.process(salt, start_method="fork")
        else:
            pipe = _build_one(pipe, kind, salt, modulus)
    seen: list[Any] = []
    pipe = pipe.ignore_errors(log=False).order()
    out = list(pipe.on(MARK, lambda: seen.append(MARK)).each(seen.append))
    assert out == [x for x in seen if x is not MARK]
    assert seen == _reference(data, [s for s in stack if s[0] != "process"], every)


def _build_one(pipe: Pipe[Any], kind: str, salt: int, modulus: int) -> Pipe[Any]:
    fn = _failing(kind, salt, modulus)
    if kind == "map":
        return pipe.map(fn)
    if kind == "filter":
        return pipe.filter(fn)
    return pipe.map(fn).flatten()
