"""Checkpoint and resume: a run's state as small plain data, and runs started from one.

Every run of a ``Pipe`` starts here (``start``), so that ``run.state_dict()`` can tell
where it stands. How a run is resumed depends on its physical plan (see
``_checkpoint_plan.mode_of``):

- ``position``: a sequence (or protocol) source under sync stages that pull lazily and
  hold nothing between items (per-item stages, flatten, partition without markers,
  take, skip, shard), so after the consumer's item the source has yielded exactly what
  led to it: the state is the source's position, read for free from its iterator
  (``length_hint`` on the builtin iterators), plus each flatten's place in its current
  item and each take's and skip's count; a resumed run starts the source there (one
  element earlier when a flatten re-reads its item). Nothing is added per item: the
  sync chain keeps its builtin ``map``/``filter`` speed.
- ``ordered``: the plan ends with an ordered region (``.order()``) holding no flatten,
  so each sequence number the save issued is one element upstream of it and one
  element out of the load. The state is the count of numbers the load handed out; a
  resumed run replays the (cheap) stages upstream of the save, drops that many elements
  there, and runs the concurrent region only from that point on: items in flight are
  recomputed, never saved.
- ``shuffle``: a seeded shuffle over a positional sequence source, with one-to-one
  stages before it and per-item stages after it (``_checkpoint_shuffle``): the state is
  the source's position, the source positions the shuffle's buffer holds and its
  generator's state; a resumed run re-reads only those positions.
- ``replay``: any other plan whose every stage is deterministic (seeded shuffles and
  mixes, repeat, partition, flatten, zip, concat ...). The state is the count of
  elements (items and markers) the run delivered; a resumed run drops that many.

Markers after the last delivered item belong to the resumed run in every mode: the
consumer's view stops at an item, so no count includes the markers after it.
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from . import _plan as plan
from . import _plan_streams as streams
from ._checkpoint_checks import (
    VERSION,
    check,
    count_of,
    counts_of,
    held_of,
    input_states,
    marks_of,
    pass_of,
    places_of,
)
from ._checkpoint_flatten import Past, Resumed, inner_place
from ._checkpoint_journal import JournaledShuffle
from ._checkpoint_plan import (
    COUNTERS,
    Mode,
    fingerprint,
    has_protocol,
    is_positional,
    mode_of,
    not_resumable,
    one_to_one,
    plan_sources,
    run_plan,
    shuffle_before,
)
from ._checkpoint_shuffle import ShuffleRun, start_shuffled
from ._checkpoint_unordered import UnorderedRun, resume_of, skipping
from ._errors import NotResumable
from ._runtime import Stage
from ._runtime._forkserver import boot_for
from ._runtime._registry import build_next, build_nodes, build_reading, build_source
from ._runtime._release import ReleaseRaw
from ._runtime._stage import ViewStage, WorkerStage, make_view, node_of
from ._runtime._steps import InsertMarkerStep, PartitionStep
from ._runtime._streams import MixStep, RepeatStep, mixed_stage, repeated_stage

__all__ = ["VERSION", "start"]


class _Positioned:
    """A sequence source starting at ``start``, which remembers the iterator of its run
    so the run's position can be read from it (see ``is_positional``)."""

    __slots__ = ("_iterator", "seq", "start")

    def __init__(self, seq: Any, start: int) -> None:
        self.seq = seq
        self.start = start
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        # The sequence's own iterator: a builtin one stays one atomic C call per item.
        iterator: Any = iter(self.seq)
        if self.start:
            iterator.__setstate__(self.start)
        self._iterator = iterator
        return iterator  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return max(0, len(self.seq) - self.start)

    def position(self) -> int:
        """How many elements of the sequence the run has passed."""
        if self._iterator is None:
            return self.start
        return len(self.seq) - operator.length_hint(self._iterator)

    def __repr__(self) -> str:
        return repr(self.seq)


