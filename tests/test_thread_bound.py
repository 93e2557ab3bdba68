"""A thread stage's default bound grows while its reader keeps up, and only then.

Left unset, ``maxsize`` starts at ``2 * workers`` and doubles (up to ``16 * workers``)
each time a worker finds the queue full after the reader has found it empty: a reader
that is only late to be scheduled must not stall the workers. A reader slower than the
workers never finds the queue empty, so its bound stays; an explicit ``maxsize`` never
grows. Each test steers the stage into one of these states with events and then observes
it (``stage.maxsize``, ``stage.fill`` and a count of the items pulled).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from test_threads import wait_for

from tinypl import Pipe


class Gated:
    """A map function for one worker thread that holds item ``x`` while a gate is set
    for it, counting its calls (one worker: items arrive in order)."""

    def __init__(self) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.reached = threading.Event()
        self.calls = 0

    def hold(self, x: int) -> threading.Event:
        self.gates[x] = gate = threading.Event()
        return gate

    def __call__(self, x: int) -> int:
        self.calls += 1
        gate = self.gates.get(x)
        if gate is not None:
            self.reached.set()
            assert gate.wait(10), "the test never opened the gate"
        return x


def waiting(stage: Any) -> bool:
    """Whether the reader has found the queue empty since the bound last grew (white box:
    the only way to open a gate after the reader is waiting, not before)."""
    return bool(stage._pool.waited)


def wait_then_read(stage: Any, gated: Gated, x: int) -> None:
    """Pull item ``x``, held by its gate, so that the reader finds the queue empty first."""
    gate = gated.gates[x]
    opener = threading.Thread(target=lambda: wait_for(lambda: waiting(stage)) and gate.set())
    opener.start()
    assert next(stage) == x
    opener.join()


def settle(stage: Any, gated: Gated, delivered: int) -> int:
    """Let the worker fill the queue; the bound it settled at: a full queue, and one item
    more in the worker's hands."""

    def settled() -> bool:
        return stage.fill == 1.0 and gated.calls == delivered + stage.maxsize + 1

    assert wait_for(settled), (stage.maxsize, stage.fill, gated.calls, delivered)
    return int(stage.maxsize)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("maxsize", "grown"), [(None, 4), (2, 2)], ids=["default doubles", "explicit stays"]
)
def test_a_full_queue_after_the_reader_waited_doubles_a_default_bound(
    maxsize: int | None, grown: int
) -> None:
    gated = Gated()
    gated.hold(1)
    with iter(Pipe(range(100)).map(gated).thread(1, maxsize)) as stage:
        assert stage.maxsize == 2
        assert next(stage) == 0  # waiting for the workers to start does not count
        assert gated.reached.wait(5)
        wait_then_read(stage, gated, 1)
        assert settle(stage, gated, delivered=2) == grown
        assert list(stage) == list(range(2, 100))


@pytest.mark.timeout(30)
def test_the_default_bound_doubles_once_per_wait_up_to_sixteen_times_the_workers() -> None:
    gated = Gated()
    bounds = []
    with iter(Pipe(range(1000)).map(gated).thread(1)) as stage:
        assert next(stage) == 0
        delivered = 1
        bounds.append(settle(stage, gated, delivered))
        for _ in range(5):
            held = gated.calls - 1  # the item the worker holds; gate the one after it
            gated.hold(held + 1)
            while delivered <= held:
                assert next(stage) == delivered
                delivered += 1
            wait_then_read(stage, gated, delivered)
            delivered += 1
            bounds.append(settle(stage, gated, delivered))
        assert list(stage) == list(range(delivered, 1000))
    assert bounds == [2, 4, 8, 16, 16, 16]


@pytest.mark.timeout(20)
def test_a_reader_slower_than_the_workers_keeps_the_default_bound() -> None:
    calls = [0]
    count_lock = threading.Lock()

    def count(x: int) -> int:
        with count_lock:
            calls[0] += 1
        return x

    n = 60
    with iter(Pipe(range(n)).map(count).thread(2)) as stage:
        got = [next(stage)]
        for _ in range(n - 1):
            # Only ever read from a full queue (or once the source is drained): the reader
            # never finds it empty, as one slower than the workers would not.
            def full_or_drained() -> bool:
                return stage.fill == 1.0 or calls[0] == n

            assert wait_for(full_or_drained)
            got.append(next(stage))
            assert stage.maxsize == 4, f"grew to {stage.maxsize} after {len(got)} items"
        assert sorted(got) == list(range(n))
