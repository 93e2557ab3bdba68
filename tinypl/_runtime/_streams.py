"""The stream operations at run time: shuffle, take, skip, shard, zip, concat, mix and
repeat (prefetch is a one-thread stage of the thread backend: ``ReadAhead``).

Like the steps of ``_steps``, each raw iterator is a small class with ``__next__``, so a
user function's error raised through it does not end the stream. Where no marker can
occur, the stage is a builtin (``islice``, ``zip``, ``chain``) running at C speed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import _plan as plan
from .. import _plan_streams as streams
from .._marker import Marker
from .._plan import Node
from ._registry import build, build_source, materialize
from ._stage import ChainStage, Parts, Stage, make_view
from ._steps import _Raw
from ._sync import _not_in_ordered_region, _view

__all__ = [
    "MixStep",
    "RepeatStep",
    "ShardStep",
    "ShuffleStep",
    "SkipStep",
    "TakeStep",
    "ZipStep",
    "load_rng",
    "mixed_stage",
    "repeated_stage",
    "rng_state",
]


class ShuffleStep:
    """A buffer shuffle: once ``size`` items are held, each new item takes the place of a
    uniformly chosen one, which is emitted. A marker, and the end, flush the buffer.

    The state lives here and generators run it (``runs``), at the speed of a plain
    Python generator; after an error from upstream a fresh generator goes on."""

    __slots__ = ("_buffer", "_ended", "_flush", "_random", "_size")

    def __init__(self, size: int, rng: random.Random) -> None:
        self._size = size
        self._random = rng.random
        self._buffer: list[Any] = []
        self._flush: list[Any] = []  # emitted from its end: a marker sits at its start
        self._ended = False

    @property
    def held(self) -> int:
        """The items in its buffer, or flushed and not yet emitted."""
        return len(self._buffer) + sum(1 for x in self._flush if x.__class__ is not Marker)

    def runs(self, upstream: Iterator[Any], markers: bool) -> Iterator[Iterator[Any]]:
        run = self._marked if markers else self._plain
        while self._flush or not self._ended:
            yield run(upstream)

    def _flushing(self, marker: Any = None) -> None:
        buffer, flush = self._buffer, self._flush
        _permute(buffer, self._random)
        if marker is not None:
            flush.append(marker)
        flush.extend(buffer)
        buffer.clear()

    def _plain(self, upstream: Iterator[Any]) -> Iterator[Any]:
        buffer, flush, size, draw = self._buffer, self._flush, self._size, self._random
        if len(buffer) < size:
            for x in upstream:
                buffer.append(x)
                if len(buffer) == size:
                    break
        for x in upstream:  # the buffer is full
            j = int(draw() * size)
            y = buffer[j]
            buffer[j] = x
            yield y
        self._ended = True
        self._flushing()
        while flush:
            yield flush.pop()

    def _marked(self, upstream: Iterator[Any]) -> Iterator[Any]:
        buffer, flush, size, draw = self._buffer, self._flush, self._size, self._random
        while flush:
            yield flush.pop()
        for x in upstream:
            if x.__class__ is Marker:
                self._flushing(x)
                while flush:
                    yield flush.pop()
            elif len(buffer) < size:
                buffer.append(x)
            else:
                j = int(draw() * size)
                y = buffer[j]
                buffer[j] = x
                yield y
        self._ended = True
        self._flushing()
        while flush:
            yield flush.pop()


def rng_state(rng: random.Random) -> list[Any]:
    """A generator's state as plain data (JSON keeps lists, not tuples).

    Examples:
        >>> rng = random.Random(1)
        >>> copy = random.Random()
        >>> load_rng(copy, rng_state(rng))
        >>> copy.random() == rng.random()
        True
    """
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def load_rng(rng: random.Random, state: Any) -> None:
    """Set ``rng`` to a ``rng_state()``; raises ``TypeError`` or ``ValueError`` for
    anything else."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def _permute(items: list[Any], rand: Callable[[], float]) -> None:
    """Fisher-Yates with the stage's own generator (``random.shuffle`` takes none)."""
    for i in range(len(items) - 1, 0, -1):
        j = int(rand() * (i + 1))
        items[i], items[j] = items[j], items[i]