class _Run:
    """What ``state_dict()`` reads from a live run."""

    __slots__ = (
        "base",
        "counter",
        "counters",
        "fingerprint",
        "flattens",
        "journal",
        "loaded",
        "markers",
        "mix",
        "mode",
        "partitions",
        "plan",
        "positioned",
        "problem",
        "protocol",
        "repeat",
        "resumed",
        "shuffle",
        "starts",
        "table",
        "tagger",
        "unordered",
    )  # fmt: skip

    def __init__(self, node: plan.Node, mode: Mode, reason: str | None) -> None:
        self.plan = node
        self.mode = mode
        self.problem = reason
        self.fingerprint: list[str] | None = None
        self.positioned: _Positioned | None = None
        self.protocol: Any = None
        self.starts: list[Any] = []
        self.flattens: list[tuple[Stage[Any], Resumed | None]] = []
        self.counters: list[Stage[Any]] = []
        self.markers: list[InsertMarkerStep] = []
        self.partitions: list[PartitionStep] = []
        self.table: list[Any] = []  # the markers of the plan's insert_marker stages
        self.loaded: Mapping[str, Any] | None = None
        self.resumed: list[Resumed] = []
        self.counter: itertools.count[int] | None = None
        self.tagger: Any = None
        self.shuffle: ShuffleRun | None = None
        self.unordered: UnorderedRun | None = None
        self.repeat: RepeatStep | None = None
        self.mix: tuple[list[Stage[Any]], MixStep] | None = None
        #: A journaled shuffle before the region, its emissions per element entering the
        #: region, and how many it made before the run's count began.
        self.journal: tuple[JournaledShuffle, int, int] | None = None
        self.base = 0

    def state(self) -> dict[str, Any]:
        if self.problem is not None:
            raise not_resumable(self.problem)
        if self.fingerprint is None:
            self.fingerprint = fingerprint(self.plan)
        state: dict[str, Any] = {
            "version": VERSION,
            "fingerprint": list(self.fingerprint),
            "mode": self.mode,
        }
        if self.mode == "position":
            if self.protocol is not None:
                state["source"] = self.protocol.state_dict()
            elif any(first.pending for first in self.resumed):
                assert self.loaded is not None
                state["source"] = self.loaded["source"]
                state["flatten"] = list(self.loaded["flatten"])
            else:
                assert self.positioned is not None
                state["source"] = self.positioned.position()
                if self.flattens:
                    state["flatten"] = [inner_place(*flatten) for flatten in self.flattens]
            if self.counters:
                state["counts"] = [int(stage._step.left) for stage in self.counters]
            if self.markers:
                state["markers"] = [step.state() for step in self.markers]
            if self.partitions:
                state["held"] = [self._held(batches) for batches in self.partitions]
            return state
        if self.mode == "shuffle":
            assert self.shuffle is not None
            state.update(self.shuffle.state())
            return state
        if self.mode == "repeat":
            assert self.repeat is not None
            state.update(self.repeat.state())
            return state
        if self.mode == "mix":
            assert self.mix is not None
            inputs, mixer = self.mix
            state["inputs"] = [part.state_dict() for part in inputs]
            state["mix"] = mixer.state()
            return state
        if self.mode == "unordered":
            assert self.unordered is not None
            state.update(self.unordered.state())
        elif self.mode == "ordered":
            state["count"] = self.base + int(self.tagger.next)
        else:
            # ``count`` has no public reader; its repr, "count(n)", is exact and stable.
            state["count"] = int(repr(self.counter)[6:-1])
        if self.journal is not None and state["count"]:
            step, per, offset = self.journal
            shuffled = step.state_after(offset + (state["count"] - self.base) * per)
            if shuffled is not None:
                state["shuffle"] = shuffled
        state["sources"] = copy.deepcopy(self.starts)
        return state

    def _held(self, batches: PartitionStep) -> list[int]:
        """The markers a partition holds, each by the index of the insert_marker stage
        that made it."""
        held = batches.held()
        if held is None:
            raise NotResumable(
                "tinypl: this run cannot be resumed here: a partition is in the middle of a"
                " batch; take the state right after an item"
            )
        return [self.table.index(marker) for marker in held]


def _named_as(stage: Stage[Any], node: plan.Node) -> None:
    """A resumed take or skip counts from where the run stood; its row in ``stats()``
    keeps the name of the pipe's stage."""
    from ._runtime._collect import name_of

    if stage._probe is not None:
        stage._probe.name = name_of(node)


def _own(stage: Stage[Any]) -> Stage[Any]:
    """The stage itself, under the counting view ``stats()`` may have put over it."""
    upstream = stage._upstream
    return upstream if stage._wrapper and isinstance(upstream, Stage) else stage


