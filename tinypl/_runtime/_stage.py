"""Runtime iterator objects.

Every live stage is a ``Stage``: a closeable iterator whose ``__next__`` is a C-level
builtin (``map``, ``filter``, ``chain`` or ``filterfalse``), so pulling an item costs no
Python frame for the stage itself. Besides its public, marker-free view each stage exposes
``raw``: the iterator of everything that flows out of it, markers (and, inside an ordered
region, sequence-numbered records) included. Downstream stages pull ``raw``.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from .._marker import is_marker

if TYPE_CHECKING:
    from types import TracebackType

    from .._plan import Node
    from .._stats import Stats
    from ._order import Tagger

__all__ = [
    "ChainStage",
    "Core",
    "EXHAUSTIBLE",
    "Parts",
    "SourceStage",
    "Stage",
    "ViewStage",
    "WorkerStage",
    "node_of",
]

T_co = TypeVar("T_co", covariant=True)


class Insight(Protocol):
    """What ``stats()`` and ``explain()`` delegate to (``_runtime._collect``)."""

    def collect(self, stage: Stage[Any]) -> Stats: ...

    def explain_live(self, stage: Stage[Any]) -> str: ...


#: Set by ``_runtime._collect`` when it is imported (it imports this module, so this
#: module cannot import it); the runtime package imports it.
insight: Insight = cast(Insight, None)


class Core(Protocol):
    """The resources a stage owns (threads, queues, windows)."""

    def signal(self) -> None:
        """Ask to stop and wake every waiter; must not block."""

    def shutdown(self) -> None:
        """Stop, join and release; idempotent."""


class Stage(Generic[T_co]):
    """A live pipeline stage: an iterator over items that can be closed.

    Stages are what ``iter(pipe)`` and the module-level functions (``pl.map`` …) return.
    ``close()`` is idempotent and closes everything upstream; a stage is also a context
    manager. Markers are never yielded by a stage. What a user may read about a live run:
    ``closed``, ``repr(stage)`` (the stage it runs), and for thread and process stages
    ``workers``, ``maxsize`` and ``fill``.

    Examples:
        >>> import tinypl as pl
        >>> with pl.map(range(5), lambda x: x * 10) as stage:
        ...     print(next(stage), next(stage))
        0 10
    """

    _raw: Iterator[Any] | None
    _node: Node | None
    _may_mark: bool
    #: A callable: asked (once needed) whether the stage can be shared (``_can_share``).
    _thread_safe: bool | Callable[[], bool]
    _tagger: Tagger | None
    _upstream: Any
    _core: Core | None
    _closed: bool
    #: The object holding a stateful stage's state, where length hints read it.
    _step: Any = None
    #: What reads this stage's figures for ``stats()`` (``_runtime._stats``).
    _probe: Any = None
    #: What ``state_dict()`` reads: set on the stage a run of a ``Pipe`` hands out.
    _checkpoint: Any = None
    #: A view a run hands out or inserts over one of its stages, adding no stage of its
    #: own (it counts or drops elements): ``stats()`` reads through it.
    _wrapper: bool = False

    def _attach(
        self,
        *,
        raw: Iterator[Any] | None,
        node: Node | None,
        upstream: Any,
        may_mark: bool,
        thread_safe: bool | Callable[[], bool],
        tagger: Tagger | None = None,
        core: Core | None = None,
    ) -> None:
        self._raw = raw  # None: the stage is its own raw stream (no reference cycle)
        self._node = node
        self._upstream = upstream
        self._may_mark = may_mark
        self._thread_safe = thread_safe
        self._tagger = tagger
        self._core = core
        self._closed = False

    def __iter__(self) -> Stage[T_co]:
        return self

    @property
    def raw(self) -> Iterator[Any]:
        """Everything that flows out of this stage, markers included."""
        raw = self._raw
        return self if raw is None else raw

    def _can_share(self) -> bool:
        """Whether several threads may pull ``raw`` at once; a stage that can become safe
        (a fused run compiled to a generator) becomes so when asked."""
        safe = self._thread_safe
        return safe if isinstance(safe, bool) else safe()

    if TYPE_CHECKING:

        def __next__(self) -> T_co: ...

    def __length_hint__(self) -> int:
        """An estimate of the items left (``operator.length_hint``): exact for sync stages
        over a sized source, ``NotImplemented`` where the stages make it unknown."""
        from ._hint import remaining

        try:
            hint = remaining(self)
        except Exception:  # a hint must never break list(stage)
            hint = None
        return NotImplemented if hint is None else hint

    def state_dict(self) -> dict[str, Any]:
        """The run's position right after the last item received, as plain data (a
        JSON-serializable dict): ``pipe.iter(state=...)`` resumes from it. Raises
        ``pl.NotResumable`` naming the source or stage that cannot be resumed. See the
        Checkpointing page of the documentation.

        Examples:
            >>> import json
            >>> import tinypl as pl
            >>> pipe = pl.Pipe(range(6)).map(lambda x: x * 10)
            >>> run = iter(pipe)
            >>> next(run), next(run)
            (0, 10)
            >>> state = json.loads(json.dumps(run.state_dict()))
            >>> list(pipe.iter(state=state))
            [20, 30, 40, 50]
        """
        run = self._checkpoint
        if run is None:
            from .._errors import NotResumable

            raise NotResumable(
                "tinypl: this stage was not started from a Pipe: only a run of iter(pipe)"
                " or pipe.iter() has a state (the module-level functions start stages that"
                " cannot be resumed)"
            )
        state: dict[str, Any] = run.state()
        return state

    def close(self) -> None:
        """Stop this stage and everything upstream of it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.closed()  # the end of the run's elapsed time
        # Wake every blocked worker up the chain before joining any of them, so a worker
        # blocked on an upstream queue is not waited for while nobody feeds that queue.
        self._signal_stop()
        if self._core is not None:
            self._core.shutdown()
        self._stop_own()
        upstream = self._upstream
        if isinstance(upstream, Stage):
            upstream.close()
        elif upstream is not None:
            try:
                upstream()  # the source's stop function
            except ValueError as error:  # "generator already executing" in a stuck thread
                warnings.warn(
                    f"tinypl: could not close the source: {error}",
                    ResourceWarning,
                    stacklevel=2,
                )

    def stats(self) -> Stats:
        """A snapshot of the figures of this run, from its source up to this stage: one
        row per stage (per step of a fused run), totals and the bottleneck. It may be
        taken at any time, from any thread, during or after the run.

        Counts are exact from the start. ``busy_s`` of synchronous steps counts from the
        first ``stats()`` call made in the thread that built the run (from the start with
        ``.progress()``, ``.report()`` or ``pipe.iter(stats=True)``); thread and process
        stages always time their workers.

        Examples:
            >>> import tinypl as pl
            >>> run = iter(pl.Pipe(range(10)).map(abs).filter(lambda x: x % 2))
            >>> _ = list(run)
            >>> stats = run.stats()
            >>> [(row.name, row.items_in, row.items_out) for row in stats.rows]
            [('source', 10, 10), ('map(abs)', 10, 10), ('filter(<lambda>)', 10, 5)]
        """
        return insight.collect(self)

    def explain(self) -> str:
        """The physical plan of this run with each stage's live figures beside it.

        Examples:
            >>> import tinypl as pl
            >>> run = iter(pl.Pipe(range(3)).map(abs))
            >>> _ = list(run)
            >>> print(run.explain())  # doctest: +ELLIPSIS
            live run (3 items in ... s)
              0  source
                   source: in 3, out 3, busy ... s
              1  fused(map(abs))
                   map(abs): in 3, out 3, busy ... s
            bottleneck: ...
        """
        return insight.explain_live(self)

    def _stop_own(self) -> None:
        """Make this stage's own iterator yield nothing more (see ChainStage)."""

    def _signal_stop(self) -> None:
        if self._core is not None:
            self._core.signal()
        if isinstance(self._upstream, Stage):
            self._upstream._signal_stop()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._closed

    def __enter__(self) -> Stage[T_co]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        from .._explain import describe

        where = "closed" if self._closed else "live"
        what = "source" if self._node is None else describe(self._node)
        return f"<tinypl.Stage {what} ({where})>"


