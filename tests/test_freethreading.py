"""Thread stages whose workers pull one source at once: every item exactly once.

With the GIL, ``__next__`` of a list or range iterator is one atomic C call, so worker
threads may pull such a source without a lock. On a free-threaded build it is not (two
threads get the same item twice, or one is lost): there such a source is pulled under a lock
once threads share it (the functions after it still run concurrently, see
``test_threads.py::test_user_functions_upstream_run_concurrently``). These tests hold
on both builds; on a free-threaded one they failed before the source was locked
(``benchmarks/freethreaded.sh --tests`` runs the suite there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

import tinypl as pl

N = 50_000

SOURCES: dict[str, Callable[[], Iterable[Any]]] = {
    "range": lambda: range(N),
    "list": lambda: list(range(N)),
    "tuple": lambda: tuple(range(N)),
    "dict": lambda: dict.fromkeys(range(N)),
    "dict.values": lambda: dict.fromkeys(range(N), 0).values(),
    "set": lambda: set(range(N)),
    "bytes": lambda: bytes(range(256)) * (N // 256),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("fused", [False, True], ids=["bare", "fused-map"])
def test_threads_pulling_one_source_get_every_item_exactly_once(name: str, fused: bool) -> None:
    make = SOURCES[name]
    expected = Counter(iter(make()))  # a dict given to Counter would be counts
    for _ in range(5):  # a race shows within a few runs on a free-threaded build
        pipe = pl.Pipe(make())
        pipe = pipe.map(abs) if fused else pipe
        assert Counter(pipe.thread(4)) == expected


def test_a_source_under_the_lock_still_tells_its_length() -> None:
    import operator
    import threading

    from tinypl._runtime._steps import Locked

    locked = Locked(iter(range(5)), threading.Lock())
    assert operator.length_hint(locked) == 5
    next(locked)
    assert operator.length_hint(locked) == 4
    assert operator.length_hint(Locked(iter(x for x in range(3)), threading.Lock()), -1) == -1


@pytest.mark.timeout(60)
def test_workers_starting_together_on_a_live_fused_stage_get_every_item() -> None:
    """A thread stage on a live ``pl.map`` stage: its workers once pulled the map stage's
    ``itertools.chain``, whose part in progress is not safe to advance from two threads;
    one could end the chain for all (a free-threaded build lost items in 34 of 200 such
    runs, with no error). The barrier makes every worker pull first at the same moment."""
    import threading

    workers = 4
    for _ in range(100):
        barrier = threading.Barrier(workers)
        upstream = pl.map(range(1000), abs)
        with pl.thread.queue(upstream, workers=workers, init=barrier.wait) as stage:
            assert sorted(stage) == list(range(1000))


@pytest.mark.timeout(60)
def test_two_stages_on_one_live_source_in_two_threads_share_it_exactly() -> None:
    """Two stages built on one live source, one pulled by this thread and one by a thread
    stage's workers: every item reaches exactly one of them. Without the GIL the source
    was locked only when the thread stage was built, while the stage built before it
    kept pulling the bare list iterator (duplicates in 9 of 30 runs of 200,000 items)."""
    import threading

    n = 50_000
    for _ in range(10):
        source = iter(pl.Pipe(list(range(n))))
        here = pl.map(source, abs)
        there = pl.thread.map(source, abs, workers=3)
        got: list[int] = []
        reader = threading.Thread(target=got.extend, args=(there,))
        reader.start()
        mine = list(here)
        reader.join(30)
        assert not reader.is_alive()
        counts = Counter(mine + got)
        assert sorted(counts) == list(range(n))
        assert set(counts.values()) == {1}


VIEWS: dict[str, Callable[[Any], Any]] = {
    "report": lambda up: pl.report(up, every=60, to=lambda stats: None),
    "trace": lambda up: pl.debug.print_on_item(up, "item"),
    "on": lambda up: pl.marker.on(up, lambda: None),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_workers_starting_together_on_a_view_of_a_live_fused_stage_get_every_item(
    view: str,
) -> None:
    """The same through a live stage that adds nothing unsafe (report, trace, on), built
    on the ``pl.map`` stage before the thread stage: the view kept the map stage's chain
    while the thread stage made the map stage hand its step iterator out, so the workers
    still advanced the chain together (a free-threaded build lost items in 2 of 200 runs
    through ``pl.report``). Now the view follows its upstream's new raw stream."""
    import threading

    workers = 4
    for _ in range(200):
        barrier = threading.Barrier(workers)
        source: Iterable[int] = range(1000)
        if view == "on":  # a marker may pass, so the stage is built; none does
            source = pl.marker.insert_periodic(source, 10**6)[0]
        upstream = VIEWS[view](pl.map(source, abs))
        with pl.thread.queue(upstream, workers=workers, init=barrier.wait) as stage:
            assert sorted(stage) == list(range(1000))
