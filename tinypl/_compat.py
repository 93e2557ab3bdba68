"""The module-level API of tinypl 0.1.0 (``pl.map(pipe, f)`` …), derived from ``Pipe``.

Each function is the fluent method of the same stage applied to ``Pipe(pipe)`` and
materialized at once: an iterable gets a fresh iterator, while an iterator or a live stage
is shared, so stages built on the same upstream pull from the same state. No stage logic
lives here. ``COUNTERPARTS`` names the fluent method behind every function; a test checks
that the two namespaces match.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import _plan as plan
from ._compat_engines import COUNTERPARTS as ENGINE_COUNTERPARTS
from ._compat_insight import COUNTERPARTS as INSIGHT_COUNTERPARTS
from ._compat_streams import COUNTERPARTS as STREAM_COUNTERPARTS
from ._marker import Marker
from ._pipe import MarkerMode, Pipe, StartMethod, WorkerErrorMode
from ._runtime import Stage, ThreadWorkerError
from ._runtime._stage import node_of
from ._validate import check_bool, check_int

__all__ = [
    "COUNTERPARTS",
    "HELPERS",
    "UTILITIES",
    "PROCESS_ALIASES",
    "debug_print_on_item",
    "each_",
    "filter_",
    "flatten_",
    "flatten_eager_",
    "map_",
    "marker_insert_periodic",
    "marker_on",
    "marker_until",
    "order_load",
    "order_save",
    "partition_",
    "ignore_errors_",
    "process_each",
    "process_map",
    "process_options",
    "ratelimit_",
    "thread_each",
    "thread_map",
    "thread_mutex",
    "thread_queue",
    "unpack",
]

T = TypeVar("T")
U = TypeVar("U")

#: The public name of each module-level function and the ``Pipe`` method it is built on.
COUNTERPARTS: dict[str, str] = {
    "map": "map",
    "filter": "filter",
    "each": "each",
    "flatten": "flatten",
    "flatten_lazy": "flatten",
    "flatten_eager": "flatten",
    "partition": "partition",
    "ratelimit": "ratelimit",
    "marker.insert_periodic": "insert_marker",
    "marker.on": "on",
    "marker.until": "until",
    "thread.queue": "thread",
    "thread.map": "thread",
    "thread.each": "thread",
    "thread.mutex": "mutex",
    "order.save": "order",
    "order.load": "order",
    "debug.print_on_item": "trace",
    "process.map": "process",
    "process.each": "process",
    **STREAM_COUNTERPARTS,
    **ENGINE_COUNTERPARTS,
    **INSIGHT_COUNTERPARTS,
    "ignore_errors": "ignore_errors",
}

#: Names shared by both forms that are not stages.
HELPERS = (
    "Pipe",
    "Marker",
    "Stage",
    "WorkerError",
    "WorkerDied",
    "MarkerNotAllowedError",
    "unpack",
    "WorkerInfo",
    "TooManyErrors",
    "Stats",
    "StageStats",
    "Bottleneck",
)

#: Module-level functions that are tools, not stages (no ``Pipe`` counterpart).
UTILITIES = (
    "process.cleanup",
    "process.empty",
    "process.keep_warm",
    "process.shutdown",
    "worker_info",
)


def map_(pipe: Iterable[T], fn: Callable[[T], U]) -> Stage[U]:
    """Apply ``fn`` to every item.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.map(range(4), lambda x: x + 1))
        [1, 2, 3, 4]
    """
    return iter(Pipe(pipe).map(fn))


def filter_(pipe: Iterable[T], pred: Callable[[T], object]) -> Stage[T]:
    """Keep the items for which ``pred`` is true.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.filter(range(6), lambda x: x % 3 == 0))
        [0, 3]
    """
    return iter(Pipe(pipe).filter(pred))


def each_(pipe: Iterable[T], fn: Callable[[T], object]) -> Stage[T]:
    """Call ``fn`` on every item and pass it on.

    Examples:
        >>> import tinypl as pl
        >>> seen = []
        >>> list(pl.each([1, 2], seen.append)), seen
        ([1, 2], [1, 2])
    """
    return iter(Pipe(pipe).each(fn))


def flatten_(pipe: Iterable[Iterable[T]]) -> Stage[T]:
    """Yield the elements of each item, lazily (also ``pl.flatten_lazy``).

    Examples:
        >>> import tinypl as pl
        >>> list(pl.flatten([[1], [2, 3]]))
        [1, 2, 3]
    """
    return iter(Pipe(pipe).flatten())


def flatten_eager_(pipe: Iterable[Iterable[T]]) -> Stage[T]:
    """Yield the elements of each item, listing an item's elements first.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.flatten_eager([(1, 2), (3,)]))
        [1, 2, 3]
    """
    return iter(Pipe(pipe).flatten(eager=True))


def partition_(
    pipe: Iterable[T], n: int, markers: MarkerMode = None, split_on_marker: bool = False
) -> Stage[list[T]]:
    """Group items into lists of ``n`` (see ``Pipe.partition``).

    Examples:
        >>> import tinypl as pl
        >>> list(pl.partition(range(5), 2))
        [[0, 1], [2, 3], [4]]
    """
    return iter(Pipe(pipe).partition(n, markers, split_on_marker))


def ratelimit_(pipe: Iterable[T], num: int, period: float) -> Stage[T]:
    """Let at most ``num`` items pass per ``period`` seconds.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.ratelimit(range(3), num=10, period=1.0))
        [0, 1, 2]
    """
    return iter(Pipe(pipe).ratelimit(num, period))


def unpack(fn: Callable[..., U]) -> Callable[[Iterable[Any]], U]:
    """Wrap ``fn(*args)`` to take one tuple of arguments; generator functions stay
    generator functions.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.map([(1, 2), (3, 4)], pl.unpack(lambda a, b: a + b)))
        [3, 7]
    """
    import inspect  # here, not at the top: it is slow to import

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generate(args: Iterable[Any]) -> Any:
            yield from fn(*args)

        return generate

    @functools.wraps(fn)
    def call(args: Iterable[Any]) -> U:
        return fn(*args)

    return call


# -- pl.marker ---------------------------------------------------------------------------


def marker_insert_periodic(
    pipe: Iterable[T], n: int = 1, after: bool = True
) -> tuple[Stage[T], Marker]:
    """Insert a new marker after (``after=False``: before) every ``n`` items.

    Returns the stage and the marker, which identifies the markers inserted here.

    Examples:
        >>> import tinypl as pl
        >>> stage, marker = pl.marker.insert_periodic(range(6), n=2)
        >>> list(pl.marker.until(stage, marker=marker))
        [0, 1]
    """
    check_int("marker.insert_periodic", "n", n)
    marker = Marker("periodic")
    return iter(Pipe(pipe).insert_marker(marker, n, after)), marker


def marker_on(
    pipe: Iterable[T],
    fn: Callable[[], object],
    marker: Marker | None = None,
    consume: bool = False,
) -> Stage[T]:
    """Call ``fn()`` whenever ``marker`` passes (``None``: any marker).

    Examples:
        >>> import tinypl as pl
        >>> calls = []
        >>> stage, marker = pl.marker.insert_periodic([1, 2])
        >>> list(pl.marker.on(stage, lambda: calls.append("!"), marker=marker)), calls
        ([1, 2], ['!', '!'])
    """
    return iter(Pipe(pipe).on(marker, fn, consume))


def marker_until(pipe: Iterable[T], marker: Marker | None = None) -> Stage[T]:
    """Stop at the first ``marker`` (``None``: any marker), consuming it.

    Examples:
        >>> import tinypl as pl
        >>> stage, marker = pl.marker.insert_periodic(range(4), n=3)
        >>> list(pl.marker.until(stage, marker)), list(pl.marker.until(stage, marker))
        ([0, 1, 2], [3])
    """
    return iter(Pipe(pipe).until(marker))


# -- control (issue 13) ------------------------------------------------------------------


def ignore_errors_(
    pipe: Iterable[T], max_failures: int | float | None = None, log: bool = True
) -> Stage[T]:
    """Drop the items whose processing raised in the per-item stages of ``pipe``, with a
    failure budget (see ``Pipe.ignore_errors``).

    The scope is what ``pipe`` describes: the stages of a ``Pipe``. A live stage made by
    an earlier module-level function (``pl.map(...)``) already runs in its own form, so
    its errors still raise: build the scope as a ``Pipe``.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.ignore_errors(pl.Pipe(["1", "x", "3"]).map(int), log=False))
        [1, 3]
    """
    return iter(Pipe(pipe).ignore_errors(max_failures, log))


# -- pl.thread ---------------------------------------------------------------------------


def thread_queue(
    pipe: Iterable[T],
    workers: int,
    maxsize: int | None = None,
    on_worker_error: WorkerErrorMode = "raise",
    *,
    timeout: float | None = None,
    init: Callable[[], object] | None = None,
) -> Stage[T]:
    """Prefetch items into a queue of ``maxsize`` using ``workers`` threads, each pulling
    through the stages before it (see ``Pipe.thread``). Items may change order.

    Examples:
        >>> import tinypl as pl
        >>> doubled = pl.map(range(10), lambda x: 2 * x)
        >>> stage = pl.thread.queue(doubled, workers=4, maxsize=8)
        >>> sorted(stage)
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    """
    pipe_ = Pipe(pipe)
    return iter(pipe_.thread(workers, maxsize, on_worker_error, timeout=timeout, init=init))


thread_queue.WorkerException = ThreadWorkerError  # type: ignore[attr-defined]


def thread_map(
    pipe: Iterable[T],
    fn: Callable[[T], U],
    workers: int,
    maxsize: int | None = None,
    on_worker_error: WorkerErrorMode = "raise",
    *,
    timeout: float | None = None,
    init: Callable[[], object] | None = None,
) -> Stage[U]:
    """``pl.map`` followed by ``pl.thread.queue``: ``fn`` runs in ``workers`` threads.

    Examples:
        >>> import tinypl as pl
        >>> sorted(pl.thread.map(range(5), lambda x: x * x, workers=2))
        [0, 1, 4, 9, 16]
    """
    pipe_ = Pipe(pipe).map(fn)
    return iter(pipe_.thread(workers, maxsize, on_worker_error, timeout=timeout, init=init))


def thread_each(
    pipe: Iterable[T],
    fn: Callable[[T], object],
    workers: int,
    maxsize: int | None = None,
    on_worker_error: WorkerErrorMode = "raise",
    *,
    timeout: float | None = None,
    init: Callable[[], object] | None = None,
) -> Stage[T]:
    """``pl.each`` followed by ``pl.thread.queue``.

    Examples:
        >>> import tinypl as pl
        >>> sorted(pl.thread.each(range(3), print, workers=1))
        0
        1
        2
        [0, 1, 2]
    """
    pipe_ = Pipe(pipe).each(fn)
    return iter(pipe_.thread(workers, maxsize, on_worker_error, timeout=timeout, init=init))


def thread_mutex(pipe: Iterable[T]) -> Stage[T]:
    """Let only one thread at a time pull through the stages before this one.

    Examples:
        >>> import tinypl as pl
        >>> def numbers():
        ...     yield from range(4)
        >>> sorted(pl.thread.map(pl.thread.mutex(numbers()), str, workers=3))
        ['0', '1', '2', '3']
    """
    return iter(Pipe(pipe).mutex())


# -- pl.order ----------------------------------------------------------------------------


def order_save(pipe: Iterable[T], maxsize: int) -> Stage[T]:
    """Number items so that ``pl.order.load`` can restore their order; at most
    ``maxsize`` items pass before the load hands the oldest out. Pulls through it are
    mutually exclusive, as with ``pl.thread.mutex``.

    Examples:
        >>> import tinypl as pl
        >>> pipe = order = pl.order.save(range(6), maxsize=4)
        >>> pipe = pl.thread.map(pipe, lambda x: x * 10, workers=3)
        >>> list(pl.order.load(pipe, order))
        [0, 10, 20, 30, 40, 50]
    """
    check_int("order.save", "maxsize", maxsize)
    return iter(Pipe(plan.Save(Pipe(pipe).plan, maxsize, token=plan.OrderToken())))


def order_load(pipe: Iterable[T], order: Stage[Any]) -> Stage[T]:
    """Restore the order saved by the ``order`` stage (a ``pl.order.save`` stage).

    Examples:
        >>> import tinypl as pl
        >>> order = pl.order.save([3, 1, 2], maxsize=2)
        >>> list(pl.order.load(pl.thread.queue(order, workers=2), order))
        [3, 1, 2]
    """
    saved = node_of(order) if isinstance(order, Stage) else None
    if not isinstance(saved, plan.Save):
        raise TypeError(
            f"order.load: order must be the stage returned by pl.order.save, got"
            f" {type(order).__name__}"
        )
    return iter(Pipe(plan.Load(Pipe(pipe).plan, saved.token)))


# -- pl.debug ----------------------------------------------------------------------------


def debug_print_on_item(pipe: Iterable[T], msg_fn: str | Callable[..., object]) -> Stage[T]:
    """Log every pull and every item to the ``tinypl.debug`` logger (INFO).

    Examples:
        >>> import tinypl as pl
        >>> list(pl.debug.print_on_item([1], "numbers"))
        [1]
    """
    if not (isinstance(msg_fn, str) or callable(msg_fn)):
        raise TypeError(
            f"debug.print_on_item: msg_fn must be a str or a callable, got {type(msg_fn).__name__}"
        )
    return iter(Pipe(pipe).trace(msg_fn))


# -- pl.process --------------------------------------------------------------------------


#: tinypl 0.1.0's names of process options, and the ``Pipe.process`` option each sets.
PROCESS_ALIASES: dict[str, str] = {
    "multiprocessing_context": "start_method",
    "force_single_thread": "limit_threads",
}


def process_options(where: str, options: dict[str, Any]) -> dict[str, Any]:
    """The ``Pipe.process`` options for the options of ``pl.process.map``: each 0.1.0
    alias that is set (not None) replaces the option it stands for.

    Examples:
        >>> process_options("process.map", {"start_method": None, "force_single_thread": False})
        {'start_method': None, 'limit_threads': False}
    """
    resolved = {k: v for k, v in options.items() if k not in PROCESS_ALIASES}
    context = options.get("multiprocessing_context")
    if context is not None:
        if resolved.get("start_method") is not None:
            raise TypeError(f"{where}: pass start_method or multiprocessing_context, not both")
        resolved["start_method"] = _method_name(where, context)
    single = options.get("force_single_thread")
    if single is not None:
        resolved["limit_threads"] = check_bool(where, "force_single_thread", single)
    return resolved


def _method_name(where: str, context: Any) -> Any:
    if isinstance(context, str):
        return context
    get = getattr(context, "get_start_method", None)
    if get is None:
        raise TypeError(
            f"{where}: multiprocessing_context must be a multiprocessing context or a"
            f" start method name, got {type(context).__name__}"
        )
    return get()


def process_map(
    pipe: Iterable[T],
    fn: Callable[[T], U],
    workers: int = 1,
    maxsize: int | None = None,
    *,
    on_worker_error: WorkerErrorMode = "raise",
    start_method: StartMethod | None = None,
    limit_threads: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    init: Callable[[], object] | None = None,
    seed: int | None = None,
    restart: bool = False,
    multiprocessing_context: Any = None,
    force_single_thread: bool | None = None,
) -> Stage[U]:
    """``pl.map`` run by ``workers`` worker processes (see ``Pipe.process``).

    ``fn`` is shipped once per worker with cloudpickle, so lambdas and closures work.
    tinypl 0.1.0's ``multiprocessing_context`` (a context or start method name) and
    ``force_single_thread`` are accepted as aliases of ``start_method`` and
    ``limit_threads``.

    Examples:
        >>> import tinypl as pl
        >>> sorted(pl.process.map(range(5), lambda x: x * x, workers=2))
        [0, 1, 4, 9, 16]
    """
    options = dict(locals())
    del options["pipe"], options["fn"]
    return iter(Pipe(pipe).map(fn).process(**process_options("process.map", options)))


def process_each(
    pipe: Iterable[T],
    fn: Callable[[T], object],
    workers: int = 1,
    maxsize: int | None = None,
    *,
    on_worker_error: WorkerErrorMode = "raise",
    start_method: StartMethod | None = None,
    limit_threads: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    init: Callable[[], object] | None = None,
    seed: int | None = None,
    restart: bool = False,
    multiprocessing_context: Any = None,
    force_single_thread: bool | None = None,
) -> Stage[T]:
    """``pl.each`` run by worker processes: ``fn`` is called in a worker, the item
    passes on unchanged.

    Examples:
        >>> import tinypl as pl
        >>> sorted(pl.process.each(range(3), abs, workers=1))
        [0, 1, 2]
    """
    options = dict(locals())
    del options["pipe"], options["fn"]
    return iter(Pipe(pipe).each(fn).process(**process_options("process.each", options)))
