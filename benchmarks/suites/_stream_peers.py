"""The peers of the ``streams`` suite: buffer shuffles, weighted mixes, and the stop of
the workers above ``take``.

Every ``build`` returns ``(run, check)`` as the harness expects; optional libraries
(torchdata, psutil) are imported inside it, so that a missing one becomes an ``n/a``
cell. The tinypl cases use the API of issue 11 (``Pipe.shuffle``, ``Pipe.mix``,
``Pipe.take``); on a tinypl without it they fail at build with ``AttributeError``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from benchmarks import _workloads as w
from benchmarks._timing import Check
from benchmarks.harness import Run, new_tinypl

SHUFFLE_ITEMS = 1_000_000
SHUFFLE_BUFFER = 10_000
MIX_ITEMS = 1_000_000
MIX_WEIGHTS = (0.5, 0.3, 0.2)
TAKE_ITEMS = 10
TAKE_WORKERS = 2
STOP_DEADLINE = 10.0
"""Seconds a take run waits for the workers to stop before it reports a failure."""

# -- shuffle -----------------------------------------------------------------------------


def python_buffer_shuffle(items: Iterable[int], size: int, seed: int) -> Iterator[int]:
    """The reference: fill a buffer, emit a uniformly chosen item and put the next input
    in its place; shuffle what is left at the end."""
    rng = random.Random(seed)
    draw = rng.random
    source = iter(items)
    buffer = list(itertools.islice(source, size))
    size = len(buffer)
    for item in source:
        # int(draw() * size) is uniform up to float rounding, and much cheaper than
        # randrange (the usual choice in hand-written shuffle buffers).
        slot = int(draw() * size)
        yield buffer[slot]
        buffer[slot] = item
    rng.shuffle(buffer)
    yield from buffer


def make_permutation_check(n: int) -> Check:
    def check(result: Any) -> str | None:
        values = list(result)
        if len(values) != n:
            return f"expected {n:,} items, got {len(values):,}"
        if values == list(range(n)):
            return "the items were not shuffled"
        if sorted(values) != list(range(n)):
            return "not a permutation of the input"
        return None

    return check


def shuffle_python(n: int, size: int) -> tuple[Run, Check]:
    def run() -> list[int]:
        return list(python_buffer_shuffle(range(n), size, seed=0))

    return run, make_permutation_check(n)


def shuffle_tinypl(n: int, size: int) -> tuple[Run, Check]:
    pl = new_tinypl()
    pipe = pl.Pipe(range(n)).shuffle(size, seed=0)  # AttributeError before issue 11

    def run() -> list[int]:
        return list(pipe)

    return run, make_permutation_check(n)


def _torchdata_buffer_shuffler() -> type:
    """A buffer shuffle in the node protocol of ``torchdata.nodes``, which offers no
    shuffle buffer of its own (0.11.0, the latest release, nor its main branch in June
    2025): what a torchdata user writes, a ``BaseNode`` with ``reset``/``next``/``get_state``
    drawing from a buffer it refills, as ``IterableWrapper`` and ``Batcher`` are built."""
    from torchdata.nodes import BaseNode

    class BufferShuffler(BaseNode[Any]):
        def __init__(self, source: Any, buffer_size: int, seed: int) -> None:
            super().__init__()
            self.source = source
            self.buffer_size = buffer_size
            self.seed = seed

        def reset(self, initial_state: dict[str, Any] | None = None) -> None:
            super().reset(initial_state)
            self.source.reset(None if initial_state is None else initial_state["source"])
            self.rng = random.Random(self.seed)
            self.buffer: list[Any] = []
            self.exhausted = False

        def next(self) -> Any:
            buffer = self.buffer
            while not self.exhausted and len(buffer) < self.buffer_size:
                try:
                    buffer.append(next(self.source))
                except StopIteration:
                    self.exhausted = True
            if not buffer:
                raise StopIteration
            slot = int(self.rng.random() * len(buffer))
            buffer[slot], buffer[-1] = buffer[-1], buffer[slot]
            return buffer.pop()

        def get_state(self) -> dict[str, Any]:
            return {"source": self.source.state_dict(), "buffer": list(self.buffer)}

    return BufferShuffler


def shuffle_torchdata(n: int, size: int) -> tuple[Run, Check]:
    from torchdata import nodes

    # Should a release add a shuffle node, measure that one instead.
    builtin = getattr(nodes, "Shuffler", None)
    shuffler = _torchdata_buffer_shuffler() if builtin is None else builtin

    def run() -> list[int]:
        root = shuffler(nodes.IterableWrapper(range(n)), buffer_size=size, seed=0)
        return list(nodes.Loader(root))

    return run, make_permutation_check(n)


def torchdata_has_shuffler() -> bool:
    try:
        from torchdata import nodes
    except ImportError:
        return False
    return hasattr(nodes, "Shuffler")


# -- mix ---------------------------------------------------------------------------------


def mix_sizes(n: int, weights: Sequence[float]) -> list[int]:
    """Input sizes in proportion to the weights, adding up to ``n``."""
    sizes = [int(n * weight / sum(weights)) for weight in weights]
    sizes[0] += n - sum(sizes)
    return sizes


def mix_inputs(sizes: Sequence[int]) -> list[range]:
    """Disjoint ranges, so the result shows which input each item came from."""
    starts = [0, *itertools.accumulate(sizes)]
    return [range(start, start + size) for start, size in zip(starts, sizes, strict=False)]


def make_merge_check(sizes: Sequence[int]) -> Check:
    inputs = mix_inputs(sizes)

    def check(result: Any) -> str | None:
        values = list(result)
        if len(values) != sum(sizes):
            return f"expected {sum(sizes):,} items, got {len(values):,}"
        for index, source in enumerate(inputs):
            mine = [value for value in values if value in source]
            if mine != list(source):
                return f"input {index} lost items or their order"
        head = values[: len(values) // 10]
        if len({next(i for i, s in enumerate(inputs) if v in s) for v in head}) < len(inputs):
            return "the inputs are not interleaved"
        return None

    return check


def mix_tinypl(n: int, weights: Sequence[float]) -> tuple[Run, Check]:
    pl = new_tinypl()
    sizes = mix_sizes(n, weights)
    inputs = mix_inputs(sizes)
    # AttributeError before issue 11.
    pipe = pl.Pipe.mix([pl.Pipe(r) for r in inputs], weights=list(weights), seed=0, stop="all")

    def run() -> list[int]:
        return list(pipe)

    return run, make_merge_check(sizes)


def mix_torchdata(n: int, weights: Sequence[float]) -> tuple[Run, Check]:
    from torchdata import nodes
    from torchdata.nodes.samplers.stop_criteria import StopCriteria

    sizes = mix_sizes(n, weights)
    inputs = mix_inputs(sizes)
    names = [f"input{i}" for i in range(len(inputs))]

    def run() -> list[int]:
        root = nodes.MultiNodeWeightedSampler(
            {name: nodes.IterableWrapper(r) for name, r in zip(names, inputs, strict=True)},
            {name: float(weight) for name, weight in zip(names, weights, strict=True)},
            stop_criteria=StopCriteria.ALL_DATASETS_EXHAUSTED,
            rank=0,
            world_size=1,
            seed=0,
        )
        return list(nodes.Loader(root))

    return run, make_merge_check(sizes)


# -- take: how soon the workers stop -----------------------------------------------------


def _helper_pids() -> set[int]:
    """Processes of multiprocessing's own that outlive every pipeline: the forkserver
    and the resource tracker."""
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker

    pids = {
        getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None),
        getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None),
    }
    return {pid for pid in pids if pid is not None}


def _stopped(process: Any) -> bool:
    import psutil  # type: ignore[import-untyped]

    try:
        return bool(process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD))
    except psutil.NoSuchProcess:
        return True


def take_stop(make: Callable[[], Iterable[Any]], n: int) -> tuple[Run, list[tuple[float, float]]]:
    """A run that pulls ``n`` items and measures how soon the worker processes (the
    processes below this one, but for the forkserver and the resource tracker, noted just
    before the ``n``-th item) have all exited: in seconds from the call of ``next()`` that
    returns the ``n``-th item (an upper bound: it includes the wait for that item), and
    from its return (a stage may stop its workers before it returns the item). It then
    checks that the stream has ended. The figures of every run go into the list."""
    import psutil

    me = psutil.Process()
    figures: list[tuple[float, float]] = []

    def run() -> list[Any]:
        stream = iter(make())
        items = [next(stream) for _ in range(n - 1)]
        helpers = _helper_pids()
        workers = [p for p in me.children(recursive=True) if p.pid not in helpers]
        call = time.perf_counter()
        items.append(next(stream))
        arrived = time.perf_counter()
        while not all(_stopped(p) for p in workers):
            if time.perf_counter() - arrived > STOP_DEADLINE:
                getattr(stream, "close", lambda: None)()
                raise RuntimeError(f"workers still running {STOP_DEADLINE:g} s after item {n}")
            time.sleep(0.0005)
        stopped = time.perf_counter()
        figures.append((stopped - call, stopped - arrived))
        if not workers:
            raise RuntimeError(f"no worker process was running at item {n}")
        for extra in stream:
            raise RuntimeError(f"the stream went on after item {n}: {extra!r}")
        return items

    return run, figures


def take_tinypl(n: int, workers: int) -> tuple[Run, Check, list[tuple[float, float]]]:
    pl = new_tinypl()
    # The figure is how soon workers exit: warm workers would wait for the next run.
    keep_warm = getattr(pl.process, "keep_warm", None)
    if keep_warm is not None:
        keep_warm(0)
    pipe = pl.Pipe(itertools.count()).map(w.inc).process(workers).take(n)

    def check(result: Any) -> str | None:
        # Without .order() the workers' results may come in any order.
        values = list(result)
        good = len(values) == n == len(set(values)) and all(v >= 1 for v in values)
        return None if good else f"expected {n} distinct items of count(1), got {values!r}"

    run, figures = take_stop(lambda: pipe, n)
    return run, check, figures
