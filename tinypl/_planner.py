"""Plan rewriting: from what the user described to what the runtime builds.

- ``order``: each ``Order`` becomes a ``Save`` just below the per-item stages that the
  region's first concurrent stage runs, and a ``Load`` in its place (or disappears when its
  region has no concurrent stage).
- ``guard``: a ``Mutex(auto=True)`` goes below the per-item stages a thread stage's workers
  pull through, so a generator or other stateful stage is never entered by two threads.
- ``fuse``: runs of map/filter/each (inside an ordered region also flatten/on) become one
  ``Fused`` node, compiled to nested builtins or to one step per item.
"""

from __future__ import annotations

import attrs

from ._ops import Op
from ._plan import (
    CONCURRENT,
    SHIPPABLE,
    Each,
    ErrorScope,
    ErrorToken,
    Filter,
    Flatten,
    Fused,
    IgnoreErrors,
    Load,
    Map,
    Mutex,
    Node,
    On,
    Order,
    PerItem,
    Process,
    RunInProcesses,
    Save,
    Source,
    Thread,
    Trace,
    chain,
    stage_name,
)

__all__ = ["optimize", "shippable_run", "validate"]

# Stages that act on one item at a time with no state across items.
_STATELESS: tuple[type[Node], ...] = (Map, Filter, Each, On, Trace, Fused)
# Stages that can sit inside an ordered region, acting on each numbered item's group.
_GROUPABLE: tuple[type[Node], ...] = (*_STATELESS, Flatten, Mutex, IgnoreErrors)
# Stages whose output may be pulled from several threads at once.
_THREAD_SAFE: tuple[type[Node], ...] = (Thread, Mutex, Save, RunInProcesses)


def validate(plan: Node) -> None:
    """Raise ``ValueError`` when ``plan`` cannot run: an order that cannot be restored
    (a stateful stage between a concurrent stage and its ``order()``), or a process stage
    with no per-item stage to run. Builders call it where a user adds such a stage."""
    _checked(plan)


def optimize(plan: Node) -> Node:
    """The physical plan for ``plan`` (raises as ``validate`` does)."""
    nodes = _ship_to_processes(_checked(plan))
    nodes = _guard_threads(_scope_errors(_fuse(nodes)))
    return _relink(nodes)


def _checked(plan: Node) -> list[Node]:
    """The nodes of ``plan`` with the order placed, once every check has passed."""
    nodes = chain(plan)
    for index, node in enumerate(nodes):
        # As written: a per-item stage is shipped only when it stands directly before.
        if isinstance(node, Process) and not shippable_run(nodes[:index]):
            raise ValueError(
                "process: no map, filter, each or flatten stage stands directly before"
                " process(); there is nothing to run in the worker processes"
            )
    return _place_order(nodes)


def _relink(nodes: list[Node]) -> Node:
    current = nodes[0]
    for node in nodes[1:]:
        current = attrs.evolve(node, upstream=current)  # type: ignore[misc]
    return current