class TakeStep(_Raw):
    """The first ``n`` items, markers passing; the upstream is closed right after the
    ``n``-th item, so its threads and processes stop."""

    __slots__ = ("_close", "_left")

    def __init__(self, upstream: Iterator[Any], n: int, close: Callable[[], None]) -> None:
        super().__init__(upstream)
        self._left = n
        self._close = close

    def __next__(self) -> Any:
        if self._left <= 0:
            self._finish()
            raise StopIteration
        x = self._pull()
        if x.__class__ is not Marker:
            self._left -= 1
            if self._left == 0:
                self._finish()
        return x

    def _finish(self) -> None:
        close, self._close = self._close, _nothing
        close()

    @property
    def left(self) -> int:
        """How many items it may still yield."""
        return self._left


def _nothing() -> None:
    pass


class SkipStep(_Raw):
    """All but the first ``n`` items; markers pass."""

    __slots__ = ("_left",)

    def __init__(self, upstream: Iterator[Any], n: int) -> None:
        super().__init__(upstream)
        self._left = n

    def __next__(self) -> Any:
        while True:
            x = self._pull()
            if self._left <= 0 or x.__class__ is Marker:
                return x
            self._left -= 1

    @property
    def left(self) -> int:
        """How many items it has still to drop."""
        return self._left


class ShardStep(_Raw):
    """The items at positions ``index`` modulo ``count``; every marker passes."""

    __slots__ = ("_count", "_index", "_position")

    def __init__(self, upstream: Iterator[Any], index: int, count: int) -> None:
        super().__init__(upstream)
        self._index = index
        self._count = count
        self._position = 0

    def __next__(self) -> Any:
        while True:
            x = self._pull()
            if x.__class__ is Marker:
                return x
            position = self._position
            self._position = position + 1
            if position % self._count == self._index:
                return x


class ZipStep(Iterator[Any]):
    """Tuples of one item of each input; a marker of any input passes where it arrives."""

    __slots__ = ("_next", "_parts", "_pulls")

    def __init__(self, inputs: list[Iterator[Any]]) -> None:
        self._pulls = [raw.__next__ for raw in inputs]
        self._parts: list[Any] = []
        self._next = 0  # the input the next part of the tuple comes from

    def __iter__(self) -> ZipStep:
        return self

    def __next__(self) -> Any:
        parts, pulls = self._parts, self._pulls
        while self._next < len(pulls):
            x = pulls[self._next]()
            if x.__class__ is Marker:
                return x
            parts.append(x)
            self._next += 1
        self._next = 0
        self._parts = []
        return tuple(parts)