def _dropping(stage: Stage[Any], count: int) -> Stage[Any]:
    """``stage`` without its first ``count`` elements (items and markers)."""
    raw = itertools.islice(stage.raw, count, None)
    view: ViewStage[Any] = make_view(raw, stage._tagger)
    view._attach(raw=raw, node=None, upstream=stage, may_mark=stage._may_mark,
                 thread_safe=False, tagger=stage._tagger)  # fmt: skip
    view._wrapper = True
    return view


class _Counted(ViewStage[Any]):
    """The view a replayed run hands out: it counts the elements it delivers and reads
    like the last stage of the run (its node, length hint and repr)."""

    #: ``_hint.remaining`` reads the stage this view counts.
    _hint_upstream = True
    _wrapper = True


class _CountedWorkers(WorkerStage[Any], _Counted):
    """A counting view over a thread (prefetch) stage: ``workers``, ``maxsize``, ``fill``."""


def _counted(stage: Stage[Any], counter: itertools.count[int]) -> Stage[Any]:
    """``stage`` counting every element it delivers, at C speed (no Python frame)."""
    raw: Iterator[Any] = map(operator.itemgetter(0), zip(stage.raw, counter, strict=False))
    workers = isinstance(stage, WorkerStage)
    view = make_view(raw, None, _CountedWorkers if workers else _Counted)
    view._attach(raw=raw, node=node_of(stage), upstream=stage, may_mark=stage._may_mark,
                 thread_safe=False)  # fmt: skip
    if isinstance(stage, WorkerStage):
        view._pool = stage._pool  # type: ignore[attr-defined]
    return view


def _skipping_into(run: _Run, stage: Stage[Any], node: plan.Flatten, skip: int) -> Stage[Any]:
    """``stage`` whose first element is handed to the flatten ``skip`` elements in."""
    first = Resumed(stage.raw, skip, node.eager)
    run.resumed.append(first)
    raw = itertools.chain(first, Past(first), stage.raw)
    view: ViewStage[Any] = make_view(raw, None)
    view._attach(raw=raw, node=None, upstream=stage, may_mark=stage._may_mark,
                 thread_safe=False)  # fmt: skip
    return view


class _Loaded:
    """What a state gives the stages of a positioned run, in their order."""

    __slots__ = ("counts", "held", "marks", "places", "table")

    def __init__(self, state: Mapping[str, Any] | None, nodes: list[plan.Node]) -> None:
        #: The markers of the plan's insert_marker stages (a held marker is an index).
        self.table = [node.marker for node in nodes if isinstance(node, plan.InsertMarker)]
        self.places = [] if state is None else places_of(state, nodes)
        self.counts = [] if state is None else counts_of(state, nodes)
        self.marks = [] if state is None else marks_of(state, nodes)
        self.held = [] if state is None else held_of(state, nodes, len(self.table))


def _positioned(run: _Run, nodes: list[plan.Node], state: Mapping[str, Any] | None) -> Stage[Any]:
    head = nodes[0]
    assert isinstance(head, plan.Source)
    loaded = _Loaded(state, nodes)
    run.table = loaded.table
    if has_protocol(head.source):  # no flatten then: the source cannot re-read an item
        if state is not None:
            head.source.load_state_dict(state["source"])
        run.protocol = head.source
        source = head
    else:
        start = 0 if state is None else count_of(state, "source")
        run.loaded = state
        if any(place is not None for place in loaded.places):
            start -= 1  # the flattens' current item is re-read from the source
        run.positioned = _Positioned(head.source, start)
        source = plan.Source(run.positioned)
    rest = nodes[1:]
    if not rest:
        return build_nodes([source])  # the run is its source alone
    stage = build_source(source)
    for index, node in enumerate(rest, 1):
        stage = _next_positioned(run, stage, node, rest[index] if index < len(rest) else None,
                                 loaded)  # fmt: skip
    return stage


