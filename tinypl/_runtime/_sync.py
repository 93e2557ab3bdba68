"""The synchronous backend: stages that run in whichever thread pulls them.

Each builder handles the three kinds of stream it may be put on:
- *plain*: no marker can occur, so per-item stages compile to builtin ``map``/``filter``/
  ``chain`` objects (no Python frame per item for the stage itself);
- *marked*: markers may occur, so a small raw iterator passes them on;
- *tagged*: inside an ordered region, where elements are ``(n, items)`` records.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import GeneratorType
from typing import Any

from .. import _plan as plan
from .._marker import is_marker
from ._order import GroupApply, LoadRaw, SaveRaw, Tagger, group_function
from ._registry import build, build_source
from ._stage import ChainStage, FilterStage, MapStage, SourceStage, Stage, ViewStage, make_view
from ._steps import (
    Batches,
    Flatten,
    InsertMarker,
    Locked,
    MarkedStep,
    On,
    Partition,
    Ratelimit,
    Trace,
    Until,
    tap,
)

__all__: list[str] = []

# Iterators whose __next__ is one atomic C call, so several threads may pull them at once.
_EMPTY: tuple[Iterable[Any], ...] = (range(0), [], (), "", b"", bytearray(), {}, set())
_THREAD_SAFE_ITERATORS = frozenset(
    [*(type(iter(x)) for x in _EMPTY), type(iter({}.values())), type(iter({}.items()))]
)


def _view(
    raw: Iterator[Any],
    node: plan.Node,
    upstream: Stage[Any],
    *,
    may_mark: bool,
    thread_safe: bool,
    tagger: Tagger | None = None,
) -> Stage[Any]:
    stage: ViewStage[Any] = make_view(raw, tagger)
    stage._attach(
        raw=raw,
        node=node,
        upstream=upstream,
        may_mark=may_mark,
        thread_safe=thread_safe,
        tagger=tagger,
    )
    return stage


def _group(node: plan.Node, upstream: Stage[Any], ops: tuple[tuple[str, Any], ...]) -> Stage[Any]:
    tagger = upstream.tagger
    assert tagger is not None
    raw = GroupApply(upstream.raw, group_function(ops), tagger)
    return _view(
        raw,
        node,
        upstream,
        may_mark=upstream.may_mark,
        thread_safe=upstream.thread_safe,
        tagger=tagger,
    )


def _not_in_ordered_region(node: plan.Node, upstream: Stage[Any]) -> None:
    if upstream.tagger is not None:
        name = plan.stage_name(node)
        raise ValueError(
            f"{name}: cannot run between pl.order.save and pl.order.load, because it does"
            f" not act on one item at a time; load the order before {name}"
        )


# Iterators of builtin sequences that ``__setstate__`` can move to their end.
_SEQUENCES: tuple[Iterable[Any], ...] = (range(0), [], (), "", b"", bytearray())
_EXHAUSTIBLE = frozenset(type(iter(x)) for x in _SEQUENCES)


def _detachable(iterator: Iterator[Any]) -> Iterator[Any]:
    yield from iterator


def _stopper(iterator: Iterator[Any]) -> Callable[[], None]:
    return lambda: iterator.__setstate__(sys.maxsize)  # type: ignore[attr-defined]


@build_source.register
def _source(node: plan.Source) -> Stage[Any]:
    source = node.source
    if isinstance(source, Stage):
        return source  # a live stage is shared, as the module-level API promises
    iterator = iter(source)
    safe = type(iterator) in _THREAD_SAFE_ITERATORS
    stop: Callable[[], None]
    if isinstance(iterator, GeneratorType):
        stop = iterator.close
    elif iterator is not source and type(iterator) in _EXHAUSTIBLE:
        stop = _stopper(iterator)  # our own iterator: closing may move it to its end
    else:
        # Someone else's iterator (maybe shared): closing detaches this run from it.
        iterator = _detachable(iterator)
        stop = iterator.close  # type: ignore[attr-defined]
        safe = False  # now a generator
    stage: SourceStage[Any] = SourceStage(iterator, None)
    stage._attach(raw=iterator, node=None, upstream=stop, may_mark=False, thread_safe=safe)
    return stage


@build.register
def _fused(node: plan.Fused, upstream: Stage[Any]) -> Stage[Any]:
    if upstream.tagger is not None:
        return _group(node, upstream, node.ops)
    # Thread-safe exactly when the upstream is: a lock per item here would slow every
    # single-threaded pipeline over a generator. Thread stages guard what needs it.
    if upstream.may_mark:
        raw = MarkedStep(upstream.raw, node.ops)
        return _view(raw, node, upstream, may_mark=True, thread_safe=upstream.thread_safe)
    iterator: Iterator[Any] = upstream.raw
    *inner, (kind, fn) = node.ops
    for inner_kind, inner_fn in inner:
        if inner_kind == "filter":
            iterator = filter(inner_fn, iterator)
        else:
            iterator = map(tap(inner_fn) if inner_kind == "each" else inner_fn, iterator)
    stage: Stage[Any]
    if kind == "filter":
        stage = FilterStage(fn, iterator)
    else:
        stage = MapStage(tap(fn) if kind == "each" else fn, iterator)
    stage._attach(
        raw=None, node=node, upstream=upstream, may_mark=False, thread_safe=upstream.thread_safe
    )
    return stage


@build.register
def _flatten(node: plan.Flatten, upstream: Stage[Any]) -> Stage[Any]:
    if upstream.tagger is not None:
        return _group(node, upstream, (("flatten", None),))
    if upstream.may_mark:
        raw = Flatten(upstream.raw, node.eager)
        return _view(raw, node, upstream, may_mark=True, thread_safe=False)
    inner = map(list, upstream.raw) if node.eager else upstream.raw
    stage: ChainStage[Any] = ChainStage.from_iterable(inner)  # type: ignore[assignment]
    stage._attach(raw=None, node=node, upstream=upstream, may_mark=False, thread_safe=False)
    return stage


@build.register
def _partition(node: plan.Partition, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw: Iterator[Any]
    if upstream.may_mark:
        raw = Partition(upstream.raw, node.size, node.markers, node.split_on_marker)
    else:
        raw = Batches(upstream.raw, node.size)
    return _view(raw, node, upstream, may_mark=upstream.may_mark, thread_safe=False)


@build.register
def _insert_marker(node: plan.InsertMarker, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw = InsertMarker(upstream.raw, node.marker, node.every, node.after)
    return _view(raw, node, upstream, may_mark=True, thread_safe=False)


@build.register
def _on(node: plan.On, upstream: Stage[Any]) -> Stage[Any]:
    if upstream.tagger is not None:
        return _group(node, upstream, (("on", (node.marker, node.fn, node.consume)),))
    if not upstream.may_mark:
        return upstream  # no marker can pass, so there is nothing to react to
    raw = On(upstream.raw, node.marker, node.fn, node.consume)
    return _view(raw, node, upstream, may_mark=True, thread_safe=upstream.thread_safe)


@build.register
def _until(node: plan.Until, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    if not upstream.may_mark:
        return upstream  # no marker can end the stream early
    raw = Until(upstream.raw, node.marker)
    return _view(raw, node, upstream, may_mark=True, thread_safe=False)


@build.register
def _ratelimit(node: plan.Ratelimit, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw = Ratelimit(upstream.raw, node.num, node.period)
    return _view(raw, node, upstream, may_mark=upstream.may_mark, thread_safe=False)


@build.register
def _trace(node: plan.Trace, upstream: Stage[Any]) -> Stage[Any]:
    raw = Trace(upstream.raw, node.message)
    return _view(
        raw,
        node,
        upstream,
        may_mark=upstream.may_mark,
        thread_safe=upstream.thread_safe,
        tagger=upstream.tagger,
    )


@build.register
def _mutex(node: plan.Mutex, upstream: Stage[Any]) -> Stage[Any]:
    if node.auto and upstream.thread_safe:
        return upstream
    raw = Locked(upstream.raw, threading.Lock())
    stage: ViewStage[Any] = make_view(raw, upstream.tagger)
    stage._attach(
        raw=raw,
        node=node,
        upstream=upstream,
        may_mark=upstream.may_mark,
        thread_safe=True,
        tagger=upstream.tagger,
        core=raw,
    )
    return stage


@build.register
def _save(node: plan.Save, upstream: Stage[Any]) -> Stage[Any]:
    if upstream.tagger is not None:
        raise ValueError(
            "order: ordered regions cannot nest; load the outer order (pl.order.load or"
            " .order()) before saving a new one"
        )
    tagger = Tagger(node.maxsize, node.adaptive)
    raw = SaveRaw(upstream.raw, tagger)
    # Pulled directly, a save stage hands out plain items: only raw pulls are numbered.
    stage: ViewStage[Any] = ViewStage(is_marker, Locked(upstream.raw, raw.lock))
    stage._attach(
        raw=raw,
        node=node,
        upstream=upstream,
        may_mark=upstream.may_mark,
        thread_safe=True,
        tagger=tagger,
        core=tagger,
    )
    return stage


@build.register
def _load(node: plan.Load, upstream: Stage[Any]) -> Stage[Any]:
    tagger = upstream.tagger
    if tagger is None:
        raise ValueError(
            "order: load needs a stream numbered by a save upstream (pl.order.save), but"
            " this stage's items are not numbered"
        )
    if node.order is not None and getattr(node.order, "tagger", None) is not tagger:
        raise ValueError(
            "order: the pipe given to load was numbered by a different pl.order.save stage"
            " than the one passed as order"
        )
    raw = LoadRaw(upstream.raw, tagger)
    stage = _view(raw, node, upstream, may_mark=upstream.may_mark, thread_safe=False)
    weakref.finalize(stage, tagger.signal)
    return stage
