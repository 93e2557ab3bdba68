"""Checkpoint mode ``shuffle``: a seeded buffer shuffle over a positional sequence
source, with one-to-one stages between the two and per-item stages after it.

The state is the source's position, the source positions of the items the shuffle's
buffer holds (and of those it has flushed and not yet emitted) and its generator's
state. A resumed run re-reads only those positions from the sequence (through the
stages before the shuffle), so its first item costs a buffer's worth of reads, never a
replay of the run so far.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from typing import Any

from . import _plan as plan
from . import _plan_streams as streams
from ._checkpoint_checks import generator_state
from ._runtime import Stage
from ._runtime._registry import build_nodes
from ._runtime._stage import ChainStage, Parts
from ._runtime._streams import ShuffleStep, _permute, load_rng, rng_state

__all__ = ["PositionedShuffle", "ShuffleRun", "start_shuffled"]


class PositionedShuffle(ShuffleStep):
    """A buffer shuffle that keeps, next to each held item, its position in the source
    (the ``n``-th element it pulls is the source's: every stage before it is one-to-one
    and pulls lazily). It draws exactly as ``ShuffleStep`` does, so a run is unchanged."""

    __slots__ = ("_at", "_flush_at", "_position", "rng")

    def __init__(self, size: int, rng: random.Random, position: Any) -> None:
        super().__init__(size, rng)
        self.rng = rng
        self._position = position  # how many elements the source has passed
        self._at: list[int] = []
        self._flush_at: list[int] = []

    def _filled(self, upstream: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        """``upstream`` with each element's source position, once the buffer is full
        (or ``upstream`` ended)."""
        buffer, at, size = self._buffer, self._at, self._size
        places = zip(itertools.count(self._position()), upstream, strict=False)
        if len(buffer) < size:
            for p, x in places:
                buffer.append(x)
                at.append(p)
                if len(buffer) == size:
                    break
        return places

    def _drained(self) -> Iterator[Any]:
        """The end: the buffer flushed in a drawn order."""
        self._ended = True
        self._flushing()
        flush, flush_at = self._flush, self._flush_at
        while flush:
            flush_at.pop()
            yield flush.pop()

    def _plain(self, upstream: Iterator[Any]) -> Iterator[Any]:
        buffer, at, size, draw = self._buffer, self._at, self._size, self._random
        for p, x in self._filled(upstream):  # the buffer is full
            j = int(draw() * size)
            y = buffer[j]
            buffer[j] = x
            at[j] = p
            yield y
        yield from self._drained()

    def _flushing(self, marker: Any = None) -> None:
        assert marker is None  # no marker reaches it: the stages before it are one-to-one
        # The permutation ``ShuffleStep`` applies, drawn on indices, moves both lists.
        order = list(range(len(self._buffer)))
        _permute(order, self._random)
        self._flush.extend([self._buffer[i] for i in order])
        self._flush_at.extend([self._at[i] for i in order])
        self._buffer.clear()
        self._at.clear()

    def state(self) -> dict[str, Any]:
        return {
            "buffer": list(self._at),
            "flush": list(self._flush_at),
            "ended": self._ended,
            "rng": rng_state(self.rng),
        }

    def load(self, state: Mapping[str, Any], buffer: list[Any], flush: list[Any]) -> None:
        load_rng(self.rng, state["rng"])
        self._buffer[:] = buffer
        self._at[:] = state["buffer"]
        self._flush[:] = flush
        self._flush_at[:] = state["flush"]
        self._ended = state["ended"]


class ShuffleRun:
    """What ``state_dict()`` reads from a run in ``shuffle`` mode."""

    __slots__ = ("positioned", "step")

    def __init__(self, positioned: Any, step: PositionedShuffle) -> None:
        self.positioned = positioned
        self.step = step

    def state(self) -> dict[str, Any]:
        return {"source": self.positioned.position(), **self.step.state()}


def _positions(state: Mapping[str, Any], key: str, size: int) -> list[int]:
    value: Any = state.get(key)
    # At C speed: a resumed run checks a buffer's worth of them before its first item.
    valid = isinstance(value, list) and set(map(type, value)) <= {int}
    if not valid or (value and not (min(value) >= 0 and max(value) < size)):
        raise ValueError(
            f"Pipe.iter: state[{key!r}] must list source positions (ints from 0 to"
            f" {size - 1}), got {value!r}"
        )
    positions: list[int] = value
    return positions


def _checked(state: Mapping[str, Any], size: int, buffer: int) -> None:
    source = state.get("source")
    if type(source) is not int or not 0 <= source <= size:
        raise ValueError(
            f"Pipe.iter: state['source'] must be an int from 0 to {size}, got {source!r}"
        )
    held = _positions(state, "buffer", size)
    _positions(state, "flush", size)
    if len(held) > buffer or type(state.get("ended")) is not bool:
        raise ValueError(
            f"Pipe.iter: state['buffer'] must hold at most {buffer} positions and"
            f" state['ended'] must be a bool, got {len(held)} and {state.get('ended')!r}"
        )
    rng = state.get("rng")
    if not generator_state(rng):
        raise ValueError(
            f"Pipe.iter: state['rng'] must be the shuffle's generator state, got {rng!r}"
        )


def _reread(seq: Any, positions: list[int], before: list[plan.Node]) -> list[Any]:
    """The items the stages ``before`` make of the source's elements at ``positions``."""
    if type(seq) is range and seq.start == 0 and seq.step == 1:
        elements = list(positions)  # the indices of a sampler: each is its own element
    else:
        elements = list(map(seq.__getitem__, positions))
    if not elements or not before:
        return elements
    stage = build_nodes([plan.Source(elements), *before])
    with stage:
        return list(stage)


def start_shuffled(
    nodes: list[plan.Node],
    at: int,
    state: Mapping[str, Any] | None,
    positioned: Any,
    *,
    kind: type[PositionedShuffle] = PositionedShuffle,
    after: plan.Node | None = None,
) -> tuple[Stage[Any], ShuffleRun]:
    """A run of ``nodes`` whose shuffle is ``nodes[at]`` (run by a ``kind``), from
    ``positioned`` (the sequence source, started where ``state`` says); resumed from
    ``state`` if given. ``after``: the node to be built on it (``None``: none)."""
    from ._runtime._collect import attach, prepare  # the probes of stage.stats()

    node = nodes[at]
    assert isinstance(node, streams.Shuffle)
    seq = positioned.seq
    if state is not None:
        _checked(state, len(seq), node.buffer_size)
        positioned.start = state["source"]
    head = build_nodes([plan.Source(positioned), *nodes[1:at]], following=node)
    step = kind(node.buffer_size, random.Random(node.seed), positioned.position)
    if state is not None:
        before = nodes[1:at]
        buffer = _reread(seq, state["buffer"], before)
        step.load(state, buffer, _reread(seq, state["flush"], before))
    prepare(head, node)
    shuffled = ChainStage.over(Parts(step.runs(head.raw, False)))
    shuffled._attach(raw=None, node=node, upstream=head, may_mark=False, thread_safe=False)
    shuffled._step = step
    following = nodes[at + 1] if at + 1 < len(nodes) else after
    stage = attach(shuffled, head, following)
    if at + 1 < len(nodes):
        stage = build_nodes(nodes[at + 1 :], stage, following=after)
    return stage, ShuffleRun(positioned, step)
