"""``operator.length_hint(stage)``: an estimate of the items a live stage has left.

Exact for sync stages over a sized source; a thread stage adds the items in its queue,
but not those a worker holds. Unknown (``NotImplemented``) where a stage's count depends
on the data (filter, flatten ...).
"""

from __future__ import annotations

import math
import operator
from typing import Any

from .. import _plan as plan
from .. import _plan_streams as streams
from .._ops import EachOp, MapOp
from ._steps import Batches

__all__ = ["remaining"]

_KEEPS: tuple[type[plan.Node], ...] = (
    plan.Map,
    plan.Each,
    plan.On,
    plan.Mutex,
    plan.Trace,
    plan.Ratelimit,
    plan.InsertMarker,
    plan.Save,
    plan.Load,
)


def remaining(stage: Any) -> int | None:
    """What the live ``stage`` has left to yield, as far as it can tell; ``None``:
    unknown. (Stages are read by duck typing: ``_stage`` imports this module.)

    Examples:
        >>> from tinypl import Pipe
        >>> run = iter(Pipe(range(10)).map(str).take(4))
        >>> next(run), remaining(run)
        ('0', 3)
    """
    node = stage._node
    upstream = stage._upstream
    if getattr(stage, "_hint_upstream", False):  # a view counting what its stage yields
        return remaining(upstream)
    if node is None:
        hint = operator.length_hint(stage.raw, -1)
        return None if hint < 0 else hint
    if not hasattr(upstream, "_node"):  # a source's stop function, not a stage
        return None
    if isinstance(node, plan.Fused):
        if all(isinstance(op, (MapOp, EachOp)) for op in node.ops):
            return remaining(upstream)
        return None
    if isinstance(node, _KEEPS):
        return remaining(upstream)
    return _own(node, stage, upstream)


def _own(node: plan.Node, stage: Any, upstream: Any) -> int | None:
    above = remaining(upstream)
    if above is None:
        return None
    raw: Any = stage._step if stage._step is not None else stage.raw
    if isinstance(node, plan.Thread):  # a thread stage: a queue of maxsize items
        return above + round(float(stage.maxsize) * float(stage.fill))
    if isinstance(node, streams.Take):
        return min(int(raw.left), above)
    if isinstance(node, streams.Skip):
        return max(0, above - int(raw.left))
    if isinstance(node, streams.Shuffle):
        return above + int(raw.held)
    if isinstance(node, streams.Shard):
        return math.ceil(above / node.count)
    if isinstance(raw, Batches):  # a partition where no marker can occur
        return math.ceil((above + len(raw._batch)) / raw._size)
    return None
