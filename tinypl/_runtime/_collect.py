"""``stage.stats()`` and ``stage.explain()`` on a live run (issue 12): the probes of
``_stats`` read along the run, rows assembled, the bottleneck named.

The bottleneck is the stage with the highest score: a thread or process stage scores its
utilization (its workers' busy time over ``workers x elapsed``), any other stage the
share of the elapsed time spent in it (``busy_s / elapsed``).
"""

from __future__ import annotations

import threading
from typing import Any

from .. import _plan as plan
from .._stats import Bottleneck, StageStats, Stats
from . import _stage
from ._stage import Stage
from ._stats import (
    ChunkProbe,
    CountProbe,
    FinalView,
    Flow,
    FusedProbe,
    LoopProbe,
    Probe,
    Row,
    SourceProbe,
    ThreadProbe,
    clock,
    counted_raw,
    final_view,
)

__all__ = ["attach", "collect", "explain_live", "knows_out", "prepare", "start_timing"]

#: Stages that pass every item on: their figures are those of the stage below.
_PASSING: tuple[type[plan.Node], ...] = (plan.Mutex, plan.Save)
#: Stages that count what they take in, so the stage below them need not count.
_COUNTING_IN: tuple[type[plan.Node], ...] = (
    plan.Fused,
    plan.Thread,
    plan.RunInProcesses,
    plan.RunOnExecutor,
)
_WORKERS = (ThreadProbe, ChunkProbe)
#: Below this score no stage limits the run: the consumer does.
IDLE = 0.05
_lock = threading.Lock()


def name_of(node: plan.Node | None) -> str:
    from .._explain import describe  # a rendering, as Stage.__repr__ uses it

    return "source" if node is None else describe(node)


def knows_out(stage: Stage[Any]) -> bool:
    """Whether ``stage`` can tell how many items left it, so that the stage built on it
    does not have to count them."""
    probe = stage._probe
    if isinstance(stage, FinalView):
        return True  # it counts what reaches the consumer
    if probe is None:
        return False
    if isinstance(probe, SourceProbe):
        return probe.sized or probe.counter is not None
    if isinstance(probe, CountProbe):
        return probe.counter is not None
    if type(probe) is Probe:  # passes on what the stage below it gives
        return isinstance(stage._upstream, Stage) and knows_out(stage._upstream)
    return True


def attach(
    stage: Stage[Any], upstream: Stage[Any] | None, following: plan.Node | None
) -> Stage[Any]:
    """Gives a freshly built ``stage`` a probe if its builder gave it none; ``following``
    is the node to be built on it (``None``: it is the run's last stage; ``upstream``
    ``None``: the run is its source alone)."""
    probe = stage._probe
    if upstream is None:
        if isinstance(probe, SourceProbe) and not probe.sized:
            return final_view(stage, "source")  # nobody else would count its items
        return stage
    if stage is upstream or probe is not None:
        return stage
    node = stage._node
    name = name_of(node)
    if isinstance(node, _PASSING):
        stage._probe = Probe(name)
        return stage
    if following is None:
        if _plain_view(stage):
            return final_view(stage, name)
        stage._probe = CountProbe(name)
        return stage
    counter = None if isinstance(following, _COUNTING_IN) else counted_raw(stage)
    stage._probe = CountProbe(name, counter)
    return stage


def prepare(stage: Stage[Any], node: plan.Node) -> None:
    """Before ``node`` is built on ``stage``: when ``node`` does not count what it takes
    in and ``stage`` cannot tell what it gives out, count it on the way."""
    if isinstance(node, _COUNTING_IN) or knows_out(stage):
        return
    probe = stage._probe
    counter = counted_raw(stage)
    if isinstance(probe, SourceProbe):
        probe.counter = counter
    else:
        stage._probe = CountProbe(name_of(stage._node), counter)


def _plain_view(stage: Stage[Any]) -> bool:
    """A stage whose class adds nothing a ``FinalView`` would hide (workers, fill)."""
    from ._stage import ChainStage, SourceStage, ViewStage, WorkerStage

    if isinstance(stage, WorkerStage):
        return False
    return isinstance(stage, (ViewStage, ChainStage, SourceStage))


def _stages(stage: Stage[Any]) -> list[Stage[Any]]:
    chain: list[Stage[Any]] = []
    current: Any = stage
    while isinstance(current, Stage):
        if not current._wrapper:
            chain.append(current)
        current = current._upstream
    return chain[::-1]


def start_timing(stage: Stage[Any]) -> None:
    """Switch the fused runs of ``stage`` and upstream of it to their timed form, where
    that is safe: a run not started, or suspended and asked from the thread that built it
    (a run is never closed under a consumer in another thread)."""
    for current in _stages(stage):
        probe = current._probe
        if isinstance(probe, FusedProbe) and probe.runs is not None:
            probe.runs.time_it(threading.get_ident() == probe.thread)