def _next_positioned(
    run: _Run, stage: Stage[Any], node: plan.Node, following: plan.Node | None, loaded: _Loaded
) -> Stage[Any]:
    """``node`` built on ``stage`` where its state says, noted where ``run`` reads it."""
    if isinstance(node, plan.Flatten):
        place = loaded.places.pop(0) if loaded.places else None
        if place:
            # Every flatten but the last re-reads the item its downstream is in.
            stage = _skipping_into(run, stage, node, place - (1 if loaded.places else 0))
        stage = build_next(stage, node, following)
        run.flattens.append((_own(stage), run.resumed[-1] if place else None))
    elif isinstance(node, COUNTERS):
        counted = attrs.evolve(node, n=loaded.counts.pop(0)) if loaded.counts else node
        stage = build_next(stage, counted, following)
        run.counters.append(_own(stage))
        _named_as(_own(stage), node)
    elif isinstance(node, plan.InsertMarker):
        stage, step = build_reading(stage, node, following)
        assert isinstance(step, InsertMarkerStep)
        if loaded.marks:
            step.load(*loaded.marks.pop(0))
        run.markers.append(step)
    elif isinstance(node, plan.Partition):
        stage, batches = build_reading(stage, node, following)
        if isinstance(batches, PartitionStep):  # markers may reach it
            if loaded.held:
                batches.load([loaded.table[i] for i in loaded.held.pop(0)])
            run.partitions.append(batches)
    elif isinstance(node, streams.Shard) and run.positioned is not None:
        # It sees the source's positions: its phase follows from where it starts.
        start = run.positioned.start
        phased = attrs.evolve(node, index=(node.index - start) % node.count)
        stage = build_next(stage, phased, following)
    else:
        stage = build_next(stage, node, following)
    return stage


def _source_position(nodes: list[plan.Node], count: int) -> int | None:
    """Where a sequence source starts so that the stages ``nodes[1:]`` skip their first
    ``count`` elements, when they are one-to-one or batches of the source's elements;
    ``None`` otherwise."""
    source = nodes[0].source if isinstance(nodes[0], plan.Source) else None
    if not is_positional(source) or has_protocol(source):
        return None
    for node in reversed(nodes[1:]):
        if isinstance(node, plan.Partition):
            count *= node.size  # no marker can occur here: full batches but the last
        elif not one_to_one(node):
            return None
    return count


def _ordered(
    run: _Run,
    nodes: list[plan.Node],
    save: int,
    count: int,
    state: Mapping[str, Any] | None,
    *,
    skips: list[int] | None = None,
) -> Stage[Any]:
    """The stages up to the ordered region's save, the first ``count`` elements entering
    it dropped (and those at ``skips`` after them); the save's stage."""
    stage = _before_region(run, nodes, save, count, state)
    stage = skipping(stage, skips or [])
    saved = build_next(stage, nodes[save], nodes[save + 1] if save + 1 < len(nodes) else None)
    if (count or skips) and saved._tagger is not None:
        # Its numbers no longer are source positions: notes on errors name none.
        saved._tagger.positions = False
    run.tagger = saved._tagger
    run.base = count
    return saved


def _before_region(
    run: _Run, nodes: list[plan.Node], save: int, count: int, state: Mapping[str, Any] | None
) -> Stage[Any]:
    at, per = shuffle_before(nodes, save)
    if at:
        loaded = None if state is None else state.get("shuffle")
        positioned = _Positioned(nodes[0].source, 0)  # type: ignore[attr-defined]
        stage, shuffled = start_shuffled(
            nodes[:save], at, loaded, positioned, kind=JournaledShuffle, after=nodes[save]
        )
        assert isinstance(shuffled.step, JournaledShuffle)
        # Without the shuffle's state, the run replays it: its journal counts from 0.
        run.journal = shuffled.step, per, 0 if loaded else count * per
        return _dropping(stage, count) if count and not loaded else stage
    start = _source_position(nodes[:save], count) if count else None
    if start is not None:
        # Skipped at the source: nothing before the ordered region runs again.
        head = plan.Source(_Positioned(nodes[0].source, start))  # type: ignore[attr-defined]
        stage = build_nodes([head, *nodes[1:save]], following=nodes[save])
    else:
        stage = build_nodes(nodes[:save], following=nodes[save])
        if count:
            stage = _dropping(stage, count)
    return stage


def _unordered(
    run: _Run, nodes: list[plan.Node], save: int, state: Mapping[str, Any] | None
) -> Stage[Any]:
    resume = resume_of(state)
    saved = _ordered(run, nodes, save, resume.count, state, skips=resume.skips)
    end = next(i for i, node in enumerate(nodes) if isinstance(node, plan.Release))
    region = build_nodes(nodes[save + 1 : end], saved, following=nodes[end])
    release = nodes[end]
    assert isinstance(release, plan.Release)
    release = attrs.evolve(release, skip=resume.partial)
    following = nodes[end + 1] if end + 1 < len(nodes) else None
    released, raw = build_reading(region, release, following)
    assert isinstance(raw, ReleaseRaw) and saved._tagger is not None
    run.unordered = UnorderedRun(resume, saved._tagger, raw)
    return build_nodes(nodes[end + 1 :], released)


