"""The fluent builder: ``Pipe(source).map(f).thread(4).order()``."""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Generic, Literal, TypeVar, overload

import attrs

from . import _plan
from . import _plan_streams as streams
from ._checkpoint import start
from ._checkpoint_plan import run_plan
from ._explain import explain, short
from ._length import length
from ._marker import Marker
from ._pipe_insight import InsightMethods
from ._pipe_streams import StreamMethods
from ._planner import validate
from ._runtime import Stage
from ._runtime._collect import start_timing

__all__ = ["Pipe"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
V = TypeVar("V")

MarkerMode = Literal["after", "before"] | None
MixStop = Literal["first", "all"]
WorkerErrorMode = Literal["raise", "forward", "forward-and-print", "exit"]
StartMethod = Literal["fork", "forkserver", "spawn"]


def _to_plan(source: Any) -> _plan.Node:
    if isinstance(source, Pipe):
        return source.plan
    if isinstance(source, _plan.Node):
        return source
    return _plan.Source(source)


@attrs.frozen(repr=False, init=False)
class Pipe(StreamMethods, InsightMethods, Generic[T_co]):
    """An immutable description of a pipeline; iterating it runs the pipeline.

    ``source`` is any iterable (each iteration of the pipe starts it afresh), an iterator
    (consumed once, by whichever iteration pulls it), another ``Pipe``, a live stage, or
    a plan node (``tinypl._plan``: how the module-level functions add their stages).
    Every builder method checks its arguments at once and returns a new ``Pipe``; nothing
    runs, and no thread starts, until the pipe is iterated.

    Examples:
        >>> from tinypl import Pipe
        >>> pipe = Pipe(range(10)).map(lambda x: 3 * x + 1)
        >>> pipe = pipe.filter(lambda x: x % 2 == 0)
        >>> pipe
        Pipe(range(0, 10)).map(<lambda>).filter(<lambda>)
        >>> list(pipe.partition(2))
        [[4, 10], [16, 22], [28]]
        >>> list(pipe) == list(pipe)  # each iteration is a fresh run
        True
    """

    plan: _plan.Node = attrs.field(alias="source")

    @overload
    def __init__(self: Pipe[T], source: Pipe[T]) -> None: ...
    @overload
    def __init__(self: Pipe[T], source: Iterable[T]) -> None: ...
    @overload
    def __init__(self: Pipe[T], source: AsyncIterable[T]) -> None: ...
    @overload
    def __init__(self: Pipe[Any], source: _plan.Node) -> None: ...
    def __init__(self, source: Any) -> None:
        self.__attrs_init__(_to_plan(source))

    # -- running -------------------------------------------------------------------------

    def __iter__(self) -> Stage[T_co]:
        """A fresh run of the pipeline: a live, closeable ``Stage``."""
        return start(self.plan)

    def iter(
        self, state: Mapping[str, Any] | None = None, *, stats: bool = False
    ) -> Stage[T_co]:
        """A run of the pipeline; with ``state`` (from ``run.state_dict()``), the run
        yields exactly what the run the state was taken from would have yielded after
        it, markers included. ``ValueError`` naming the first stage that differs when
        the state comes from another pipe; ``pl.NotResumable`` naming the stage when
        this pipe's runs cannot be resumed. With ``stats=True`` the run's synchronous
        steps are timed from the start, so ``stage.stats()`` gives their ``busy_s`` in
        full.

        Examples:
            >>> pipe = Pipe([3, 1, 4, 1, 5]).map(str)
            >>> run = pipe.iter()
            >>> next(run)
            '3'
            >>> list(pipe.iter(state=run.state_dict()))
            ['1', '4', '1', '5']
            >>> run = Pipe(range(3)).map(abs).iter(stats=True)
            >>> list(run), run.stats().rows[-1].items_out
            ([0, 1, 2], 3)
        """
        run = start(self.plan, state)
        if stats:
            start_timing(run)
        return run

    def __len__(self) -> int:
        """The number of items a run yields, where it follows from the source's ``len()``
        through the stages; ``TypeError`` naming the stage that makes it unknown.
        Nothing runs.

        Examples:
            >>> len(Pipe(range(10)).map(str).shard(0, 3))
            4
            >>> len(Pipe(range(10)).filter(bool))
            Traceback (most recent call last):
            ...
            TypeError: len(): filter(bool) changes the number of items by an amount known ...
        """
        return length(self.plan)

    def __bool__(self) -> bool:
        """A pipe is always true, whatever its length."""
        return True

    @staticmethod
    def mix(
        pipes: Sequence[Iterable[T]],
        weights: Sequence[float] | None = None,
        seed: int | None = None,
        stop: MixStop = "first",
    ) -> Pipe[T]:
        """Interleave several pipes (or iterables): round-robin (``weights=None``), or each
        next item from input ``i`` with probability ``weights[i]`` (normalized).

        ``stop="first"`` ends when a draw finds its input exhausted; ``"all"`` goes on
        with the remaining inputs (their weights renormalized) until all are. Every
        marker of every input passes where it arrives. Deterministic with a ``seed``.

        Examples:
            >>> list(Pipe.mix([range(3), "ab"]))
            [0, 'a', 1, 'b', 2]
            >>> list(Pipe.mix([range(3), "ab"], stop="all"))
            [0, 'a', 1, 'b', 2]
            >>> mixed = list(Pipe.mix([["a"] * 100, ["b"] * 100], weights=[3, 1], seed=0))
            >>> mixed.count("a"), mixed.count("b")  # ends when "a" runs out
            (100, 44)
        """
        if isinstance(pipes, (str, bytes)) or not isinstance(pipes, Sequence):
            raise TypeError(
                f"mix: pipes must be a sequence of pipes, got {type(pipes).__name__}"
            )
        inputs = tuple(map(_to_plan, pipes))
        return Pipe(streams.Mix(inputs, weights, seed, stop))

    # -- per-item stages -----------------------------------------------------------------

    def _then(self, node: _plan.Node) -> Pipe[Any]:
        return Pipe(node)

    def _checked(self, node: _plan.Node) -> Pipe[Any]:
        validate(node)  # fails here, not at iteration, when the plan cannot run
        return Pipe(node)

    def map(self, fn: Callable[[T_co], U]) -> Pipe[U]:
        """Apply ``fn`` to every item.

        Examples:
            >>> list(Pipe(range(4)).map(lambda x: x * x))
            [0, 1, 4, 9]
        """
        return self._then(_plan.Map(self.plan, fn))

    def filter(self, pred: Callable[[T_co], object]) -> Pipe[T_co]:
        """Keep the items for which ``pred`` is true.

        Examples:
            >>> list(Pipe(range(6)).filter(lambda x: x % 2))
            [1, 3, 5]
        """
        return self._then(_plan.Filter(self.plan, pred))

    def each(self, fn: Callable[[T_co], object]) -> Pipe[T_co]:
        """Call ``fn`` on every item and pass the item on unchanged.

        Examples:
            >>> seen = []
            >>> list(Pipe("ab").each(seen.append)), seen
            (['a', 'b'], ['a', 'b'])
        """
        return self._then(_plan.Each(self.plan, fn))

    def flatten(self: Pipe[Iterable[U]], *, eager: bool = False) -> Pipe[U]:
        """Yield the elements of each item (each item must be iterable), lazily.

        ``eager=True`` lists an item's elements before yielding the first of them.

        Examples:
            >>> list(Pipe([[1, 2], [], [3]]).flatten())
            [1, 2, 3]
        """
        return self._then(_plan.Flatten(self.plan, eager))

    def partition(
        self, n: int, markers: MarkerMode = None, split_on_marker: bool = False
    ) -> Pipe[list[T_co]]:
        """Group items into lists of ``n``; the last list may be shorter.

        A marker reaching a partition built with ``markers=None`` raises
        ``MarkerNotAllowedError``. ``markers="after"`` holds the marker until the list in
        construction is emitted; ``markers="before"`` emits it at once.
        ``split_on_marker=True`` also emits the partial list when a marker arrives.

        Examples:
            >>> list(Pipe(range(5)).partition(2))
            [[0, 1], [2, 3], [4]]
        """
        return self._then(
            _plan.Partition(self.plan, n, markers, split_on_marker)
        )

    # -- markers -------------------------------------------------------------------------

    def insert_marker(self, marker: Marker, every: int = 1, after: bool = True) -> Pipe[T_co]:
        """Emit ``marker`` after every ``every`` items (``after=False``: before each group).

        Examples:
            >>> from tinypl import Marker
            >>> m = Marker("m")
            >>> list(Pipe(range(4)).insert_marker(m, every=2).until(m))
            [0, 1]
        """
        return self._then(
            _plan.InsertMarker(self.plan, marker, every, after)
        )

    def on(
        self, marker: Marker | None, fn: Callable[[], object], consume: bool = False
    ) -> Pipe[T_co]:
        """Call ``fn()`` whenever ``marker`` passes (``None``: any marker).

        ``consume=True`` drops the marker here.

        Examples:
            >>> from tinypl import Marker
            >>> m, calls = Marker("m"), []
            >>> list(Pipe(range(3)).insert_marker(m).on(m, lambda: calls.append(1))), calls
            ([0, 1, 2], [1, 1, 1])
        """
        return self._then(_plan.On(self.plan, marker, fn, consume))

    def until(self, marker: Marker | None) -> Pipe[T_co]:
        """End the stream at the first ``marker`` (``None``: any marker), consuming it.

        Examples:
            >>> from tinypl import Marker
            >>> m = Marker("m")
            >>> list(Pipe(range(10)).insert_marker(m, every=3).until(m))
            [0, 1, 2]
        """
        return self._then(_plan.Until(self.plan, marker))

    # -- flow control --------------------------------------------------------------------

    def ratelimit(self, num: int, period: float) -> Pipe[T_co]:
        """Let at most ``num`` items pass per ``period`` seconds.

        Examples:
            >>> list(Pipe(range(3)).ratelimit(100, 1.0))
            [0, 1, 2]
        """
        return self._then(_plan.Ratelimit(self.plan, num, period))

    def trace(self, message: str | Callable[..., object]) -> Pipe[T_co]:
        """Log every pull and every item at INFO level to the ``tinypl.debug`` logger.

        ``message`` is a string, or a callable called with no argument before a pull and
        with the item after it.

        Examples:
            >>> list(Pipe([1, 2]).trace("numbers"))
            [1, 2]
        """
        return self._then(_plan.Trace(self.plan, message))

    # -- control -------------------------------------------------------------------------

    def ignore_errors(
        self, max_failures: int | float | None = None, log: bool = True
    ) -> Pipe[T_co]:
        """Drop the items whose processing raised an ``Exception`` in the per-item stages
        above, back to the previous ``ignore_errors`` (or the source), wherever they ran.

        ``max_failures`` is ``None`` (no limit), an int (at most this many) or a float in
        (0, 1) (at most this share of the items seen, checked at each failure once 100
        items have been seen); past it the run raises ``pl.TooManyErrors``. ``log=True``
        logs each dropped item at WARNING on the ``tinypl`` logger. Errors of the source
        and of stateful stages (partition ...) still raise, as do exceptions that are not
        ``Exception``s (``KeyboardInterrupt``).

        Examples:
            >>> pipe = Pipe(["1", "x", "3"]).map(int).ignore_errors(log=False)
            >>> list(pipe)
            [1, 3]
        """
        return self._then(_plan.IgnoreErrors(self.plan, max_failures, log))

    # -- concurrency ---------------------------------------------------------------------

    def mutex(self) -> Pipe[T_co]:
        """Let only one thread at a time pull through the stages above.

        Thread stages already guard whatever needs it; this makes it explicit.

        Examples:
            >>> list(Pipe(iter(range(3))).mutex().map(str).thread(2).order())
            ['0', '1', '2']
        """
        return self._then(_plan.Mutex(self.plan))

    def thread(
        self,
        workers: int,
        maxsize: int | None = None,
        on_worker_error: WorkerErrorMode = "raise",
        *,
        timeout: float | None = None,
        init: Callable[[], object] | None = None,
    ) -> Pipe[T_co]:
        """Run the stages above, back to the previous thread stage, in ``workers`` threads.

        Items go through a queue of ``maxsize`` (default ``2 * workers``, which may grow up
        to ``16 * workers`` while the reader keeps up), not necessarily in order; add
        ``.order()`` to restore it. A stage that is unsafe to enter from several threads
        (a generator source, flatten, partition, ...) is guarded with a lock
        automatically. A worker's exception is raised at the consumer's next pull;
        ``on_worker_error="forward"`` raises ``WorkerError`` from it instead, and
        ``"forward-and-print"`` (or ``"exit"``) also logs it.

        ``init()`` runs once in each worker thread before it takes an item; its error is
        raised at the first pull. ``pl.worker_info()`` tells a stage function which worker
        runs it. An item that takes more than ``timeout`` seconds raises ``TimeoutError``
        at the consumer; its thread cannot be killed and is abandoned (see "Errors and
        faults" in the docs).

        Examples:
            >>> import time
            >>> pipe = Pipe(range(8)).map(lambda x: time.sleep(0.01) or x).thread(4)
            >>> sorted(pipe)
            [0, 1, 2, 3, 4, 5, 6, 7]
        """
        return self._then(
            _plan.Thread(
                self.plan, workers, maxsize, on_worker_error, timeout=timeout, init=init
            )
        )

    def process(
        self,
        workers: int,
        maxsize: int | None = None,
        *,
        start_method: StartMethod | None = None,
        limit_threads: bool = True,
        on_worker_error: WorkerErrorMode = "raise",
        chunksize: int | None = None,
        timeout: float | None = None,
        init: Callable[[], object] | None = None,
        seed: int | None = None,
        restart: bool = False,
    ) -> Pipe[T_co]:
        """Run the map/filter/each/flatten stages directly above in ``workers`` processes.

        The source and every other stage stay in this process, where a feeder thread pulls
        them and sends items, in chunks whose size adapts to the cost per item, to the
        workers. The stage functions are shipped once per worker with cloudpickle, so
        lambdas and closures work under every start method. At most ``maxsize`` chunks
        (default ``2 * workers``) are in flight. ``start_method`` defaults to
        ``"forkserver"`` (safe with threads, and cheaper than ``"spawn"``).
        ``limit_threads`` limits BLAS/OpenMP pools in the workers to one thread.
        Markers never enter a worker. Items come out in completion order; add
        ``.order()`` to restore it. Large numpy arrays in results travel through shared
        memory. ``chunksize`` fixes the number of items per chunk (default: adaptive, so
        that a chunk keeps a worker busy for a few milliseconds).

        ``init()`` runs once in each worker process before it takes an item; its error
        is raised at the first pull. Worker ``i`` seeds ``random`` and numpy's global
        generator with ``seed + i`` (``seed`` defaults to a base seed drawn per run) and
        sees itself in ``pl.worker_info()``. An item that takes more than ``timeout``
        seconds raises ``TimeoutError``; its worker is killed and replaced, and the other
        items it held are sent again. ``restart=True`` also replaces a worker the OS
        killed, re-sending what it held once.

        Examples:
            >>> sorted(Pipe(range(6)).map(abs).process(2))
            [0, 1, 2, 3, 4, 5]
        """
        return self._checked(
            _plan.Process(
                self.plan,
                workers,
                maxsize,
                start_method=start_method,
                limit_threads=limit_threads,
                on_worker_error=on_worker_error,
                chunksize=chunksize,
                timeout=timeout,
                init=init,
                seed=seed,
                restart=restart,
            )
        )

    def executor(
        self, executor: Any, maxsize: int | None = None, chunksize: int | None = None
    ) -> Pipe[T_co]:
        """Run the map/filter/each/flatten stages directly above on ``executor``.

        ``executor`` is any ``concurrent.futures.Executor`` (``ProcessPoolExecutor``,
        loky's, ``mpi4py.futures.MPIPoolExecutor``, Dask's ``client.get_executor()``)
        or a ``distributed.Client``. As with ``process()``, the source and every other
        stage stay here, where a feeder thread pulls them and submits chunks of items
        (their size adapts to the cost per item unless ``chunksize`` fixes it), at most
        ``maxsize`` chunks in flight (default: twice the executor's workers where they
        can be known, else 8). The stage functions are cloudpickled once per run and
        compiled once per worker process; their bytes go with every chunk, or, past
        64 KiB, once to each worker that asks for them. Markers never leave this process.
        Items come out in completion order; add ``.order()`` to restore it. The
        executor belongs to the caller: closing the run cancels its pending chunks but
        never shuts the executor down. A failure of the executor itself (a broken pool,
        a killed worker) raises ``WorkerError``.

        Examples:
            >>> from concurrent.futures import ThreadPoolExecutor
            >>> with ThreadPoolExecutor(2) as pool:
            ...     print(list(Pipe(range(6)).map(abs).executor(pool).order()))
            [0, 1, 2, 3, 4, 5]
        """
        return self._checked(_plan.Executor(self.plan, executor, maxsize, chunksize))

    def order(self, maxsize: int | None = None) -> Pipe[T_co]:
        """Restore the order items had before the earliest concurrent stage since the
        previous ``order()`` (or the source). Without a concurrent stage it does nothing.

        At most ``maxsize`` items (default: what the concurrent stages can hold) are
        between the two ends; when the next item is slow the others wait (backpressure).
        Markers keep their exact positions.

        Examples:
            >>> import random, time
            >>> slow = lambda x: time.sleep(random.uniform(0, 0.005)) or x
            >>> list(Pipe(range(10)).map(slow).thread(4).order())
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        """
        return self._checked(_plan.Order(self.plan, maxsize))

    # -- stream operations ---------------------------------------------------------------

    @overload
    def zip(self, other: Iterable[U], /) -> Pipe[tuple[T_co, U]]: ...
    @overload
    def zip(self, other: Iterable[U], other2: Iterable[V], /) -> Pipe[tuple[T_co, U, V]]: ...
    @overload
    def zip(self, *others: Iterable[Any]) -> Pipe[tuple[Any, ...]]: ...
    def zip(self, *others: Iterable[Any]) -> Pipe[tuple[Any, ...]]:
        """Tuples of one item of this pipe and of each of ``others`` (pipes or iterables),
        ending with the shortest input. A marker of any input passes where it arrives.

        Examples:
            >>> from tinypl import Pipe
            >>> list(Pipe(range(3)).zip("abcd"))
            [(0, 'a'), (1, 'b'), (2, 'c')]
        """
        return self._then(streams.Zip(self.plan, tuple(map(_to_plan, others))))

    def concat(self, *others: Iterable[U]) -> Pipe[T_co | U]:
        """All items of this pipe, then those of each of ``others`` (pipes or iterables).

        Examples:
            >>> from tinypl import Pipe
            >>> list(Pipe(range(2)).concat([5], Pipe("ab")))
            [0, 1, 5, 'a', 'b']
        """
        return self._then(streams.Concat(self.plan, tuple(map(_to_plan, others))))

    # -- asyncio (issue 16) --------------------------------------------------------------

    @overload
    def asyncio(
        self: Pipe[Awaitable[U]],
        concurrency: int,
        maxsize: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Pipe[U]: ...
    @overload
    def asyncio(
        self: Pipe[U], concurrency: int, maxsize: int | None = None, *, timeout: float | None = None
    ) -> Pipe[U]: ...
    def asyncio(
        self, concurrency: int, maxsize: int | None = None, *, timeout: float | None = None
    ) -> Pipe[Any]:
        """Run the per-item stages above, back to the previous concurrent stage, on one
        event loop in a background thread, with up to ``concurrency`` items in flight.

        Stage functions may be ``async def`` (awaited) or plain (called inline on the
        loop thread, for cheap steps). Items come out in completion order (``.order()``
        restores it); a marker comes out after every item pulled before it and before
        every item pulled after it. At most ``maxsize`` items (default
        ``2 * concurrency``) wait at the output. An async source (``Pipe(async_gen())``)
        directly above is driven on the same loop. Errors reach the consumer with their
        type and traceback; ``close()`` cancels the coroutines in flight. An item still
        in the stage's ops after ``timeout`` seconds is cancelled and fails with
        ``TimeoutError`` (dropped under ``.ignore_errors()``, like any item error).

        Examples:
            >>> import asyncio
            >>> async def double(x):
            ...     await asyncio.sleep(0.001)
            ...     return 2 * x
            >>> list(Pipe(range(5)).map(double).asyncio(3).order())
            [0, 2, 4, 6, 8]
        """
        return self._then(_plan.Asyncio(self.plan, concurrency, maxsize, timeout=timeout))

    def __aiter__(self) -> AsyncIterator[T_co]:
        """A fresh run consumed with ``async for``: the pipeline runs in background
        threads and the consuming task awaits each item, so the event loop is never
        blocked. ``break``, ``aclose()`` or cancelling the task closes the run.

        Examples:
            >>> import asyncio
            >>> async def main():
            ...     return [x async for x in Pipe(range(3)).map(str)]
            >>> asyncio.run(main())
            ['0', '1', '2']
        """
        from ._runtime._aiter import AsyncRun

        return AsyncRun(self.plan)

    # -- rendering -----------------------------------------------------------------------

    def explain(self, optimized: bool = True) -> str:
        """The plan, one stage per line, source first.

        ``optimized=True`` shows what iteration builds: fused per-item steps, the locks
        that guard unsafe stages and the numbering behind ``order()``.

        Examples:
            >>> print(Pipe(range(3)).map(str).explain(optimized=False))
            logical plan (as written)
              0  Pipe(range(0, 3))
              1  map(str)
        """
        physical = run_plan(self.plan)[0] if optimized else None
        return explain(self.plan, optimized=optimized, physical=physical)

    def __repr__(self) -> str:
        return short(self.plan)
