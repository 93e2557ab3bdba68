"""Rendering of plans: ``repr(pipe)``, ``pipe.explain()`` and stage reprs.

Dispatch is by node type through ``functools.singledispatch``, so a new stage kind adds a
renderer here instead of growing methods on the description classes.
"""

from __future__ import annotations

import functools

from . import _plan as plan
from . import _plan_insight as insight
from . import _plan_streams as streams
from ._ops import name_of, short_repr
from ._planner import optimize

__all__ = ["describe", "explain", "short"]


@functools.singledispatch
def _args(node: plan.Node) -> list[str]:
    return []


@_args.register
def _(node: plan.Source) -> list[str]:
    return [short_repr(node.source)]


@_args.register(plan.Map)
@_args.register(plan.Each)
def _(node: plan.Map | plan.Each) -> list[str]:
    return [name_of(node.fn)]


@_args.register
def _(node: plan.Filter) -> list[str]:
    return [name_of(node.pred)]


@_args.register
def _(node: plan.Flatten) -> list[str]:
    return ["eager=True"] if node.eager else []


@_args.register
def _(node: plan.Partition) -> list[str]:
    args = [str(node.size)]
    if node.markers is not None:
        args.append(f"markers={node.markers!r}")
    if node.split_on_marker:
        args.append("split_on_marker=True")
    return args


@_args.register
def _(node: plan.InsertMarker) -> list[str]:
    args = [repr(node.marker)]
    if node.every != 1:
        args.append(f"every={node.every}")
    if not node.after:
        args.append("after=False")
    return args


@_args.register
def _(node: plan.On) -> list[str]:
    args = [repr(node.marker), name_of(node.fn)]
    if node.consume:
        args.append("consume=True")
    return args


@_args.register
def _(node: plan.Until) -> list[str]:
    return [repr(node.marker)]


@_args.register
def _(node: plan.Ratelimit) -> list[str]:
    return [str(node.num), f"{node.period:g}"]


@_args.register
def _(node: plan.Trace) -> list[str]:
    return [node.message if isinstance(node.message, str) else name_of(node.message)]


@_args.register
def _(node: plan.Mutex) -> list[str]:
    return ["auto"] if node.auto else []


@_args.register
def _(node: plan.Thread) -> list[str]:
    args = [str(node.workers)]
    if node.maxsize is not None:
        args.append(f"maxsize={node.maxsize}")
    if node.on_worker_error != "raise":
        args.append(f"on_worker_error={node.on_worker_error!r}")
    return args + _control_args(node)


def _control_args(node: plan.Thread | plan.ProcessOptions) -> list[str]:
    """The control options (issue 13) a thread or process stage was given."""
    args = [] if node.timeout is None else [f"timeout={node.timeout:g}"]
    if node.init is not None:
        args.append(f"init={name_of(node.init)}")
    if isinstance(node, plan.ProcessOptions):
        if node.seed is not None:
            args.append(f"seed={node.seed}")
        if node.restart:
            args.append("restart=True")
    return args


@_args.register
def _(node: plan.ProcessOptions) -> list[str]:
    args = [str(node.workers)]
    if node.maxsize is not None:
        args.append(f"maxsize={node.maxsize}")
    if node.start_method is not None:
        args.append(f"start_method={node.start_method!r}")
    args += _control_args(node)
    if isinstance(node, plan.RunInProcesses):
        args += _shipped(node)
    return args


def _shipped(node: plan.RunInProcesses | plan.RunOnExecutor | plan.RunOnLoop) -> list[str]:
    """The run of per-item ops a process, executor or asyncio stage took over, and the
    ignore_errors scope it is in."""
    return ["runs=" + " -> ".join(op.label for op in node.ops), *_skip_args(node.skip)]


@_args.register
def _(node: plan.ExecutorOptions) -> list[str]:
    args = [type(node.executor).__name__]  # its repr holds an address: not for plans
    if node.maxsize is not None:
        args.append(f"maxsize={node.maxsize}")
    if node.chunksize is not None:
        args.append(f"chunksize={node.chunksize}")
    if isinstance(node, plan.RunOnExecutor):
        args += _shipped(node)
    return args


@_args.register
def _(node: plan.AsyncioOptions) -> list[str]:
    args = [str(node.concurrency)]
    if node.maxsize is not None:
        args.append(f"maxsize={node.maxsize}")
    if node.timeout is not None:
        args.append(f"timeout={node.timeout:g}")
    if isinstance(node, plan.RunOnLoop):
        args += _shipped(node)
    return args


@_args.register
def _(node: plan.Order) -> list[str]:
    return [] if node.maxsize is None else [f"maxsize={node.maxsize}"]


@_args.register
def _(node: plan.Fused) -> list[str]:
    return [" -> ".join(op.label for op in node.ops), *_skip_args(node.skip)]


@_args.register
def _(node: plan.IgnoreErrors) -> list[str]:
    args = [] if node.max_failures is None else [f"max_failures={node.max_failures!r}"]
    return [*args, "log=False"] if not node.log else args


def _skip_args(scope: plan.ErrorScope | None) -> list[str]:
    """How a per-item stage of an ignore_errors scope shows it."""
    if scope is None:
        return []
    budget = scope.max_failures
    return ["ignore_errors" if budget is None else f"ignore_errors({budget!r})"]


