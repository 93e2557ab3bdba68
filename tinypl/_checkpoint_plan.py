"""What a checkpoint needs to know about a plan: how a run of it can be resumed (its
mode), why it cannot be, and the fingerprint that tells a state's pipe from another.

Pure functions of plan nodes: nothing here runs a stage.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator, Mapping
from typing import Any, Literal

from . import _plan as plan
from . import _plan_streams as streams
from ._errors import NotResumable
from ._explain import describe
from ._ops import EachOp, FilterOp, FlattenOp, MapOp, OnOp
from ._planner import optimize

__all__ = [
    "COUNTERS",
    "Mode",
    "fingerprint",
    "has_protocol",
    "is_positional",
    "is_sequence",
    "mode_of",
    "one_to_one",
    "plan_sources",
    "problem",
    "run_plan",
    "shuffle_before",
]

#: ``position``: the source's position is the state (a sync chain of per-item stages);
#: ``ordered``: a count of the records an ordered region at the end delivered, replayed
#: upstream of its save; ``shuffle``: the source's position and the source positions a
#: seeded shuffle's buffer holds, re-read; ``replay``: a count of what the run delivered,
#: replayed; ``repeat``: a repeat's pass and the state of that pass's run, then per-item
#: stages; ``mix``: the state of each input's run and of the mix's draws, then per-item
#: stages; ``unordered``: which elements entering the concurrent stages at the end
#: (numbered for it, ``plan.Release``) were delivered, re-run but for those.
Mode = Literal["position", "ordered", "shuffle", "replay", "unordered", "repeat", "mix"]

# Stages that pass each item on as they pull it, holding nothing: after the consumer's
# item, the source has yielded exactly what led to it.
_TRANSPARENT = (plan.On, plan.Trace, plan.Ratelimit, plan.Mutex)
_PLAIN_OPS = (MapOp, FilterOp, EachOp, OnOp)
#: Stages whose state is the count ``n`` of items they have still to take or drop.
COUNTERS = (streams.Take, streams.Skip)


def has_protocol(source: Any) -> bool:
    """Whether ``source`` follows the resumable source protocol (torch's ``Stateful``)."""
    return callable(getattr(source, "state_dict", None)) and callable(
        getattr(source, "load_state_dict", None)
    )


def is_sequence(source: Any) -> bool:
    """Whether ``source`` has ``__len__`` and ``__getitem__`` (and is not a mapping)."""
    kind = type(source)
    return (
        hasattr(kind, "__len__")
        and hasattr(kind, "__getitem__")
        and not isinstance(source, (Mapping, Iterator))
    )


_BUILTIN_SEQUENCES = (list, tuple, range, str, bytes)


def is_positional(source: Any) -> bool:
    """Whether ``iter(source)`` is an iterator whose position can be read and set: a
    builtin sequence's, or the index-walking iterator of a sequence that defines no
    ``__iter__`` of its own. (A sequence with its own ``__iter__``, a numpy array say,
    is replayed instead.)"""
    kind = type(source)
    if kind in _BUILTIN_SEQUENCES:
        return True
    return is_sequence(source) and getattr(kind, "__iter__", None) is None


def _source_problem(node: plan.Source) -> str | None:
    source = node.source
    name = _Lazy(node)
    if isinstance(node, plan.AsyncSource) or isinstance(source, AsyncIterable):
        return f"the source {name} is asynchronous and has no position to resume from"
    if has_protocol(source) or is_sequence(source):
        return None
    if isinstance(source, Iterator):
        return (
            f"the source {name} is an iterator (or a generator), whose position cannot be"
            " restored; pass a sequence or an object with state_dict()/load_state_dict()"
        )
    replayable = getattr(source, "_tinypl_replayable", None)
    if replayable:
        return None  # a pl.dataloader sampler whose iterations all yield the same epochs
    if replayable is not None:
        return f"the source {name} shuffles with a live generator; pass an int seed as rng="
    return (
        f"the source {name} has no known position: make it a sequence (__len__ and"
        " __getitem__) or give it state_dict()/load_state_dict()"
    )


class _Lazy:
    """A stage's description, rendered only when a message needs it."""

    __slots__ = ("node",)

    def __init__(self, node: plan.Node) -> None:
        self.node = node

    def __str__(self) -> str:
        return describe(self.node)


def _node_problem(node: plan.Node, ordered: bool) -> str | None:
    name = _Lazy(node)
    concurrent = isinstance(node, plan.CONCURRENT) and not isinstance(node, streams.ReadAhead)
    if concurrent and not ordered:
        return (
            f"{name} delivers items in the order they complete, which the stateful stages"
            " after it would make part of the state; add .order() after it (unordered"
            " concurrent stages resume only at the end of a pipe, before per-item stages)"
        )
    if isinstance(node, streams.Shuffle) and node.seed is None:
        return f"{name} has no seed, so a resumed run cannot draw the same order; pass seed="
    if isinstance(node, streams.Mix) and node.weights is not None and node.seed is None:
        return f"{name} draws its inputs at random without a seed; pass seed="
    return None


def problem(physical: list[plan.Node]) -> str | None:
    """Why a run of the physical plan ``physical`` (a chain) cannot be resumed exactly;
    ``None`` when it can."""
    ordered = False
    for node in physical:
        if isinstance(node, plan.Source):
            found = _source_problem(node)
        else:
            ordered = isinstance(node, plan.Save) or (ordered and not isinstance(node, plan.Load))
            found = _node_problem(node, ordered)
        if found is not None:
            return found
        for inner in _inputs(node):
            found = problem(plan.chain(optimize(inner)))
            if found is not None:
                return found
    if ordered:
        return "its last stage is a pl.order.save without the load that restores the order"
    return None


def run_plan(node: plan.Node) -> tuple[list[plan.Node], str | None]:
    """The physical plan a run of the logical plan ``node`` builds, and why the run
    cannot be resumed (``None``: it can). Concurrent stages at the end without
    ``order()`` are numbered (``plan.Release``) where that makes the run resumable."""
    nodes = plan.chain(optimize(node))
    reason = problem(nodes)
    if reason is not None:
        numbered = plan.chain(optimize(node, numbered=True))
        released = any(isinstance(current, plan.Release) for current in numbered)
        # Only at the end: what the release hands out varies from run to run, so no
        # stateful stage after it could be replayed.
        if released and problem(numbered) is None and mode_of(numbered)[0] == "unordered":
            return numbered, None
    return nodes, reason


def _inputs(node: plan.Node) -> list[plan.Node]:
    body = getattr(node, "body", None)
    return [*getattr(node, "others", ()), *getattr(node, "inputs", ()), *([body] if body else [])]


def plan_sources(node: plan.Node) -> list[Any]:
    """The sources of every input of ``node``'s plan that follow the protocol, in a fixed
    order (the plan's, then each nested plan's)."""
    found: list[Any] = []
    for current in plan.chain(node):
        if isinstance(current, plan.Source) and has_protocol(current.source):
            found.append(current.source)
        for inner in _inputs(current):
            found.extend(plan_sources(inner))
    return found


def _plain(node: plan.Node) -> bool:
    if isinstance(node, plan.Fused):
        return node.skip is None and all(isinstance(op, _PLAIN_OPS) for op in node.ops)
    return isinstance(node, _TRANSPARENT)


def _flattens(node: plan.Node) -> bool:
    ops = getattr(node, "ops", ())
    return isinstance(node, plan.Flatten) or any(isinstance(op, FlattenOp) for op in ops)


def _positional(physical: list[plan.Node]) -> bool:
    """Whether the source's position (and each flatten's place in its current item)
    tells where a run of ``physical`` stands."""
    head = physical[0]
    if not isinstance(head, plan.Source):
        return False
    rewinds = is_positional(head.source)  # a flatten re-reads its item from the source
    if not rewinds and not has_protocol(head.source):
        return False
    batched = counted = False
    aligned = rewinds  # the stages so far see each source element at its own position
    for node in physical[1:]:
        if isinstance(node, streams.Shard):
            if not aligned:
                return False  # its phase is then no function of the source's position
            aligned = False  # what it passes on is every count-th element, not each
            continue
        aligned = aligned and one_to_one(node)
        if isinstance(node, plan.Flatten):
            # After a partition, the flatten's item is a batch the source cannot re-read;
            # after a take or skip, re-reading it would count it twice.
            if batched or counted or not rewinds:
                return False
        elif isinstance(node, plan.Partition):
            # Its batch is empty after each it emits; the markers it holds are its state.
            batched = True
        elif isinstance(node, COUNTERS):
            counted = True
        elif isinstance(node, plan.InsertMarker):
            counted = True  # its count is its state (a re-read item: counted twice)
        elif not _plain(node):
            return False
    return True


def one_to_one(node: plan.Node) -> bool:
    """Whether ``node`` turns each element into exactly one, as it pulls it."""
    if isinstance(node, plan.Fused):
        return node.skip is None and all(isinstance(op, (MapOp, EachOp)) for op in node.ops)
    return isinstance(node, (plan.On, plan.Trace, plan.Ratelimit, plan.Mutex))


def _shuffled(physical: list[plan.Node]) -> int:
    """The index of the shuffle in a plan of a positional sequence source, one-to-one
    stages, a shuffle and per-item stages; 0 for any other plan."""
    at = _shuffle_at(physical)
    return at if at and all(_plain(node) for node in physical[at + 1 :]) else 0


def _shuffle_at(physical: list[plan.Node]) -> int:
    """The index of a shuffle after a positional sequence source and one-to-one stages
    (0: there is none)."""
    head = physical[0]
    if not isinstance(head, plan.Source) or has_protocol(head.source):
        return 0
    if not is_positional(head.source):
        return 0
    at = 1
    while at < len(physical) and one_to_one(physical[at]):
        at += 1
    if at == len(physical) or not isinstance(physical[at], streams.Shuffle):
        return 0
    return at


def shuffle_before(physical: list[plan.Node], save: int) -> tuple[int, int]:
    """For a plan whose region starts at the save ``physical[save]``: the index of a
    seeded shuffle that stands before it in ``shuffle`` mode's arrangement (a positional
    sequence source and one-to-one stages before it), with only one-to-one stages and
    partitions after it, and how many of its emissions make one element entering the
    region; ``(0, 0)`` for any other plan."""
    at = _shuffle_at(physical[:save])
    if not at:
        return 0, 0
    per = 1
    for node in physical[at + 1 : save]:
        if isinstance(node, plan.Partition):
            per *= node.size  # no marker reaches it: full batches but the last
        elif not one_to_one(node):
            return 0, 0
    return at, per


def mode_of(physical: list[plan.Node]) -> tuple[Mode, int]:
    """How a run of ``physical`` is resumed, and for ``ordered`` and ``unordered`` the
    index of its save (for ``shuffle``, of its shuffle)."""
    if _positional(physical):
        return "position", 0
    if isinstance(physical[0], streams.Repeated) and all(map(_plain, physical[1:])):
        return "repeat", 0
    if isinstance(physical[0], streams.Mix) and all(map(_plain, physical[1:])):
        return "mix", 0
    shuffle = _shuffled(physical)
    if shuffle:
        return "shuffle", shuffle
    # An ordered region, then per-item stages that pass each item on as they pull it.
    end = len(physical) - 1
    while end > 0 and _plain(physical[end]):
        end -= 1
    if isinstance(physical[end], plan.Release):
        return "unordered", _save_of(physical, end)
    if isinstance(physical[end], plan.Load):
        for index in range(end - 1, 0, -1):
            node = physical[index]
            if _flattens(node):
                break  # a record may hold several items: count what was delivered
            if isinstance(node, plan.Save):
                return "ordered", index
    return "replay", 0


def _save_of(physical: list[plan.Node], load: int) -> int:
    """The index of the save the load ``physical[load]`` ends the region of."""
    return max(i for i in range(load) if isinstance(physical[i], plan.Save))


def _source_label(source: Any) -> str:
    size = ""
    if is_sequence(source):
        try:
            size = f", len={len(source)}"
        except Exception:  # a fingerprint never fails on a source's len()
            size = ""
    return f"Pipe({type(source).__qualname__}{size})"


def fingerprint(node: plan.Node) -> list[str]:
    """One description per stage of the logical plan ``node``: kinds, parameters and the
    names of functions (never their code, so a state survives an edit of a function's
    body); the source by its type and length, not its contents."""
    labels: list[str] = []
    for current in plan.chain(node):
        if isinstance(current, plan.Source):
            labels.append(_source_label(current.source))
        else:
            labels.append(describe(current))
    return labels


def not_resumable(reason: str) -> NotResumable:
    """The error ``state_dict()`` raises for a run that cannot be resumed."""
    return NotResumable(f"tinypl: this run cannot be resumed: {reason}")