def _assemble(stage: Stage[Any]) -> list[tuple[Stage[Any], Probe, list[Row]]]:
    below = Flow(0, 0)
    done: list[tuple[Stage[Any], Probe, list[Row]]] = []
    last: Row | None = None
    for current in _stages(stage):
        probe = current._probe or Probe(name_of(current._node))
        counted = probe.counted_in()
        if counted is not None and below.items is None:
            below.items = counted
            _fill(done, counted)
        rows, below = probe.rows(below)
        if _numbering(current._node):
            rows = []  # a checkpoint's numbering of an unordered region: not a stage of the pipe
        if rows and rows[0].wait and last is not None and not _is_worker(done[-1][1]):
            _sync_below(done).fields["busy_s"] += rows[0].wait
        done.append((current, probe, rows))
        if rows:
            last = rows[-1]
    if last is not None and last.fields["items_out"] is None:
        last.fields["items_out"] = below.items or 0
    for _, _, rows in done:
        for row in rows:
            for key in ("items_in", "items_out"):
                if row.fields[key] is None:
                    row.fields[key] = 0
    _group(done)
    return done


def _numbering(node: plan.Node | None) -> bool:
    return isinstance(node, plan.Save) and node.released


def _fill(done: list[tuple[Stage[Any], Probe, list[Row]]], counted: int) -> None:
    """The stages below that could not tell their items out, down to the one that made
    the count unknown: they gave out what the stage above them counted coming in."""
    for _, probe, rows in reversed(done):
        for row in reversed(rows):
            if row.fields["items_out"] is not None:
                return
            row.fields["items_out"] = counted
            if type(probe) is Probe or row.fields["name"] == "source":
                row.fields["items_in"] = counted  # it passes everything on


def _is_worker(probe: Probe) -> bool:
    return isinstance(probe, _WORKERS)


def _sync_below(done: list[tuple[Stage[Any], Probe, list[Row]]]) -> Row:
    """The row whose pulls a timed run's waits were spent in: the nearest stage below
    that is not a pass-through (a source behind a mutex)."""
    for _, probe, rows in reversed(done):
        if type(probe) is not Probe and rows:
            found: Row = rows[-1]
            return found
    last: Row = done[-1][2][-1]
    return last


def _group(done: list[tuple[Stage[Any], Probe, list[Row]]]) -> None:
    """Marks the rows the threads of a thread stage run (those down to the stage below
    that has workers of its own) with that stage's row."""
    for index, (_, probe, rows) in enumerate(done):
        if not isinstance(probe, ThreadProbe) or isinstance(probe, LoopProbe):
            continue
        for _, below, below_rows in reversed(done[:index]):
            if _is_worker(below):
                break
            for row in below_rows:
                row.group = rows[0]


def _span(probe: Probe, start: float, end: float) -> float:
    begin = probe.started if probe.started is not None else start
    finish = probe.ended if probe.ended is not None else end
    return max(finish - begin, 1e-9)


def collect(stage: Stage[Any]) -> Stats:
    """A snapshot of the run ``stage`` belongs to, up to ``stage``."""
    start_timing(stage)
    done = _assemble(stage)
    start = min(probe.built for _, probe, _ in done)
    end = _end(done)
    elapsed = max(end - start, 1e-9)
    for _, probe, rows in done:
        if _is_worker(probe):
            _utilization(probe, rows, done, _span(probe, start, end))
    rows = [row for _, _, rows in done for row in rows]
    values = _monotone(stage, [StageStats(**row.fields) for row in rows], elapsed)
    delivered = values[-1].items_out if values else 0
    neck = _bottleneck(rows, values, elapsed)
    return Stats(rows=values, elapsed_s=_monotone_elapsed(stage, elapsed), delivered=delivered,
                 bottleneck=neck)  # fmt: skip


def _end(done: list[tuple[Stage[Any], Probe, list[Row]]]) -> float:
    """When the run ended: its last stage's end (a stage that passes items on ends with
    the one below it), else when it was closed; else now."""
    final = done[-1][1]
    for _, probe, _ in reversed(done):
        ended: float | None = probe.ended
        if ended is not None:
            return ended
        if type(probe) is not Probe:
            break
    return final.closed_at or clock()


def _utilization(
    probe: Probe, rows: list[Row], done: list[tuple[Stage[Any], Probe, list[Row]]], span: float
) -> None:
    row = rows[-1]  # a process stage's worker figures sit on its last step's row
    if isinstance(probe, LoopProbe):
        return
    if isinstance(probe, ChunkProbe):
        busy = sum(r.fields["busy_s"] for r in rows)
        row.fields["utilization"] = min(1.0, busy / ((row.fields["workers"] or 1) * span))
        return
    if isinstance(probe, ThreadProbe):
        row.fields["busy_s"] = sum(
            r.fields["busy_s"] for _, p, rs in done for r in rs if r.group is row
            and isinstance(p, FusedProbe)
        )  # fmt: skip
    workers = row.fields["workers"] or 1
    row.fields["utilization"] = min(1.0, row.fields["busy_s"] / (workers * span))


