"""Plan rewriting: from what the user described to what the runtime builds.

- ``order``: each ``Order`` becomes a ``Save`` just below the per-item stages that the
  region's first concurrent stage runs, and a ``Load`` in its place (or disappears when its
  region has no concurrent stage).
- ``guard``: a ``Mutex(auto=True)`` goes below the per-item stages a thread stage's workers
  pull through, so a generator or other stateful stage is never entered by two threads.
- ``repeat``: the plan above the last ``Repeat`` becomes the body of a ``Repeated`` that
  starts the plan; ``prefetch`` becomes a one-thread ``ReadAhead``.
- ``fuse``: runs of map/filter/each (inside an ordered region also flatten/on) become one
  ``Fused`` node, compiled to nested builtins or to one step per item.
"""

from __future__ import annotations

import attrs

from ._ops import OnOp, Op, is_async, name_of
from ._plan import (
    CONCURRENT,
    SHIPPABLE,
    Asyncio,
    AsyncSource,
    Each,
    ErrorScope,
    ErrorToken,
    Executor,
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
    Release,
    RunInProcesses,
    RunOnExecutor,
    RunOnLoop,
    Save,
    Source,
    Thread,
    Trace,
    chain,
    stage_name,
)
from ._plan_streams import Prefetch, ReadAhead, Repeat, Repeated
from ._validate import is_async_iterable

__all__ = ["EXECUTOR_MAXSIZE", "optimize", "shippable_run", "validate"]

# Stages that act on one item at a time with no state across items.
_STATELESS: tuple[type[Node], ...] = (Map, Filter, Each, On, Trace, Fused)
# Stages that can sit inside an ordered region, acting on each numbered item's group.
_GROUPABLE: tuple[type[Node], ...] = (*_STATELESS, Flatten, Mutex, IgnoreErrors)
# Stages whose output may be pulled from several threads at once.
_THREAD_SAFE: tuple[type[Node], ...] = (
    Thread, Mutex, Save, RunInProcesses, RunOnExecutor, RunOnLoop
)  # fmt: skip


def validate(plan: Node) -> None:
    """Raise ``ValueError`` when ``plan`` cannot run: an order that cannot be restored
    (a stateful stage between a concurrent stage and its ``order()``), or a process stage
    with no per-item stage to run. Builders call it where a user adds such a stage."""
    _checked(plan)


def optimize(plan: Node, numbered: bool = False) -> Node:
    """The physical plan for ``plan`` (raises as ``validate`` does); ``numbered``: with
    the concurrent stages at its end numbered for a checkpoint (``Release``)."""
    nodes = _ship_to_processes(_checked(_cut_repeats(plan), numbered))
    nodes = _run_on_loops(nodes)
    nodes = _guard_threads(_scope_errors(_fuse(_read_ahead(nodes))))
    return _relink(nodes)


def _cut_repeats(plan: Node) -> Node:
    """The plan from its last ``repeat`` on: what is above it becomes the body that each
    pass runs afresh (optimized when it is materialized)."""
    nodes = chain(plan)
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if isinstance(node, Repeat):
            start = Repeated(node.upstream, node.times, node.marker)
            return _relink([start, *nodes[index + 1 :]])
    return plan


def _read_ahead(nodes: list[Node]) -> list[Node]:
    """Each ``prefetch(n)`` becomes a one-thread stage with a queue of ``n`` items: one
    worker keeps the order, and the stages above run in its thread."""
    return [
        ReadAhead(node.upstream, 1, node.n) if isinstance(node, Prefetch) else node
        for node in nodes
    ]


def _checked(plan: Node, numbered: bool = False) -> list[Node]:
    """The nodes of ``plan`` with the order placed, once every check has passed."""
    nodes = chain(plan)
    for index, node in enumerate(nodes):
        # As written: a per-item stage is shipped only when it stands directly before.
        if isinstance(node, Process) and not shippable_run(nodes[:index]):
            raise ValueError(
                "process: no map, filter, each or flatten stage stands directly before"
                " process(); there is nothing to run in the worker processes"
            )
        if isinstance(node, Executor) and not shippable_run(nodes[:index]):
            raise ValueError(
                "executor: no map, filter, each or flatten stage stands directly before"
                " executor(); there is nothing to run on the executor"
            )
    return _place_order(nodes, numbered)


def _relink(nodes: list[Node]) -> Node:
    current = nodes[0]
    for node in nodes[1:]:
        current = attrs.evolve(node, upstream=current)  # type: ignore[misc]
    return current


def _place_order(nodes: list[Node], numbered: bool = False) -> list[Node]:
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
        start = _region_start(out, concurrent[0], region)
        for inner in out[start:]:
            if not isinstance(inner, (*_GROUPABLE, *CONCURRENT)):
                raise ValueError(
                    f"order: cannot restore the order across the {stage_name(inner)} stage,"
                    " which sits between a concurrent stage and order(); call .order()"
                    f" before {stage_name(inner)}()"
                )
        window = _room(out[start:]) if node.maxsize is None else node.maxsize
        out.insert(start, Save(out[start - 1], window, adaptive=node.maxsize is None))
        out.append(Load(out[-1]))
        region = len(out)
    return _release_last(out, region) if numbered else out