def _place_order(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    region = 1  # index in ``out`` where the current ordered region starts
    for node in nodes:
        if not isinstance(node, Order):
            if isinstance(node, Load):
                region = len(out) + 1
            out.append(node)
            continue
        concurrent = [i for i in range(region, len(out)) if isinstance(out[i], CONCURRENT)]
        if not concurrent:
            continue  # nothing reorders items here: order() is a no-op
        start = concurrent[0]
        while start - 1 >= region and _joins_group(out, start - 1, region):
            start -= 1
        for inner in out[start:]:
            if not isinstance(inner, (*_GROUPABLE, *CONCURRENT)):
                raise ValueError(
                    f"order: cannot restore the order across the {stage_name(inner)} stage,"
                    " which sits between a concurrent stage and order(); call .order()"
                    f" before {stage_name(inner)}()"
                )
        window = node.maxsize
        if window is None:
            # Room for everything the concurrent stages can hold at once.
            window = 0
            for inner in out[start:]:
                if isinstance(inner, (Thread, Process)):
                    window += inner.workers + inner.queue_size
        out.insert(start, Save(out[start - 1], window, adaptive=node.maxsize is None))
        out.append(Load(out[-1]))
        region = len(out)
    return out


def _ship_to_processes(nodes: list[Node]) -> list[Node]:
    """Move the per-item run directly above each process stage into it."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Process):
            start = len(out) - shippable_run(out)
            assert start < len(out), "checked by _checked"
            ops = tuple(_op(n) for n in out[start:])
            del out[start:]
            out.append(RunInProcesses(**attrs.asdict(node, recurse=False), ops=ops))
        else:
            out.append(node)
    return out


def _joins_group(nodes: list[Node], index: int, region: int) -> bool:
    """Whether ``nodes[index]`` can act per numbered item inside an ordered region.

    A flatten joins only when per-item work stands below it (``.map(load).flatten()``:
    ``load`` then runs concurrently); directly after the source or a stateful stage it
    stays outside, or all elements of one item would go to a single worker.
    """
    node = nodes[index]
    if isinstance(node, Flatten):
        return index - 1 >= region and isinstance(nodes[index - 1], _STATELESS)
    return isinstance(node, _GROUPABLE)


def shippable_run(nodes: list[Node]) -> int:
    """How many nodes at the end of ``nodes`` a process stage appended there would run
    in its workers: map/filter/each, and a flatten only with such work below it (an
    item's elements would otherwise all go to one worker)."""
    start = len(nodes)
    while start - 1 >= 1 and isinstance(nodes[start - 1], SHIPPABLE):
        if isinstance(nodes[start - 1], Flatten) and not (
            start - 2 >= 1
            and isinstance(nodes[start - 2], SHIPPABLE)
            and not isinstance(nodes[start - 2], Flatten)
        ):
            break
        start -= 1
    return len(nodes) - start


def _guard_threads(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    tagged = False
    for node in nodes:
        if isinstance(node, Save):
            tagged = True
        elif isinstance(node, Load):
            tagged = False
        if isinstance(node, Thread):
            # Inside an ordered region flatten acts per numbered item, so it is stateless.
            stateless = (*_STATELESS, Flatten) if tagged else _STATELESS
            start = len(out)
            while start - 1 >= 1 and isinstance(out[start - 1], stateless):
                start -= 1
                fused = out[start]
                if isinstance(fused, Fused):  # its worker threads pull it at once
                    out[start] = attrs.evolve(fused, shared=True)
            below = out[start - 1]
            if not isinstance(below, _THREAD_SAFE):
                out.insert(start, Mutex(below, auto=True))
        out.append(node)
    return out


_FUSABLE = (Map, Filter, Each)
# Inside an ordered region, where they act on each numbered item's group.
_GROUP_ONLY = (Flatten, On)


def _op(node: Node) -> Op:
    assert isinstance(node, PerItem)
    return node.op


def _fuse(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    ops: list[Op] = []
    tagged = False

    def flush() -> None:
        if ops:
            out.append(Fused(out[-1], tuple(ops)))
            ops.clear()

    for node in nodes:
        if isinstance(node, _FUSABLE) or (
            tagged and isinstance(node, _GROUP_ONLY) and not getattr(node, "eager", False)
        ):
            ops.append(_op(node))
            continue
        flush()
        if isinstance(node, Save):
            tagged = True
        elif isinstance(node, Load):
            tagged = False
        out.append(node)
    flush()
    assert isinstance(out[0], Source)
    return out


# -- control (issue 13) ------------------------------------------------------------------

_SKIPPABLE = (Fused, RunInProcesses)


def _scope_errors(nodes: list[Node]) -> list[Node]:
    """Each ``IgnoreErrors`` marks the per-item nodes of its scope (back to the previous
    one, or the source) with one ``ErrorScope`` and leaves the plan: items are dropped
    where they fail, not where the stage was written."""
    out: list[Node] = []
    start = 0  # index in ``out`` where the current scope starts
    for node in nodes:
        if not isinstance(node, IgnoreErrors):
            out.append(node)
            continue
        token = ErrorToken()
        first = True
        for index in range(start, len(out)):
            inner = out[index]
            if isinstance(inner, _SKIPPABLE):
                scope = ErrorScope(token, node.max_failures, node.log, first)
                out[index] = attrs.evolve(inner, skip=scope)
                first = False
        start = len(out)
    return out