@_args.register
def _(node: plan.Save) -> list[str]:
    return ["window=auto" if node.maxsize is None else f"window={node.maxsize}"]


@_args.register
def _(node: streams.Shuffle) -> list[str]:
    return [str(node.buffer_size)] + ([] if node.seed is None else [f"seed={node.seed}"])


@_args.register(streams.Take)
@_args.register(streams.Skip)
@_args.register(streams.Prefetch)
def _(node: streams.Take | streams.Skip | streams.Prefetch) -> list[str]:
    return [str(node.n)]


@_args.register
def _(node: streams.Shard) -> list[str]:
    return [str(node.index), str(node.count)]


@_args.register(streams.Zip)
@_args.register(streams.Concat)
def _(node: streams.Zip | streams.Concat) -> list[str]:
    return [short(other) for other in node.others]


@_args.register
def _(node: streams.Mix) -> list[str]:
    args = [f"[{', '.join(short(i) for i in node.inputs)}]"]
    if node.weights is not None:
        args.append(f"weights={list(node.weights)!r}")
    if node.seed is not None:
        args.append(f"seed={node.seed}")
    if node.stop != "first":
        args.append(f"stop={node.stop!r}")
    return args


@_args.register(streams.Repeat)
@_args.register(streams.Repeated)
def _(node: streams.Repeat | streams.Repeated) -> list[str]:
    args = [] if node.times is None else [str(node.times)]
    if node.marker is not None:
        args.append(f"marker={node.marker!r}")
    if isinstance(node, streams.Repeated):
        args.insert(0, short(node.body))
    return args


@_args.register
def _(node: streams.ReadAhead) -> list[str]:
    return [str(node.maxsize)]


@_args.register
def _(node: insight.Progress) -> list[str]:
    args = [] if node.desc is None else [repr(node.desc)]
    return args + ([] if node.total is None else [f"total={node.total}"])


@_args.register
def _(node: insight.Report) -> list[str]:
    return [f"every={node.every:g}"] + ([] if node.to is None else [f"to={name_of(node.to)}"])


_LABELS: dict[type[plan.Node], str] = {
    streams.Repeated: "repeat",
    streams.ReadAhead: "prefetch",
    plan.Mutex: "mutex",
    plan.Source: "Pipe",
    plan.RunInProcesses: "process",
    plan.InsertMarker: "insert_marker",
    plan.Fused: "fused",
    plan.Save: "order.save",
    plan.Load: "order.load",
    plan.Release: "order.release",
}


def describe(node: plan.Node) -> str:
    """One node as ``name(args)``."""
    label = _LABELS.get(type(node), plan.stage_name(node))
    return f"{label}({', '.join(_args(node))})"


def short(node: plan.Node) -> str:
    """The fluent spelling of a plan: ``Pipe(range(0, 10)).map(f).thread(4)``."""
    return ".".join(describe(n) for n in plan.chain(node))


_NOTES: dict[type[plan.Node], str] = {
    plan.Mutex: "one thread at a time pulls what is above",
    plan.Save: "numbers items for the load below",
    plan.Load: "restores the order numbered above",
    plan.Release: "hands items out as they complete",
    plan.Fused: "one step per item",
    streams.Repeated: "each pass runs the plan inside afresh",
}


def explain(
    node: plan.Node, *, optimized: bool = True, physical: list[plan.Node] | None = None
) -> str:
    """A multi-line rendering of a plan, source first; ``optimized`` shows what runs
    (``physical``, when given: the nodes a run builds)."""
    if not optimized:
        nodes = plan.chain(node)
    else:
        nodes = plan.chain(optimize(node)) if physical is None else physical
    title = "physical plan (what iter() builds)" if optimized else "logical plan (as written)"
    lines = [title]
    in_threads = _thread_members(nodes) if optimized else set()
    for index, current in enumerate(nodes):
        text = f"{index:>3}  {describe(current)}"
        notes = []
        if optimized and isinstance(current, streams.ReadAhead):
            notes.append("one thread reads ahead through the stages marked *")
        elif optimized and isinstance(current, plan.Thread):
            notes.append(f"{current.workers} threads pull the stages marked *")
        if optimized and isinstance(current, plan.RunInProcesses):
            notes.append(f"{current.workers} worker processes; a feeder thread pulls above")
        if optimized and isinstance(current, plan.RunOnExecutor):
            notes.append("chunks run on the executor; a feeder thread pulls above")
        if optimized and isinstance(current, plan.Save) and current.released:
            notes.append("numbers items so the run can tell its state_dict()")
        elif optimized and type(current) in _NOTES:
            notes.append(_NOTES[type(current)])
        if id(current) in in_threads:
            text = text.replace(f"{index:>3}  ", f"{index:>3} *", 1)
        if notes:
            text += "    # " + "; ".join(notes)
        lines.append(text)
    return "\n".join(lines)


def _thread_members(nodes: list[plan.Node]) -> set[int]:
    """Nodes that worker threads execute: those between a thread stage and the boundary
    below it (the previous thread stage or the source)."""
    members: set[int] = set()
    for index, node in enumerate(nodes):
        if isinstance(node, plan.Thread):
            below = index - 1
            while below > 0 and not isinstance(nodes[below], plan.CONCURRENT):
                members.add(id(nodes[below]))
                below -= 1
    return members