# The concrete classes inherit __next__ from a builtin, so iteration runs at C speed.


# Iterators of builtin sequences whose ``__setstate__`` moves them to their end.
_SEQUENCES: tuple[Any, ...] = (range(0), [], (), "", b"", bytearray())
EXHAUSTIBLE = frozenset(type(iter(x)) for x in _SEQUENCES)


class Parts:
    """The iterators an ``itertools.chain`` goes through, remembering the one in progress
    so that ``stop()`` can end it: ``chain`` itself offers no way to drop it."""

    __slots__ = ("_current", "_iterables", "_stopped")

    def __init__(self, iterables: Iterator[Any]) -> None:
        self._iterables = iterables
        self._current: Iterator[Any] | None = None
        self._stopped = False

    def __iter__(self) -> Parts:
        return self

    def __next__(self) -> Iterator[Any]:
        if self._stopped:
            raise StopIteration
        current: Iterator[Any] = iter(next(self._iterables))
        self._current = current
        return current

    def stop(self) -> None:
        """Hand out no more parts, and end the one in progress where that is possible
        (generators and iterators of builtin sequences)."""
        self._stopped = True
        current, self._current = self._current, None
        if current is None:
            return
        if type(current) in EXHAUSTIBLE:
            current.__setstate__(sys.maxsize)  # type: ignore[attr-defined]
            return
        close = getattr(current, "close", None)
        if close is not None:
            # ValueError: running in another thread, which the upstream's end stops.
            with contextlib.suppress(ValueError):
                close()


