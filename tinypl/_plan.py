"""Descriptions: one frozen attrs class per stage kind.

A plan is a chain of these nodes linked through ``upstream``; it is pure data. Nothing in
this module runs a user function, starts a thread or allocates a resource. Every field is
validated on construction, so a bad argument fails where the pipeline is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ._marker import Marker
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
    "PER_ITEM",
    "Each",
    "Filter",
    "Flatten",
    "Fused",
    "InsertMarker",
    "Load",
    "Map",
    "Mutex",
    "Node",
    "On",
    "Order",
    "Partition",
    "Process",
    "Ratelimit",
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


@attrs.frozen(slots=True, repr=False)
class Filter(Node):
    upstream: Node
    pred: Callable[[Any], Any] = _callable("pred")


@attrs.frozen(slots=True, repr=False)
class Each(Node):
    upstream: Node
    fn: Callable[[Any], Any] = _callable("fn")


@attrs.frozen(slots=True, repr=False)
class Flatten(Node):
    upstream: Node
    eager: bool = _bool("eager", False)


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

    @property
    def queue_size(self) -> int:
        return 2 * self.workers if self.maxsize is None else self.maxsize


START_METHODS = ("fork", "forkserver", "spawn")


@attrs.frozen(slots=True, repr=False)
class Process(Node):
    """Runs the per-item stages directly upstream (``ops``, filled in by the planner) in
    ``workers`` worker processes."""

    upstream: Node
    workers: int = _int("workers")
    maxsize: int | None = _int("maxsize", optional=True, default=None)
    start_method: str | None = attrs.field(default=None)
    limit_threads: bool = _bool("limit_threads", True)
    on_worker_error: str = attrs.field(default="raise")
    chunksize: int | None = _int("chunksize", optional=True, default=None)
    ops: tuple[tuple[str, Any], ...] = attrs.field(default=())

    @start_method.validator
    def _check_start(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check_choice("process", "start_method", value, START_METHODS)

    @on_worker_error.validator
    def _check_mode(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice("process", "on_worker_error", value, WORKER_ERROR_MODES)

    @property
    def queue_size(self) -> int:
        return 2 * self.workers if self.maxsize is None else self.maxsize


@attrs.frozen(slots=True, repr=False)
class Order(Node):
    """Restores the order items had before the earliest concurrent stage of its region."""

    upstream: Node
    maxsize: int | None = _int("maxsize", optional=True, default=None)


# Nodes below are produced by the planner (and by ``pl.order.save``/``load``).


@attrs.frozen(slots=True, repr=False)
class Fused(Node):
    """A run of per-item stages executed as one step. ``ops`` holds ``(kind, fn)`` pairs."""

    upstream: Node
    ops: tuple[tuple[str, Any], ...]


@attrs.frozen(slots=True, repr=False)
class Save(Node):
    """Numbers items so a later ``Load`` can restore their order; lets at most ``maxsize``
    numbered items be outstanding before ``Load`` hands the oldest out."""

    upstream: Node
    maxsize: int = _int("maxsize")
    #: May the window grow when a process stage sends items in large chunks?
    adaptive: bool = _bool("adaptive", False)


@attrs.frozen(slots=True, repr=False)
class Load(Node):
    """Restores the order numbered by the ``Save`` whose tagged items reach it."""

    upstream: Node
    order: Any = attrs.field(default=None)


#: Stages that act on one item at a time, with no state across items.
PER_ITEM: tuple[type[Node], ...] = (Map, Filter, Each, On, Fused)
#: Stages that run upstream work concurrently and so may reorder items.
CONCURRENT: tuple[type[Node], ...] = (Thread, Process)
#: Stages a process stage can run in its workers.
SHIPPABLE: tuple[type[Node], ...] = (Map, Filter, Each, Flatten)

_NAMES: dict[type[Node], str] = {
    Source: "Pipe",
    InsertMarker: "insert_marker",
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


def iter_upstream(node: Node) -> Iterator[Node]:
    """``node`` and then each of its upstream nodes, down to the source."""
    current: Node | None = node
    while current is not None:
        yield current
        current = current.upstream
