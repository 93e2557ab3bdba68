"""The fluent builder: ``Pipe(source).map(f).thread(4).order()``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Literal, TypeVar, overload

import attrs

from . import _plan
from ._explain import explain, short
from ._marker import Marker
from ._planner import validate
from ._runtime import Stage, materialize

__all__ = ["Pipe"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")

MarkerMode = Literal["after", "before"] | None
WorkerErrorMode = Literal["raise", "forward", "forward-and-print", "exit"]
StartMethod = Literal["fork", "forkserver", "spawn"]


def _to_plan(source: Any) -> _plan.Node:
    if isinstance(source, Pipe):
        return source.plan
    if isinstance(source, _plan.Node):
        return source
    return _plan.Source(source)


@attrs.frozen(repr=False, init=False)
class Pipe(Generic[T_co]):
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
    def __init__(self: Pipe[Any], source: _plan.Node) -> None: ...
    def __init__(self, source: Any) -> None:
        self.__attrs_init__(_to_plan(source))

    # -- running -------------------------------------------------------------------------

    def __iter__(self) -> Stage[T_co]:
        """A fresh run of the pipeline: a live, closeable ``Stage``."""
        return materialize(self.plan)

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

        Items go through a queue of ``maxsize`` (default ``2 * workers``), not necessarily
        in order; add ``.order()`` to restore it. A stage that is unsafe to enter from
        several threads (a generator source, flatten, partition, ...) is guarded with a
        lock automatically. A worker's exception is raised at the consumer's next pull;
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
        return explain(self.plan, optimized=optimized)

    def __repr__(self) -> str:
        return short(self.plan)
