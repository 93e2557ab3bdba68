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

import time
from collections.abc import Callable
from typing import Any

from .._ops import Op
from ._tally import Tally

__all__ = ["StepApply", "Steps", "failed_step", "ok_answer", "take_steps"]

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
        from ._compile import counting_forms

        self.ops = ops
        self.tally = Tally(ops)
        self._plain, self._timed = counting_forms(ops, drop=drop, tally=self.tally)
        #: Whether a chunk holds the records ``(n, items)`` of an ordered region.
        self.tagged = tagged

    def __call__(self, items: list[Any]) -> list[Any]:
        if not items:
            return []
        if self.tagged:
            first, *rest = items
            out = [(first[0], self._timed(first[1], first[0]))]
            plain = self._plain
            return out + [(n, plain(record, n)) for n, record in rest]
        return self._timed(items[:1]) + self._plain(items[1:])

    def take(self) -> Steps:
        """This thread's figures since its last ``take``, and which step raised."""
        return self.tally.take()


def take_steps(apply: Callable[..., Any]) -> Steps | None:
    """The step figures of ``apply`` (``None``: it keeps none)."""
    return apply.take() if isinstance(apply, StepApply) else None


def ok_answer(
    apply: Callable[..., Any], started: float, count: int, out: list[Any], dropped: list[Any]
) -> tuple[Any, ...]:
    """What a chunk that ran from ``started`` on sends back, in a worker process and on
    an executor alike: ``("ok", seconds, count, out, dropped, steps)``."""
    elapsed = time.perf_counter() - started
    return ("ok", elapsed, count, out, dropped, take_steps(apply))


def failed_step(apply: Callable[..., Any]) -> int:
    """The index of the step of ``apply`` that raised (-1: none, or none is known)."""
    steps = take_steps(apply)
    return -1 if steps is None else steps[2]