def start(node: plan.Node, state: Mapping[str, Any] | None = None) -> Stage[Any]:
    """A run of the logical plan ``node``; with ``state``, resumed from it."""
    nodes, reason = run_plan(node)
    mode, save = mode_of(nodes)
    if state is not None:
        if reason is not None:
            raise not_resumable(reason)
        check(state, node, mode)
    # The fork server's boot (~75 ms) is the longest part of a first run: start it
    # before building anything, not when the build reaches the process stage (~20 ms of
    # backend imports later), so this process builds while the server boots.
    boot_for(nodes)
    run = _Run(node, mode, reason)
    stage: Stage[Any]
    if reason is not None:
        stage = build_nodes(nodes)
    elif mode == "position":
        stage = _positioned(run, nodes, state)
    elif mode == "shuffle":
        positioned = _Positioned(nodes[0].source, 0)  # type: ignore[attr-defined]
        stage, run.shuffle = start_shuffled(nodes, save, state, positioned)
    elif mode == "repeat":
        stage = _repeat(run, nodes, state)
    elif mode == "mix":
        stage = _mixed(run, nodes, state)
    else:
        run.starts = _load_sources(node, state)
        count = 0 if state is None or mode == "unordered" else count_of(state, "count")
        if mode == "ordered":
            saved = _ordered(run, nodes, save, count, state)
            stage = build_nodes(nodes[save + 1 :], saved)
        elif mode == "unordered":
            stage = _unordered(run, nodes, save, state)
        else:
            run.counter = itertools.count(count)
            stage = build_nodes(nodes)
            if count:
                stage = _dropping(stage, count)
            stage = _counted(stage, run.counter)
    # A live stage the plan hands out as it is keeps the state of its own run.
    if stage is not getattr(nodes[0], "source", None):
        stage._checkpoint = run
    return stage


def _repeat(run: _Run, nodes: list[plan.Node], state: Mapping[str, Any] | None) -> Stage[Any]:
    """A repeat's passes, each a run of its own (``start``), resumed in its pass."""
    head = nodes[0]
    assert isinstance(head, streams.Repeated)
    run.repeat = RepeatStep(head, start, (0, None) if state is None else pass_of(state, head))
    return _after_head(repeated_stage(run.repeat), nodes)


def _mixed(run: _Run, nodes: list[plan.Node], state: Mapping[str, Any] | None) -> Stage[Any]:
    """A mix of its inputs' runs (each a run of its own, ``start``), resumed where each
    stood and with the draws where they stood."""
    head = nodes[0]
    assert isinstance(head, streams.Mix)
    states = [None] * len(head.inputs) if state is None else input_states(state, head)
    inputs = [start(inner, part) for inner, part in zip(head.inputs, states, strict=True)]
    stage, step = mixed_stage(head, inputs)
    if state is not None:
        step.load(state["mix"])
    run.mix = inputs, step
    return _after_head(stage, nodes)


def _after_head(stage: Stage[Any], nodes: list[plan.Node]) -> Stage[Any]:
    """The rest of ``nodes`` built on ``stage``, the live head ``nodes[0]``."""
    from ._runtime._collect import attach  # the probes of stage.stats()

    return build_nodes(nodes[1:], stage) if len(nodes) > 1 else attach(stage, None, None)


def _load_sources(node: plan.Node, state: Mapping[str, Any] | None) -> list[Any]:
    """The states protocol sources start the run from (loaded first when resuming)."""
    sources = plan_sources(node)
    if state is None:
        return [source.state_dict() for source in sources]
    starts = state.get("sources")
    if not isinstance(starts, list) or len(starts) != len(sources):
        raise ValueError(
            f"Pipe.iter: state['sources'] must list the states of the pipe's {len(sources)}"
            f" resumable sources, got {starts!r}"
        )
    for source, started in zip(sources, starts, strict=True):
        source.load_state_dict(copy.deepcopy(started))
    return list(starts)
