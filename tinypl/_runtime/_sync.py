"""The synchronous backend: stages that run in whichever thread pulls them.

Each builder handles the three kinds of stream it may be put on:
- *plain*: no marker can occur, so a fused run of per-item stages is one compiled
  generator behind a C ``itertools.chain`` (no marker test per item);
- *marked*: markers may occur, so a small raw iterator passes them on;
- *tagged*: inside an ordered region, where elements are ``(n, items)`` records.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import GeneratorType
from typing import Any

from .. import _plan as plan
from .._marker import is_marker
from .._ops import Op
from ._collect import knows_out, name_of
from ._compile import Drop, group_function, restarting, stepper, stepping
from ._order import GroupApply, LoadRaw, SaveRaw, Tagger
from ._registry import build, build_source
from ._release import released
from ._skip import Budget, budget_for, keep_budget
from ._stage import (
    EXHAUSTIBLE,
    ChainStage,
    Parts,
    SourceStage,
    Stage,
    ViewStage,
    WorkerStage,
    guarded_view,
    make_view,
    share_through,
)
from ._stats import CountingParts, FlattenProbe, FusedProbe, SourceProbe
from ._steps import (
    Batches,
    FlattenStep,
    InsertMarkerStep,
    Locked,
    OnStep,
    PartitionStep,
    RatelimitStep,
    TraceStep,
    UntilStep,
)
from ._tally import Tally

__all__: list[str] = []

# Iterators whose __next__ is one atomic C call, so several threads may pull them at once.
# Only the GIL makes it atomic: without it (a free-threaded build, where the GIL can only
# be turned on later, never off) two threads pulling a list or range iterator at once get
# the same item twice. There such a source is pulled under a lock from the start, by its
# own view and by its raw stream alike: a lock taken only once a thread stage shares it
# would miss what already holds the bare iterator (a stage built earlier on the same live
# source, in another thread), which then pulls it unlocked beside the workers.
_EMPTY: tuple[Iterable[Any], ...] = (range(0), [], (), "", b"", bytearray(), {}, set())
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()
_THREAD_SAFE_ITERATORS = frozenset(
    [*(type(iter(x)) for x in _EMPTY), type(iter({}.values())), type(iter({}.items()))]
)


def _view(
    raw: Iterator[Any],
    node: plan.Node,
    upstream: Stage[Any],
    *,
    may_mark: bool,
    thread_safe: bool | Callable[[], bool],
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


def _follow(
    over: Callable[[Iterator[Any]], Iterator[Any]], node: plan.Node, upstream: Stage[Any]
) -> Stage[Any]:
    """A stage over ``over(upstream.raw)`` that keeps ``upstream``'s markers, numbering
    and sharing."""
    stage = _view(
        over(upstream.raw),
        node,
        upstream,
        may_mark=upstream._may_mark,
        thread_safe=False,
        tagger=upstream._tagger,
    )
    share_through(stage, upstream, over)
    return stage


def _group(
    node: plan.Node, upstream: Stage[Any], ops: tuple[Op, ...], budget: Budget | None = None
) -> Stage[Any]:
    tagger = upstream._tagger
    assert tagger is not None
    drop, seen = _dropping(node, budget)
    tally = _tally_for(ops, upstream, timed=True)
    apply = group_function(ops, drop=drop, seen=seen, tally=tally)
    stage = _follow(functools.partial(GroupApply, apply=apply, tagger=tagger), node, upstream)
    stage._probe = FusedProbe(tally)
    return stage


def _tally_for(ops: tuple[Op, ...], upstream: Stage[Any], *, timed: bool) -> Tally:
    """The counters of a fused run; it counts its items in when ``upstream`` cannot."""
    return Tally(ops, count_in=not knows_out(upstream), timed=timed)


def _dropping(node: plan.Node, budget: Budget | None) -> tuple[Drop | None, Any]:
    """The ``drop`` and ``seen`` of the compiled drop form, in an ignore_errors scope."""
    if budget is None:
        return None, None
    first = isinstance(node, plan.Fused) and node.skip is not None and node.skip.first
    return budget.drop, budget.count if first else None


def _not_in_ordered_region(node: plan.Node, upstream: Stage[Any]) -> None:
    if upstream._tagger is not None:
        name = plan.stage_name(node)
        raise ValueError(
            f"{name}: cannot run between pl.order.save and pl.order.load, because it does"
            f" not act on one item at a time; load the order before {name}"
        )




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
    elif iterator is not source and type(iterator) in EXHAUSTIBLE:
        stop = _stopper(iterator)  # our own iterator: closing may move it to its end
    else:
        # Someone else's iterator (maybe shared): closing detaches this run from it.
        iterator = _detachable(iterator)
        stop = iterator.close  # type: ignore[attr-defined]
        safe = False  # now a generator
    pulled = iterator if _GIL or not safe else Locked(iterator, threading.Lock())
    stage: SourceStage[Any] = SourceStage(pulled, None)
    stage._attach(raw=pulled, node=None, upstream=stop, may_mark=False, thread_safe=safe)
    stage._probe = SourceProbe(iterator)
    return stage


class _Runs(Parts):
    """The generators of a fused run (``_compile.restarting``), one after another; asked
    whether several threads may pull the run (``share``), it goes on as one step function,
    which any number of threads may call, when its upstream can be shared and no generator
    has started yet (a started one may hold an item; the automatic lock then guards it)."""

    __slots__ = ("_drop", "_markers", "_ops", "_shared", "_tally", "_upstream", "shared")

    def __init__(
        self,
        ops: tuple[Op, ...],
        upstream: Stage[Any],
        markers: bool,
        drop: tuple[Drop | None, Any] = (None, None),
        tally: Tally | None = None,
    ) -> None:
        dropped, seen = drop
        runs = restarting(ops, upstream.raw, markers=markers, drop=dropped, seen=seen, tally=tally)
        super().__init__(runs)
        self._ops = ops
        self._upstream = upstream
        self._markers = markers
        self._shared = False
        #: Once shared: the one iterator over the step function, which threads may pull.
        self.shared: Iterator[Any] | None = None
        self._drop = drop
        self._tally = tally

    def time_it(self, may_close: bool) -> None:
        """Go on in the timed form (``stage.stats()``): at once when no generator has
        started; else, with ``may_close``, by closing the suspended one (it holds no item
        between two yields); otherwise not yet."""
        tally = self._tally
        if tally is None or tally.timed or self._shared:
            return
        current = self._current
        if current is not None:
            if not may_close or getattr(current, "gi_running", True):
                return
            try:
                current.close()  # type: ignore[attr-defined]
            except ValueError:  # it started running meanwhile: not this time
                return
        tally.timed = True
        drop, seen = self._drop
        self._iterables = restarting(
            self._ops, self._upstream.raw, markers=self._markers, drop=drop, seen=seen, tally=tally
        )

    def share(self) -> bool:
        if self._shared:
            return True
        if self._current is not None or not self._upstream._can_share():
            return False
        upstream = self._upstream
        drop, seen = self._drop
        if self._tally is not None:
            self._tally.timed = True  # worker threads run it: timed always
        step = stepper(
            self._ops,
            upstream.raw.__next__,
            markers=self._markers,
            drop=drop,
            seen=seen,
            tally=self._tally,
        )
        self.shared = stepping(step)
        self._iterables = iter((self.shared,))
        self._shared = True
        return True


def _share_run(stage: weakref.ref[Stage[Any]], runs: _Runs) -> bool:
    """``_can_share`` of a fused run's stage (held weakly: no reference cycle delays its
    collection). Once shared, the stage's raw stream is the step function's iterator
    itself: threads pulling it then never go through the stage's ``itertools.chain``,
    whose own state (the part in progress) is not safe to advance from two threads at
    once, with the GIL or without (one thread could end the chain for all while another
    still held the step iterator)."""
    owner = stage()
    if owner is None or not runs.share():
        return False
    owner._raw = runs.shared
    return True


@build.register
def _fused(node: plan.Fused, upstream: Stage[Any]) -> Stage[Any]:
    budget = budget_for(node.skip, upstream)  # in an ignore_errors scope
    return keep_budget(_fused_stage(node, upstream, budget), budget)


def _fused_stage(node: plan.Fused, upstream: Stage[Any], budget: Budget | None) -> Stage[Any]:
    if upstream._tagger is not None:
        return _group(node, upstream, node.ops, budget)
    markers = upstream._may_mark
    drop, seen = dropping = _dropping(node, budget)
    tally = _tally_for(node.ops, upstream, timed=node.shared)
    if node.shared:  # worker threads pull it at once
        step = stepper(
            node.ops, upstream.raw.__next__, markers=markers, drop=drop, seen=seen, tally=tally
        )
        shared = _view(
            stepping(step), node, upstream, may_mark=markers, thread_safe=upstream._can_share
        )
        shared._probe = FusedProbe(tally)
        return shared
    runs = _Runs(node.ops, upstream, markers, dropping, tally)
    if markers:
        stage = _view(
            itertools.chain.from_iterable(runs), node, upstream, may_mark=True, thread_safe=False
        )
    else:
        stage = ChainStage.over(runs)
        stage._attach(raw=None, node=node, upstream=upstream, may_mark=False, thread_safe=False)
    stage._thread_safe = functools.partial(_share_run, weakref.ref(stage), runs)
    stage._probe = FusedProbe(tally, runs)
    return stage


@build.register
def _flatten(node: plan.Flatten, upstream: Stage[Any]) -> Stage[Any]:
    if upstream._tagger is not None:
        return _group(node, upstream, (node.op,))
    if upstream._may_mark:
        raw = FlattenStep(upstream.raw, node.eager)
        return _view(raw, node, upstream, may_mark=True, thread_safe=False)
    inner = map(list, upstream.raw) if node.eager else upstream.raw
    parts = CountingParts(inner)
    stage = ChainStage.over(parts)
    stage._attach(raw=None, node=node, upstream=upstream, may_mark=False, thread_safe=False)
    stage._probe = FlattenProbe(name_of(node), parts)
    return stage


@build.register
def _partition(node: plan.Partition, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw: Iterator[Any]
    if upstream._may_mark:
        raw = PartitionStep(upstream.raw, node.size, node.markers, node.split_on_marker)
    else:
        raw = Batches(upstream.raw, node.size)
    return _view(raw, node, upstream, may_mark=upstream._may_mark, thread_safe=False)


@build.register
def _insert_marker(node: plan.InsertMarker, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw = InsertMarkerStep(upstream.raw, node.marker, node.every, node.after)
    return _view(raw, node, upstream, may_mark=True, thread_safe=False)


@build.register
def _on(node: plan.On, upstream: Stage[Any]) -> Stage[Any]:
    if upstream._tagger is not None:
        return _group(node, upstream, (node.op,))
    if not upstream._may_mark:
        return upstream  # no marker can pass, so there is nothing to react to

    def over(raw: Iterator[Any]) -> Iterator[Any]:
        return OnStep(raw, node.marker, node.fn, node.consume)

    stage = _view(over(upstream.raw), node, upstream, may_mark=True, thread_safe=False)
    share_through(stage, upstream, over)
    return stage


@build.register
def _until(node: plan.Until, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    if not upstream._may_mark:
        return upstream  # no marker can end the stream early
    raw = UntilStep(upstream.raw, node.marker)
    return _view(raw, node, upstream, may_mark=True, thread_safe=False)


@build.register
def _ratelimit(node: plan.Ratelimit, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    raw = RatelimitStep(upstream.raw, node.num, node.period)
    return _view(raw, node, upstream, may_mark=upstream._may_mark, thread_safe=False)


@build.register
def _trace(node: plan.Trace, upstream: Stage[Any]) -> Stage[Any]:
    return _follow(functools.partial(TraceStep, message=node.message), node, upstream)


@build.register
def _mutex(node: plan.Mutex, upstream: Stage[Any]) -> Stage[Any]:
    if node.auto and upstream._can_share():
        return upstream
    raw = Locked(upstream.raw, threading.Lock())
    return guarded_view(raw, node, upstream, raw)


@build.register
def _save(node: plan.Save, upstream: Stage[Any]) -> Stage[Any]:
    if upstream._tagger is not None:
        raise ValueError(
            "order: ordered regions cannot nest; load the outer order (pl.order.load or"
            " .order()) before saving a new one"
        )
    source = node.upstream
    positions = isinstance(source, plan.Source) and not isinstance(source.source, Stage)
    # Without maxsize the load sizes the window, once the stages between exist.
    window = 1 if node.maxsize is None else node.maxsize
    tagger = Tagger(window, node.adaptive, node.token, positions, released=node.released)
    raw = SaveRaw(upstream.raw, tagger)
    # Pulled directly, a save stage hands out plain items: only raw pulls are numbered.
    stage: ViewStage[Any] = ViewStage(is_marker, Locked(upstream.raw, raw.lock))
    marks = upstream._may_mark
    stage._attach(raw=raw, node=node, upstream=upstream, may_mark=marks, thread_safe=True,
                  tagger=tagger, core=tagger)  # fmt: skip
    return stage


def _size_window(stage: Stage[Any], tagger: Tagger) -> None:
    """A save without maxsize: its window is what the thread and process stages from
    ``stage`` up to it can hold (tinypl 0.1.0's rule for the dataloader)."""
    room = 0
    current: Any = stage
    while isinstance(current, Stage) and current._tagger is tagger:
        if isinstance(current, WorkerStage):
            room += current.workers + current.maxsize
        if isinstance(current._node, plan.Save):
            if current._node.maxsize is None:
                tagger.window = max(1, room)
            break
        current = current._upstream


@build.register
def _load(node: plan.Load, upstream: Stage[Any]) -> Stage[Any]:
    tagger = upstream._tagger
    if tagger is None:
        raise ValueError(
            "order: load needs a stream numbered by a save upstream (pl.order.save), but"
            " this stage's items are not numbered"
        )
    if node.save is not None and tagger.token is not node.save:
        raise ValueError(
            "order: the pipe given to load was numbered by a different pl.order.save stage"
            " than the one passed as order"
        )
    _size_window(upstream, tagger)
    if isinstance(node, plan.Release):
        return released(upstream, tagger, node.skip)
    raw = LoadRaw(upstream.raw, tagger)
    stage = _view(raw, node, upstream, may_mark=upstream._may_mark, thread_safe=False)
    weakref.finalize(stage, tagger.signal)
    return stage