class MixStep(Iterator[Any]):
    """Interleaves inputs, round-robin or by weight; a marker does not use up a draw."""

    __slots__ = (
        "_active", "_cumulative", "_draw", "_pulls", "_random", "_rng", "_stop", "_turn",
        "_weights",
    )  # fmt: skip

    def __init__(
        self,
        inputs: list[Iterator[Any]],
        weights: tuple[float, ...] | None,
        rng: random.Random,
        stop: str,
    ) -> None:
        self._pulls = [raw.__next__ for raw in inputs]
        self._active = list(range(len(inputs)))
        self._weights = weights
        self._rng = rng
        self._random = rng.random
        self._stop = stop
        self._turn = 0  # round-robin: index into _active
        self._draw: int | None = None  # the input drawn for the next item
        self._cumulative: list[float] = []
        self._reweigh()

    def __iter__(self) -> MixStep:
        return self

    def state(self) -> dict[str, Any]:
        """For a checkpoint, between two items: the inputs still drawn from, the next
        round-robin turn and (weighted) the generator's state."""
        state: dict[str, Any] = {"active": list(self._active), "turn": self._turn}
        if self._weights is not None:
            state["rng"] = rng_state(self._rng)
        return state

    def load(self, state: Mapping[str, Any]) -> None:
        """Go on from a ``state()`` (checked by the caller)."""
        if self._weights is not None:
            load_rng(self._rng, state["rng"])
        self._active[:] = state["active"]
        self._turn = state["turn"]
        self._reweigh()

    def _reweigh(self) -> None:
        if self._weights is not None:
            self._cumulative = list(itertools.accumulate(self._weights[i] for i in self._active))

    def _choose(self) -> int:
        if self._weights is None:
            return self._turn % len(self._active)
        cumulative = self._cumulative
        point = self._random() * cumulative[-1]
        for position, bound in enumerate(cumulative):
            if point < bound:
                return position
        return len(cumulative) - 1

    def __next__(self) -> Any:
        while self._active:
            if self._draw is None:
                self._draw = self._choose()
            position = self._draw
            try:
                x = self._pulls[self._active[position]]()
            except StopIteration:
                self._exhausted(position)
                continue
            if x.__class__ is Marker:
                return x
            self._draw = None
            self._turn = position + 1
            return x
        raise StopIteration

    def _exhausted(self, position: int) -> None:
        self._draw = None
        if self._stop == "first" or self._only_weightless_left(position):
            self._active.clear()
            return
        del self._active[position]
        self._turn = position
        self._reweigh()

    def _only_weightless_left(self, position: int) -> bool:
        """Whether only inputs of weight 0, which no draw reaches, would remain."""
        weights, gone = self._weights, self._active[position]
        return weights is not None and not any(weights[i] > 0 for i in self._active if i != gone)


class _Inputs:
    """The other inputs of a multi-input stage: closed with it."""

    def __init__(self, stages: list[Stage[Any]]) -> None:
        self.stages = stages

    def signal(self) -> None:
        for stage in self.stages:
            stage._signal_stop()

    def shutdown(self) -> None:
        for stage in self.stages:
            stage.close()


def _runs(plans: tuple[plan.Node, ...], node: plan.Node) -> list[Stage[Any]]:
    stages = [materialize(p) for p in plans]
    for stage in stages:
        _not_in_ordered_region(node, stage)
    return stages


def _multi(
    raw: Iterator[Any], node: plan.Node, upstream: Stage[Any] | None, inputs: list[Stage[Any]]
) -> Stage[Any]:
    everything = inputs if upstream is None else [upstream, *inputs]
    stage: Stage[Any] = make_view(raw, None)
    stage._attach(
        raw=raw,
        node=node,
        upstream=upstream,
        may_mark=any(s._may_mark for s in everything),
        thread_safe=False,
        core=_Inputs(inputs),
    )
    return stage


def _one_input(
    raw: Iterator[Any], node: plan.Node, upstream: Stage[Any], step: Any = None
) -> Stage[Any]:
    """The stage of a stateful step on one input: outside ordered regions, guarded when
    worker threads pull it, with the markers its input may carry. ``step``: the object
    whose state a length hint reads, where it is not ``raw`` itself."""
    _not_in_ordered_region(node, upstream)
    stage = _view(raw, node, upstream, may_mark=upstream._may_mark, thread_safe=False)
    stage._step = raw if step is None else step
    return stage