def _region_start(nodes: list[Node], first: int, region: int) -> int:
    """Where the numbering of a region whose first concurrent stage is ``nodes[first]``
    starts: below the per-item stages that stage runs."""
    start = first
    while start - 1 >= region and _joins_group(nodes, start - 1, region):
        start -= 1
    return start


def _room(nodes: list[Node]) -> int:
    """Room for everything the concurrent stages among ``nodes`` can hold at once."""
    window = 0
    for inner in nodes:
        if isinstance(inner, (Thread, Process)):
            window += inner.workers + inner.queue_size
        elif isinstance(inner, Executor):
            # Workers are known only at run time; the feeder widens the window.
            window += 2 * (inner.maxsize or EXECUTOR_MAXSIZE)
        elif isinstance(inner, Asyncio):
            window += inner.concurrency + inner.queue_size
    return window


#: How many times what its stages hold a released region may run ahead of its oldest
#: unfinished element (and the least): a straggler holds the region up only that far.
RELEASE_SLACK = (4, 64)


def _release_last(out: list[Node], region: int) -> list[Node]:
    """The concurrent stages after the last ordered region numbered like one, but handed
    out as they complete (``Release``), so a checkpoint can tell what was delivered;
    ``out`` as it is when they have none or a stateful stage stands between them."""
    concurrent = [i for i in range(region, len(out)) if isinstance(out[i], CONCURRENT)]
    if not concurrent:
        return out
    start = _region_start(out, concurrent[0], region)
    end = concurrent[-1] + 1
    if not all(isinstance(inner, (*_GROUPABLE, *CONCURRENT)) for inner in out[start:end]):
        return out
    factor, least = RELEASE_SLACK
    window = max(least, factor * _room(out[start:end]))
    save = Save(out[start - 1], window, adaptive=True, released=True)
    return [*out[:start], save, *out[start:end], Release(out[end - 1]), *out[end:]]


#: Chunks in flight on an executor whose worker count cannot be known.
EXECUTOR_MAXSIZE = 8
_SHIPPED: dict[type[Node], type[RunInProcesses | RunOnExecutor]] = {
    Process: RunInProcesses,
    Executor: RunOnExecutor,
}


def _ship_to_processes(nodes: list[Node]) -> list[Node]:
    """Move the per-item run directly above each process or executor stage into it."""
    out: list[Node] = []
    for node in nodes:
        shipped = _SHIPPED.get(type(node))
        if shipped is not None:
            assert isinstance(node, (Process, Executor))
            start = len(out) - shippable_run(out)
            assert start < len(out), "checked by _checked"
            ops = tuple(_op(n) for n in out[start:])
            del out[start:]
            out.append(shipped(**attrs.asdict(node, recurse=False), ops=ops))
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
    assert out[0].upstream is None, "a plan starts with a source, a mix or a repeat"
    return out


# -- asyncio stages (issue 16) -----------------------------------------------------------


def _run_on_loops(nodes: list[Node]) -> list[Node]:
    """Move the per-item run directly above each asyncio stage into it, then refuse any
    ``async def`` function left where nothing would await it."""
    first = nodes[0]
    if type(first) is Source and is_async_iterable(first.source):
        nodes = [AsyncSource(first.source), *nodes[1:]]
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Asyncio):
            start = len(out) - shippable_run(out)
            run = tuple(_op(n) for n in out[start:])
            del out[start:]
            out.append(RunOnLoop(**attrs.asdict(node, recurse=False), ops=run))
        else:
            out.append(node)
    _refuse_unawaited(out)
    return out


def _refuse_unawaited(nodes: list[Node]) -> None:
    """Raise ``TypeError`` for an ``async def`` function where nothing would await it."""
    for node in nodes:
        if isinstance(node, (RunInProcesses, RunOnExecutor)):
            ops: tuple[Op, ...] = node.ops
        elif isinstance(node, PerItem):
            ops = (node.op,)
        else:
            continue
        for op in ops:
            fn = getattr(op, "fn", None)
            if fn is None or not is_async(fn):
                continue
            if isinstance(op, OnOp):
                raise TypeError(
                    f"{op.label}: {name_of(fn)} is an async function, but on() calls its"
                    " function without awaiting it, even in an asyncio region; pass a plain"
                    " function"
                )
            raise TypeError(
                f"{op.label}: {name_of(fn)} is an async function, but no .asyncio() stage"
                f" runs {op.kind}(), so nothing would await it; add .asyncio(n) after"
                f" it (e.g. .{op.kind}({name_of(fn)}).asyncio(8)) to run it on an event"
                " loop with n items in flight"
            )


# -- control (issue 13) ------------------------------------------------------------------

_SKIPPABLE = (Fused, RunInProcesses, RunOnExecutor, RunOnLoop)


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
