"""Descriptions: one frozen attrs class per stage kind.

A plan is a chain of these nodes linked through ``upstream``; it is pure data. Nothing in
this module runs a user function, starts a thread or allocates a resource. Every field is
validated on construction, so a bad argument fails where the pipeline is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ._marker import Marker
from ._ops import EachOp, FilterOp, FlattenOp, MapOp, OnOp, Op
from ._validate import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_iterable,
    check_marker,
    check_number,
)

__all__ = [
    "CONCURRENT",
    "Each",
    "Executor",
    "ExecutorOptions",
    "Filter",
    "ErrorScope",
    "ErrorToken",
    "Flatten",
    "Fused",
    "IgnoreErrors",
    "InsertMarker",
    "Load",
    "Map",
    "Mutex",
    "Node",
    "On",
    "Order",
    "OrderToken",
    "Partition",
    "Process",
    "ProcessOptions",
    "Ratelimit",
    "Release",
    "RunInProcesses",
    "RunOnExecutor",
    "SHIPPABLE",
    "Save",
    "Source",
    "Thread",
    "Trace",
    "Until",
    "chain",
    "stage_name",
]

WORKER_ERROR_MODES = ("raise", "forward", "forward-and-print", "exit")
PARTITION_MARKER_MODES = (None, "after", "before")


def stage_name(node: Node) -> str:
    """The user-facing name of a node's stage, used in error messages and renderings."""
    return _NAMES.get(type(node), type(node).__name__.lower())


def _callable(attr: str) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_callable(stage_name(node), attr, value)

    return attrs.field(validator=validate)


def _int(
    attr: str, *, minimum: int = 1, optional: bool = False, default: Any = attrs.NOTHING
) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        check_int(stage_name(node), attr, value, minimum=minimum)

    return attrs.field(validator=validate, default=default)


def _number(attr: str) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_number(stage_name(node), attr, value)

    return attrs.field(validator=validate)


def _bool(attr: str, default: bool) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_bool(stage_name(node), attr, value)

    return attrs.field(validator=validate, default=default)


def _optional_callable(attr: str) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_callable(stage_name(node), attr, value)

    return attrs.field(validator=validate, default=None, kw_only=True)


def _timeout() -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_number(stage_name(node), "timeout", value)

    return attrs.field(validator=validate, default=None, kw_only=True)


def _marker(attr: str, *, optional: bool) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_marker(stage_name(node), attr, value, optional=optional)

    return attrs.field(validator=validate)


class Node:
    """Base of every description. Subclasses are frozen attrs classes."""

    __slots__ = ()
    upstream: Node | None


