"""``len(pipe)``: the number of items a run yields, derived from the plan alone.

Each stage either keeps the count, changes it by a rule of its parameters, or makes it
unknown (``TypeError`` naming it). Nothing runs: only the source's ``len()`` is called.
"""

from __future__ import annotations

import functools
import math

from . import _plan as plan
from . import _plan_streams as streams
from ._ops import short_repr

__all__ = ["length"]

# Stages that pass every item on (markers are not counted).
_KEEPS: tuple[type[plan.Node], ...] = (
    plan.Map,
    plan.Each,
    plan.On,
    plan.Order,
    plan.Thread,
    plan.ProcessOptions,
    plan.Mutex,
    plan.Trace,
    plan.Ratelimit,
    plan.InsertMarker,
    plan.Save,
    plan.Load,
    streams.Shuffle,
    streams.Prefetch,
)


def length(node: plan.Node) -> int:
    """The number of items a run of ``node`` yields; ``TypeError`` when it is not known.

    Examples:
        >>> from tinypl import Pipe
        >>> length(Pipe(range(10)).partition(3).plan)
        4
    """
    return _length(node)


def _unknown(what: str) -> TypeError:
    return TypeError(
        f"len(): {what} changes the number of items by an amount known only when it runs"
    )


@functools.singledispatch
def _length(node: plan.Node) -> int:
    if isinstance(node, _KEEPS):
        assert node.upstream is not None
        return _length(node.upstream)
    op = getattr(node, "op", None)
    raise _unknown(op.label if op is not None else plan.stage_name(node) + "()")


@_length.register
def _(node: plan.Source) -> int:
    source = node.source
    if not hasattr(type(source), "__len__"):
        raise TypeError(
            f"len(): the source Pipe({short_repr(source)}) has no len(), so the length of"
            " the pipe is unknown"
        )
    try:
        return len(source)
    except Exception as error:  # len(pipe) raises only TypeError, so list(pipe) still works
        raise TypeError(
            f"len(): len() of the source Pipe({short_repr(source)}) raised"
            f" {type(error).__name__}: {error}"
        ) from error


@_length.register
def _(node: plan.Partition) -> int:
    if node.split_on_marker:
        raise _unknown("partition(split_on_marker=True)")
    return math.ceil(_length(node.upstream) / node.size)


@_length.register
def _(node: streams.Take) -> int:
    return min(node.n, _length(node.upstream))


@_length.register
def _(node: streams.Skip) -> int:
    return max(0, _length(node.upstream) - node.n)


@_length.register
def _(node: streams.Shard) -> int:
    return len(range(node.index, _length(node.upstream), node.count))


@_length.register
def _(node: streams.Zip) -> int:
    return min(_length(node.upstream), *map(_length, node.others))


@_length.register
def _(node: streams.Concat) -> int:
    return _length(node.upstream) + sum(map(_length, node.others))


@_length.register
def _(node: streams.Repeat) -> int:
    if node.times is None:
        raise TypeError("len(): repeat() without times repeats forever, so it has no length")
    return node.times * _length(node.upstream)


@_length.register
def _(node: streams.Mix) -> int:
    if node.stop == "all" and (node.weights is None or all(w > 0 for w in node.weights)):
        return sum(map(_length, node.inputs))
    raise _unknown(f"mix(stop={node.stop!r})")