@build.register
def _shuffle(node: streams.Shuffle, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    step = ShuffleStep(node.buffer_size, random.Random(node.seed))
    parts = Parts(step.runs(upstream.raw, upstream._may_mark))
    if upstream._may_mark:
        return _one_input(itertools.chain.from_iterable(parts), node, upstream, step)
    stage = ChainStage.over(parts)  # no marker can occur: no view needed
    stage._attach(raw=None, node=node, upstream=upstream, may_mark=False, thread_safe=False)
    stage._step = step
    return stage


@build.register
def _take(node: streams.Take, upstream: Stage[Any]) -> Stage[Any]:
    return _one_input(TakeStep(upstream.raw, node.n, upstream.close), node, upstream)


@build.register
def _skip(node: streams.Skip, upstream: Stage[Any]) -> Stage[Any]:
    # A step even where no marker can occur: it knows how many items it has left to drop.
    return _one_input(SkipStep(upstream.raw, node.n), node, upstream)


@build.register
def _shard(node: streams.Shard, upstream: Stage[Any]) -> Stage[Any]:
    raw: Iterator[Any]
    if upstream._may_mark:
        raw = ShardStep(upstream.raw, node.index, node.count)
    else:
        raw = itertools.islice(upstream.raw, node.index, None, node.count)
    return _one_input(raw, node, upstream)


@build.register
def _zip(node: streams.Zip, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    others = _runs(node.others, node)
    raws = [upstream.raw, *(s.raw for s in others)]
    marks = upstream._may_mark or any(s._may_mark for s in others)
    raw = ZipStep(raws) if marks else zip(*raws, strict=False)
    return _multi(raw, node, upstream, others)


@build.register
def _concat(node: streams.Concat, upstream: Stage[Any]) -> Stage[Any]:
    _not_in_ordered_region(node, upstream)
    others = _runs(node.others, node)
    raw = itertools.chain(upstream.raw, *(s.raw for s in others))
    return _multi(raw, node, upstream, others)


@build_source.register
def _mix(node: streams.Mix) -> Stage[Any]:
    return mixed_stage(node, _runs(node.inputs, node))[0]


def mixed_stage(node: streams.Mix, inputs: list[Stage[Any]]) -> tuple[Stage[Any], MixStep]:
    """The live stage of a mix over the live ``inputs``, and its step."""
    for stage in inputs:
        _not_in_ordered_region(node, stage)
    raw = MixStep([s.raw for s in inputs], node.weights, random.Random(node.seed), node.stop)
    return _multi(raw, node, None, inputs), raw


class RepeatStep(Iterator[Any]):
    """The passes of a repeat, each a fresh run of the body; the marker after each."""

    __slots__ = ("_begin", "_body", "_current", "_marker", "_node", "_pass", "_times")

    def __init__(
        self,
        node: streams.Repeated,
        begin: Callable[[Node, Any], Stage[Any]] | None = None,
        resume: tuple[int, Any] = (0, None),
    ) -> None:
        self._node = node
        self._body = node.body
        self._times = node.times
        self._marker = node.marker
        #: How a pass starts, from a body's state (a checkpoint's ``start``).
        self._begin = begin
        self._pass, state = resume
        self._current: Stage[Any] | None = None
        if self._times is None or self._pass < self._times:
            self._current = self._start(state)

    def _start(self, state: Any = None) -> Stage[Any]:
        body = streams.reseeded(self._body, self._pass)
        stage = materialize(body) if self._begin is None else self._begin(body, state)
        _not_in_ordered_region(self._node, stage)
        return stage

    def state(self) -> dict[str, Any]:
        """For a checkpoint: the pass, and the state of its run (``None``: all done)."""
        current = self._current
        return {"pass": self._pass, "body": None if current is None else current.state_dict()}

    @property
    def may_mark(self) -> bool:
        return self._marker is not None or (
            self._current is not None and self._current._may_mark
        )

    def __iter__(self) -> RepeatStep:
        return self

    def __next__(self) -> Any:
        while self._current is not None:
            try:
                return next(self._current.raw)
            except StopIteration:
                pass
            self._current.close()
            self._current = None
            self._pass += 1
            if self._times is None or self._pass < self._times:
                self._current = self._start()
            if self._marker is not None:
                return self._marker
        raise StopIteration

    def signal(self) -> None:
        if self._current is not None:
            self._current._signal_stop()

    def shutdown(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.close()


@build_source.register
def _repeated(node: streams.Repeated) -> Stage[Any]:
    return repeated_stage(RepeatStep(node))


def repeated_stage(raw: RepeatStep) -> Stage[Any]:
    """The live stage of a repeat's passes."""
    node = raw._node
    stage: Stage[Any] = make_view(raw, None)
    stage._attach(
        raw=raw, node=node, upstream=None, may_mark=raw.may_mark, thread_safe=False, core=raw
    )
    return stage
