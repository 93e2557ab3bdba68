"""The per-step figures of a process or executor stage (issue 12), measured where the
chunk runs and sent back inside its result: no extra message per item.

Each chunk runs through a counting form of the stage's compiled steps (a filter counts
what it drops, a flatten what it yields, an exception the step that raised it); the
first item (or record) of each chunk runs through a timed form, whose per-step seconds
are a sample: the parent splits the chunks' measured busy time between the steps in
proportion to the samples (``ChunkFigures``). The plain items pay one counter update
per filter or flatten, as a counting fused run does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._ops import Op
from . import _tally
from ._tally import Tally

__all__ = ["StepApply", "Steps"]

#: What travels back with a chunk: per step its count (filter: dropped, flatten:
#: yielded), its sampled seconds, and the index of the step that raised (or -1).
Steps = tuple[list[int], list[float], int]


class StepApply:
    """``apply(chunk)`` as ``_compile.chunk_function``; ``take()``: the figures of the
    chunk this thread ran last (then reset).

    Examples:
        >>> from tinypl._ops import FilterOp, MapOp
        >>> apply = StepApply((MapOp(abs), FilterOp(bool)), False)
        >>> apply([-1, 0, 2])
        [1, 2]
        >>> counts, samples, failed = apply.take()
        >>> counts, len(samples), failed
        ([0, 1], 2, -1)
    """

    def __init__(self, ops: tuple[Op, ...], tagged: bool, drop: Any = None) -> None:
        from ._compile import _list_function

        self.ops = ops
        self.tally = Tally(ops)
        self._plain = _list_function(ops, markers=False, drop=drop, tally=self.tally)
        self.tally.timed = True
        self._timed = _list_function(ops, markers=False, drop=drop, tally=self.tally)
        self._tagged = tagged

    def __call__(self, items: list[Any]) -> list[Any]:
        if not items:
            return []
        if self._tagged:
            first, *rest = items
            out = [(first[0], self._timed(first[1], first[0]))]
            plain = self._plain
            return out + [(n, plain(record, n)) for n, record in rest]
        return self._timed(items[:1]) + self._plain(items[1:])

    def take(self) -> Steps:
        """This thread's figures since its last ``take``, and which step raised."""
        local = self.tally.local
        counts: list[Any] | None = getattr(local, "c", None)
        errors = self.tally.errors
        failed = -1
        with self.tally._lock:
            for index, value in enumerate(errors):
                if value:
                    failed = index
                    errors[index] = 0
        size = len(self.ops)
        if counts is None:
            return [0] * size, [0.0] * size, failed
        taken = [int(counts[_tally.slot(i, 0)]) for i in range(size)]
        samples = [float(counts[_tally.slot(i, 1)]) for i in range(size)]
        for i in range(size):
            counts[_tally.slot(i, 0)] = 0
            counts[_tally.slot(i, 1)] = 0.0
        return taken, samples, failed


def take_steps(apply: Callable[..., Any]) -> Steps | None:
    """The step figures of ``apply`` (``None``: it keeps none)."""
    return apply.take() if isinstance(apply, StepApply) else None