@attrs.frozen(slots=True, repr=False)
class Source(Node):
    """The input of a pipeline: an iterable (fresh iterator per run) or a shared iterator."""

    source: Any = attrs.field()

    @source.validator
    def _check(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_iterable("Pipe", "source", value)

    @property
    def upstream(self) -> None:  # type: ignore[override]
        return None


@attrs.frozen(slots=True, repr=False)
class Map(Node):
    upstream: Node
    fn: Callable[[Any], Any] = _callable("fn")

    @property
    def op(self) -> MapOp:
        return MapOp(self.fn)


@attrs.frozen(slots=True, repr=False)
class Filter(Node):
    upstream: Node
    pred: Callable[[Any], Any] = _callable("pred")

    @property
    def op(self) -> FilterOp:
        return FilterOp(self.pred)


@attrs.frozen(slots=True, repr=False)
class Each(Node):
    upstream: Node
    fn: Callable[[Any], Any] = _callable("fn")

    @property
    def op(self) -> EachOp:
        return EachOp(self.fn)


@attrs.frozen(slots=True, repr=False)
class Flatten(Node):
    upstream: Node
    eager: bool = _bool("eager", False)

    @property
    def op(self) -> FlattenOp:
        return FlattenOp(self.eager)


@attrs.frozen(slots=True, repr=False)
class Partition(Node):
    upstream: Node
    size: int = _int("n")
    markers: str | None = attrs.field(default=None)
    split_on_marker: bool = _bool("split_on_marker", False)

    @markers.validator
    def _check_markers(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice("partition", "markers", value, PARTITION_MARKER_MODES)


@attrs.frozen(slots=True, repr=False)
class InsertMarker(Node):
    upstream: Node
    marker: Marker = _marker("marker", optional=False)
    every: int = _int("every", default=1)
    after: bool = _bool("after", True)


@attrs.frozen(slots=True, repr=False)
class On(Node):
    upstream: Node
    marker: Marker | None = _marker("marker", optional=True)
    fn: Callable[[], Any] = _callable("fn")
    consume: bool = _bool("consume", False)

    @property
    def op(self) -> OnOp:
        return OnOp(self.marker, self.fn, self.consume)


@attrs.frozen(slots=True, repr=False)
class Until(Node):
    upstream: Node
    marker: Marker | None = _marker("marker", optional=True)


@attrs.frozen(slots=True, repr=False)
class Ratelimit(Node):
    upstream: Node
    num: int = _int("num")
    period: float = _number("period")


@attrs.frozen(slots=True, repr=False)
class Trace(Node):
    """Logs every pull and every item (the ``pl.debug.print_on_item`` stage)."""

    upstream: Node
    message: Any = attrs.field()

    @message.validator
    def _check_message(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not (isinstance(value, str) or callable(value)):
            raise TypeError(
                f"trace: message must be a str or a callable, got {type(value).__name__}"
            )


@attrs.frozen(slots=True, repr=False)
class Mutex(Node):
    """Serializes pulls from everything upstream. ``auto``: inserted by the planner, and
    only locks when the upstream is not already safe to pull from several threads."""

    upstream: Node
    auto: bool = _bool("auto", False)


@attrs.frozen(slots=True, repr=False)
class Thread(Node):
    upstream: Node
    workers: int = _int("workers")
    maxsize: int | None = _int("maxsize", optional=True, default=None)
    on_worker_error: str = attrs.field(default="raise")

    @on_worker_error.validator
    def _check_mode(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice("thread", "on_worker_error", value, WORKER_ERROR_MODES)

    # Control (issue 13): seconds an item may take; a function each worker runs first.
    timeout: float | None = _timeout()
    init: Callable[[], Any] | None = _optional_callable("init")

    @property
    def queue_size(self) -> int:
        return 2 * self.workers if self.maxsize is None else self.maxsize


START_METHODS = ("fork", "forkserver", "spawn")


@attrs.frozen(slots=True, repr=False)
class ProcessOptions(Node):
    """The options of a process stage, shared by its logical and physical nodes."""

    upstream: Node
    workers: int = _int("workers")
    maxsize: int | None = _int("maxsize", optional=True, default=None)
    start_method: str | None = attrs.field(default=None)
    limit_threads: bool = _bool("limit_threads", True)
    on_worker_error: str = attrs.field(default="raise")
    chunksize: int | None = _int("chunksize", optional=True, default=None)

    @start_method.validator
    def _check_start(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_choice("process", "start_method", value, START_METHODS)

    @on_worker_error.validator
    def _check_mode(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice("process", "on_worker_error", value, WORKER_ERROR_MODES)

    # Control (issue 13): per-item timeout, worker init, base seed, replacing dead workers.
    timeout: float | None = _timeout()
    init: Callable[[], Any] | None = _optional_callable("init")
    seed: int | None = _int("seed", minimum=0, optional=True, default=None)
    restart: bool = _bool("restart", False)

    @property
    def queue_size(self) -> int:
        return 2 * self.workers if self.maxsize is None else self.maxsize


@attrs.frozen(slots=True, repr=False)
class Process(ProcessOptions):
    """Runs the per-item stages directly upstream in ``workers`` worker processes (the
    planner moves them into a ``RunInProcesses`` node)."""


# -- executor stages (issue 15) ------------------------------------------------------------


def is_dask_client(value: Any) -> bool:
    """Whether ``value`` is a ``distributed.Client`` (told apart without importing dask).

    Examples:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> is_dask_client(ThreadPoolExecutor(1))
        False
    """
    module = type(value).__module__ or ""
    return module.partition(".")[0] == "distributed" and callable(
        getattr(value, "get_executor", None)
    )


@attrs.frozen(slots=True, repr=False)
class ExecutorOptions(Node):
    """The options of an executor stage, shared by its logical and physical nodes.

    ``executor`` is the user's live ``concurrent.futures.Executor`` or
    ``distributed.Client``: the node references it, as a ``Source`` references its
    iterable; tinypl never creates nor shuts it down.
    """

    upstream: Node
    executor: Any = attrs.field()
    maxsize: int | None = _int("maxsize", optional=True, default=None)
    chunksize: int | None = _int("chunksize", optional=True, default=None)

    @executor.validator
    def _check_executor(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        # Duck-typed: importing concurrent.futures (and logging) here would slow down
        # ``import tinypl``.
        if is_dask_client(value) or (
            callable(getattr(value, "submit", None)) and callable(getattr(value, "shutdown", None))
        ):
            return
        raise TypeError(
            "executor: executor must be a concurrent.futures.Executor or a"
            f" distributed.Client, got {type(value).__name__}"
        )


@attrs.frozen(slots=True, repr=False)
class Executor(ExecutorOptions):
    """Runs the per-item stages directly upstream on a user's executor (the planner
    moves them into a ``RunOnExecutor`` node)."""


@attrs.frozen(slots=True, repr=False)
class RunOnExecutor(ExecutorOptions):
    """An executor stage with the per-item ``ops`` it submits (planned ``Executor``)."""

    ops: tuple[Op, ...] = attrs.field(kw_only=True)
    #: In the scope of an ``ignore_errors``: items whose ops raise are dropped.
    skip: ErrorScope | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=True, repr=False)
class Order(Node):
    """Restores the order items had before the earliest concurrent stage of its region."""

    upstream: Node
    maxsize: int | None = _int("maxsize", optional=True, default=None)


# Nodes below are produced by the planner (and by ``pl.order.save``/``load``).


@attrs.frozen(slots=True, repr=False)
class Fused(Node):
    """A run of per-item stages executed as one step. ``shared``: worker threads of a
    thread stage pull it concurrently."""

    upstream: Node
    ops: tuple[Op, ...]
    shared: bool = False
    #: In the scope of an ``ignore_errors``: items whose ops raise are dropped.
    skip: ErrorScope | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=True, repr=False)
class RunInProcesses(ProcessOptions):
    """A process stage with the per-item ``ops`` its workers run (planned ``Process``)."""

    ops: tuple[Op, ...] = attrs.field(kw_only=True)
    #: In the scope of an ``ignore_errors``: items whose ops raise are dropped.
    skip: ErrorScope | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(eq=False, slots=True)
class OrderToken:
    """The identity of one ``Save``: a ``Load`` names the save it restores by it."""

    def __repr__(self) -> str:
        return f"OrderToken(0x{id(self):x})"


@attrs.frozen(slots=True, repr=False)
class Save(Node):
    """Numbers items so a later ``Load`` can restore their order; lets at most ``maxsize``
    numbered items be outstanding before ``Load`` hands the oldest out."""

    upstream: Node
    #: ``None``: as many as the concurrent stages between the save and its load can hold.
    maxsize: int | None = _int("maxsize", optional=True)
    #: May the window grow when a process stage sends items in large chunks?
    adaptive: bool = _bool("adaptive", False)
    token: OrderToken | None = attrs.field(default=None)
    #: Whether a ``Release`` hands the region out (so its stages keep their own marker
    #: order: an asyncio stage keeps its segments).
    released: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen(slots=True, repr=False)
class Load(Node):
    """Restores the order numbered by the ``Save`` whose tagged items reach it; with a
    ``save`` token, only that save's."""

    upstream: Node
    save: OrderToken | None = attrs.field(default=None)


@attrs.frozen(slots=True, repr=False)
class Release(Load):
    """Hands the items of the region numbered above out as they complete, in no order:
    the numbers only tell a checkpoint which of the region's elements were delivered
    (planned for a run whose last concurrent stages have no ``order()``)."""

    #: Pairs ``(n, k)``: the first ``k`` elements of record ``n`` were delivered before
    #: the run resumed.
    skip: tuple[tuple[int, int], ...] = attrs.field(default=(), kw_only=True)

# -- control (issue 13): skipping items whose processing failed -------------------------


def check_budget(value: Any) -> int | float | None:
    """``max_failures``: None (no limit), an int >= 0 (a count) or a float in (0, 1)
    (a share of the items seen)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "ignore_errors: max_failures must be None, an int or a float in (0, 1), got"
            f" {type(value).__name__}"
        )
    if isinstance(value, int):
        check_int("ignore_errors", "max_failures", value, minimum=0)
    elif not 0 < value < 1:
        raise ValueError(
            "ignore_errors: a float max_failures is a share of the items seen and must be"
            f" in (0, 1), got {value!r}; pass an int for a count"
        )
    return value


@attrs.frozen(slots=True, repr=False)
class IgnoreErrors(Node):
    """Drops the items whose processing raised in the per-item stages above it, back to
    the previous ``IgnoreErrors`` or the source (the planner marks them)."""

    upstream: Node
    max_failures: int | float | None = attrs.field(default=None)
    log: bool = _bool("log", True)

    @max_failures.validator
    def _check_budget(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_budget(value)


@attrs.frozen(eq=False, slots=True)
class ErrorToken:
    """The identity of one ``ignore_errors``: the stages of its scope share its budget."""

    def __repr__(self) -> str:
        return f"ErrorToken(0x{id(self):x})"


@attrs.frozen(slots=True)
class ErrorScope:
    """What a per-item stage in an ``ignore_errors`` scope needs: the budget it shares
    (by token), and whether it is the first stage of the scope (which counts the items
    seen)."""

    token: ErrorToken
    max_failures: int | float | None
    log: bool
    first: bool


#: Stages that run upstream work concurrently and so may reorder items.
CONCURRENT: tuple[type[Node], ...] = (Thread, ProcessOptions, ExecutorOptions)
#: Stages a process stage can run in its workers.
SHIPPABLE: tuple[type[Node], ...] = (Map, Filter, Each, Flatten)
#: Stages that act on one item at a time; ``node.op`` is what they do to it.
PerItem = Map | Filter | Each | Flatten | On

_NAMES: dict[type[Node], str] = {
    Source: "Pipe",
    InsertMarker: "insert_marker",
    RunOnExecutor: "executor",
    IgnoreErrors: "ignore_errors",
}


def chain(node: Node) -> list[Node]:
    """The nodes of a plan from its source to ``node``."""
    nodes: list[Node] = []
    current: Node | None = node
    while current is not None:
        nodes.append(current)
        current = current.upstream
    nodes.reverse()
    return nodes



# -- asyncio stages (issue 16) -----------------------------------------------------------


@attrs.frozen(slots=True, repr=False)
class AsyncioOptions(Node):
    """The options of an asyncio stage, shared by its logical and physical nodes."""

    upstream: Node
    concurrency: int = _int("concurrency")
    maxsize: int | None = _int("maxsize", optional=True, default=None)
    #: Seconds an item may take in the stage's ops before it fails with TimeoutError.
    timeout: float | None = attrs.field(default=None, kw_only=True)

    @timeout.validator
    def _check_timeout(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_number("asyncio", "timeout", value)

    @property
    def queue_size(self) -> int:
        return 2 * self.concurrency if self.maxsize is None else self.maxsize


@attrs.frozen(slots=True, repr=False)
class Asyncio(AsyncioOptions):
    """Runs the per-item stages directly upstream on one event loop, ``concurrency`` items
    at a time (the planner moves them into a ``RunOnLoop`` node)."""


@attrs.frozen(slots=True, repr=False)
class RunOnLoop(AsyncioOptions):
    """An asyncio stage with the per-item ``ops`` its loop runs (planned ``Asyncio``)."""

    ops: tuple[Op, ...] = attrs.field(kw_only=True)
    #: In the scope of an ``ignore_errors``: items whose ops raise are dropped.
    skip: ErrorScope | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(slots=True, repr=False)
class AsyncSource(Source):
    """A source iterated with ``async for`` (a ``Source`` over an async iterable, planned)."""


CONCURRENT = (*CONCURRENT, AsyncioOptions)
_NAMES[Asyncio] = _NAMES[RunOnLoop] = "asyncio"
_NAMES[AsyncSource] = "Pipe"
__all__ += ["AsyncSource", "Asyncio", "AsyncioOptions", "RunOnLoop"]
