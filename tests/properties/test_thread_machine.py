"""A state machine interleaving pulls, close() and injected errors on threaded pipelines.

After every step: what the consumer got so far is a sub-multiset (unordered) or an exact
prefix (with ``.order()``) of the synchronous run, also after close(). An injected error
surfaces with its type (or as ``WorkerError`` from it, with ``on_worker_error="forward"``),
is never swallowed, and no item after the failed one comes before it. Once it has
surfaced, further pulls may raise again, end, or go on: the items that then come are only
checked to be ones the synchronous run has (the failed item is missing from the sequence).
After close() no worker thread remains.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from threadwatch import gone_within, tinypl_threads

import tinypl as pl
from tinypl import Pipe


class InjectedError(Exception):
    pass


class Fault:
    """Raises ``InjectedError`` once, at the first item processed after ``arm()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed = False
        self.fired = False

    def arm(self) -> None:
        with self._lock:
            self.armed = True

    def check(self, x: int) -> None:
        with self._lock:
            if not self.armed or self.fired:
                return
            self.fired = True
        raise InjectedError(f"injected at {x}")


Shape = tuple[int, "int | None", bool, bool, bool]  # workers, maxsize, stacked, filter, flatten


def build(
    data: list[int],
    shape: Shape,
    site: str,
    fault: Fault,
    *,
    threaded: bool,
    ordered: bool = False,
    mode: str = "raise",
) -> Pipe[Any]:
    workers, maxsize, stacked, filtered, flattened = shape

    def source() -> Iterator[int]:
        for x in data:
            if site == "source":
                fault.check(x)
            yield x

    def f(x: int) -> int:
        if site == "map":
            fault.check(x)
        if x % 5 == 0:
            time.sleep(0.001)  # slow items: workers overtake each other
        return 3 * x + 1

    pipe = Pipe(source()).map(f)
    if filtered:
        pipe = pipe.filter(lambda x: x % 4 != 0)
    if threaded:
        pipe = pipe.thread(workers, maxsize, on_worker_error=mode)
    if stacked:
        pipe = pipe.map(lambda x: x - 1)
        if threaded:
            pipe = pipe.thread(max(1, workers - 1), maxsize)
    if flattened:
        pipe = pipe.map(lambda x: range(x % 3)).flatten()
    if threaded and ordered:
        pipe = pipe.order()
    return pipe


class ThreadedPipeline(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stage: Any = None
        self.before = tinypl_threads()
        self.out: list[Any] = []  # what came before the injected error surfaced
        self.after_error: list[Any] = []
        self.closed = self.failed = self.ended = False

    @initialize(
        data=st.integers(10, 60).flatmap(
            lambda n: st.lists(st.integers(0, 60), min_size=n, max_size=n)
        ),
        shape=st.tuples(
            st.integers(2, 4),
            st.none() | st.integers(1, 4),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
        site=st.sampled_from(["map", "source"]),
        ordered=st.booleans(),
        mode=st.sampled_from(["raise", "forward"]),
    )
    def start(self, data: list[int], shape: Shape, site: str, ordered: bool, mode: str) -> None:
        self.ordered, self.mode = ordered, mode
        self.expected = list(build(data, shape, site, Fault(), threaded=False))
        self.fault = Fault()
        threaded = build(data, shape, site, self.fault, threaded=True, ordered=ordered, mode=mode)
        self.stage = iter(threaded)

    def _is_injected(self, error: BaseException) -> bool:
        if self.mode == "forward" and not isinstance(error, InjectedError):
            return isinstance(error, pl.WorkerError) and isinstance(error.__cause__, InjectedError)
        return isinstance(error, InjectedError)

    @rule(times=st.integers(1, 8))
    def pull(self, times: int) -> None:
        for _ in range(times):
            self._pull_one()

    def _pull_one(self) -> None:
        try:
            x = next(self.stage)
        except StopIteration:
            if not (self.closed or self.failed):
                # A normal end: nothing was lost, and no error was swallowed.
                assert not self.fault.fired, "the injected error never reached the consumer"
                if self.ordered:
                    assert self.out == self.expected
                else:
                    assert Counter(self.out) == Counter(self.expected)
            self.ended = True
        except (InjectedError, pl.WorkerError) as error:
            assert self._is_injected(error), repr(error)
            assert self.fault.fired
            self.failed = True
            # The other workers stop (and are joined) without any close().
            assert gone_within(self.before, 1.0)
        else:
            assert not self.ended or self.closed, "an item after the end of the stream"
            (self.after_error if self.failed else self.out).append(x)

    @precondition(lambda self: not self.fault.armed)
    @rule()
    def inject_error(self) -> None:
        self.fault.arm()

    @rule()
    def close(self) -> None:
        self.stage.close()
        self.closed = True
        assert gone_within(self.before, 1.0), [t.name for t in tinypl_threads() - self.before]

    @invariant()
    def outputs_so_far_are_consistent_with_the_sync_run(self) -> None:
        if self.stage is None:
            return
        if self.ordered:
            assert self.out == self.expected[: len(self.out)]
        assert not Counter(self.out + self.after_error) - Counter(self.expected)

    def teardown(self) -> None:
        if self.stage is not None:
            self.stage.close()
        assert gone_within(self.before, 1.0), [t.name for t in tinypl_threads() - self.before]


ThreadedPipeline.TestCase.settings = settings(stateful_step_count=30)
TestThreadedPipeline = pytest.mark.timeout(120)(ThreadedPipeline.TestCase)