_CUMULATIVE = ("items_in", "items_out", "markers", "errors", "busy_s", "wait_s")


def _monotone(stage: Stage[Any], values: list[StageStats], elapsed: float) -> list[StageStats]:
    """Each cumulative figure at least what an earlier snapshot of ``stage`` showed
    (racy reads may see a stage's counters a moment apart)."""
    import attrs

    with _lock:
        previous: list[StageStats] | None = stage.__dict__.get("_insight_last")
        if previous is not None and len(previous) == len(values):
            values = [
                attrs.evolve(new, **_larger(new, old))
                for new, old in zip(values, previous, strict=True)
            ]
        stage.__dict__["_insight_last"] = values
    return values


def _larger(new: StageStats, old: StageStats) -> dict[str, Any]:
    both = [
        key
        for key in _CUMULATIVE
        if getattr(new, key) is not None and getattr(old, key) is not None
    ]
    return {key: max(getattr(new, key), getattr(old, key)) for key in both}


def _monotone_elapsed(stage: Stage[Any], elapsed: float) -> float:
    with _lock:
        elapsed = max(elapsed, stage.__dict__.get("_insight_elapsed", 0.0))
        stage.__dict__["_insight_elapsed"] = elapsed
    return elapsed


def _bottleneck(rows: list[Row], values: list[StageStats], elapsed: float) -> Bottleneck | None:
    best: tuple[float, Bottleneck] | None = None
    for row, value in zip(rows, values, strict=True):
        if value.utilization is not None:
            score = value.utilization
            name = _busiest(rows, values, row) or value.name
            reason = (f"workers busy {score:.0%} of the time; more workers or processes"
                      " would help")  # fmt: skip
        elif row.group is None or value.name == "source":
            score = min(1.0, value.busy_s / elapsed)
            name = value.name
            pulled = "consumer waits" if row.group is None else "its threads wait"
            reason = f"{pulled} {score:.0%} on it"
        else:
            continue
        if score > 0 and (best is None or score > best[0]):
            best = (score, Bottleneck(name, reason))
    if best is not None and best[0] < IDLE:
        return Bottleneck("consumer", f"no stage is busy more than {best[0]:.0%} of the time")
    return None if best is None else best[1]


def _busiest(rows: list[Row], values: list[StageStats], group: Row) -> str | None:
    """``"map(f) in thread(4)"``: the step of a thread stage's run that took the most."""
    steps = group.where is not None  # a process stage: its rows are named by step
    members = [(v.busy_s, v.name) for r, v in zip(rows, values, strict=True)
               if r.group is group or (steps and r is group)]  # fmt: skip
    members = [m for m in members if m[0] > 0 and m[1] != "source"]
    if not members:
        return None
    if steps:
        return max(members)[1]
    name = next(v.name for r, v in zip(rows, values, strict=True) if r is group)
    return f"{max(members)[1]} in {name}"


def explain_live(stage: Stage[Any]) -> str:
    """The physical plan of the run, each stage with its live figures beside it."""
    stats = collect(stage)
    values = iter(stats.rows)
    lines = [f"live run ({stats.delivered} items in {stats.elapsed_s:.3f} s)"]
    shown = [entry for entry in _assemble(stage) if not _numbering(entry[0]._node)]
    for index, (current, _, rows) in enumerate(shown):
        lines.append(f"{index:>3}  {name_of(current._node)}")
        for _ in rows:
            lines.append("       " + _figures(next(values)))
    lines.append(f"bottleneck: {stats.bottleneck or 'not known yet'}")
    return "\n".join(lines)


def _figures(row: StageStats) -> str:
    text = f"{row.name}: in {row.items_in}, out {row.items_out}"
    if row.markers:
        text += f", markers {row.markers}"
    if row.errors:
        text += f", errors {row.errors}"
    text += f", busy {row.busy_s:.3f} s"
    if row.utilization is not None:
        text += f", {row.workers} workers {row.utilization:.0%} busy"
        text += f", queue {row.mean_fill or 0:.1f}/{row.capacity}"
        text += f", consumer waited {row.wait_s or 0:.3f} s"
    return text


class _Insight:
    """``Stage.stats()`` and ``Stage.explain()`` (see ``_stage.insight``)."""

    collect = staticmethod(collect)
    explain_live = staticmethod(explain_live)


_stage.insight = _Insight()