class ChainStage(itertools.chain, Stage[T_co]):  # type: ignore[type-arg]
    """A stage whose items come from ``itertools.chain`` over ``Parts`` (no markers can
    occur); ``close()`` also drops the rest of the part in progress."""

    _parts: Parts

    @classmethod
    def over(cls, parts: Parts) -> ChainStage[Any]:
        stage: ChainStage[Any] = cls.from_iterable(parts)  # type: ignore[assignment]
        stage._parts = parts
        return stage

    def _stop_own(self) -> None:
        self._parts.stop()


class SourceStage(itertools.islice, Stage[T_co]):  # type: ignore[type-arg]
    """The source of a pipeline: passes its iterator through unchanged."""


class ViewStage(itertools.filterfalse, Stage[T_co]):  # type: ignore[type-arg]
    """The public view of a raw stream: markers removed, ordered records unpacked."""


V = TypeVar("V", bound=ViewStage[Any])


class WorkerStage(ViewStage[T_co]):
    """A live stage served by workers (threads or processes).

    ``workers``, ``maxsize`` and ``fill`` (how full it is, from 0.0 to 1.0) describe it.
    """

    _pool: Any  # the stage's core: has ``workers``, ``maxsize`` and ``fill()``

    @property
    def workers(self) -> int:
        """The number of workers."""
        return int(self._pool.workers)

    @property
    def maxsize(self) -> int:
        """The bound of what may be in flight now (items for threads, chunks for processes;
        a thread stage's default bound grows while its reader keeps up)."""
        return int(self._pool.maxsize)

    @property
    def fill(self) -> float:
        """How full the stage's queue is, from 0.0 to 1.0."""
        return float(self._pool.fill())


W = TypeVar("W", bound=WorkerStage[Any])


def worker_stage(
    cls: type[W], raw: Iterator[Any], node: Node, upstream: Stage[Any], core: Any
) -> W:
    """A live thread or process stage over ``raw``, owning ``core``.

    Garbage collection of the stage stops its own workers; only ``close()`` goes upstream,
    since an upstream stage may be shared with other stages (module-level API).
    """
    stage = guarded_view(raw, node, upstream, core, cls)
    stage._pool = core
    weakref.finalize(stage, core.shutdown)
    return stage


def guarded_view(
    raw: Iterator[Any], node: Node, upstream: Stage[Any], core: Any, cls: type[V] | None = None
) -> V:
    """A stage over ``raw`` that several threads may pull (``core`` makes it safe),
    carrying the markers and the order numbering of ``upstream``."""
    stage: V = make_view(raw, upstream._tagger, cls)
    stage._attach(
        raw=raw,
        node=node,
        upstream=upstream,
        may_mark=upstream._may_mark,
        thread_safe=True,
        tagger=upstream._tagger,
        core=core,
    )
    return stage


def signal_stop(stage: Stage[Any]) -> None:
    """Wake everything blocked in ``stage`` and upstream of it, without joining anything:
    a failure is on its way and no more items are wanted from there."""
    stage._signal_stop()


def node_of(stage: Stage[Any]) -> Node | None:
    """The plan node a live stage runs (``None`` for a source)."""
    while stage._wrapper and isinstance(stage._upstream, Stage):
        stage = stage._upstream  # a view counting or dropping the items of the stage below
    return stage._node


def make_view(raw: Iterator[Any], tagger: Tagger | None, cls: type[V] | None = None) -> V:
    """The public iterator over ``raw``: markers dropped and, when ``raw`` carries
    sequence-numbered records of an ordered region, the records unpacked."""
    kind: Any = ViewStage if cls is None else cls
    if tagger is not None:
        inner: Iterator[Any] = itertools.chain.from_iterable(map(tagger.divert, raw))
        return kind(is_marker, inner)  # type: ignore[no-any-return]
    return kind(is_marker, raw)  # type: ignore[no-any-return]


def share_through(
    stage: Stage[Any], upstream: Stage[Any], rebuild: Callable[[Iterator[Any]], Iterator[Any]]
) -> None:
    """Let ``stage``, whose raw stream ``rebuild`` made over ``upstream.raw`` and which adds
    nothing unsafe to share, be shared whenever ``upstream`` can be.

    Asking ``upstream`` may swap its raw stream (a fused run hands its step iterator to
    threads instead of its ``itertools.chain``, see ``_sync._share_run``); ``stage`` then
    rebuilds its own over the new one, or the threads pulling it would still advance the
    chain together (items lost without an error on a free-threaded build). Nothing has
    been pulled through either yet: a run that has started is not shared."""
    ref = weakref.ref(stage)  # held weakly: no reference cycle delays its collection

    def can_share() -> bool:
        before = upstream.raw
        if not upstream._can_share():
            return False
        after = upstream.raw
        if after is not before:
            owner = ref()
            if owner is None:
                return False
            owner._raw = rebuild(after)
        return True

    stage._thread_safe = can_share
