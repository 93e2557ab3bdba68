"""Collecting the figures of a live run for ``stage.stats()`` (issue 12).

Every stage a run builds carries a *probe* (``stage._probe``) that knows how to read the
counters its stage keeps; ``collect`` walks the run from its source to the stage asked
and turns them into ``tinypl.Stats`` rows. What a probe cannot count it derives from its
neighbours: a stage's items in are the items out of the stage below it, a map's items out
its items in minus its errors. Nothing here runs per item; reads are racy (plain numbers)
and ``collect`` keeps the figures of successive snapshots monotone.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from .._marker import Marker
from .._ops import EachOp, FilterOp, FlattenOp, MapOp, OnOp
from . import _tally
from ._stage import EXHAUSTIBLE, Parts, Stage, ViewStage, make_view
from ._tally import Tally

__all__ = [
    "ChunkFigures",
    "ChunkProbe",
    "CountProbe",
    "Counted",
    "CountingParts",
    "FlattenProbe",
    "FinalView",
    "FusedProbe",
    "LoopProbe",
    "Probe",
    "SourceProbe",
    "ThreadProbe",
    "WorkerFigures",
    "chunk_done",
    "count_of",
    "count_record",
    "counted_raw",
    "final_view",
]

clock = time.perf_counter


def count_of(counter: itertools.count[int]) -> int:
    """The next value of ``counter``, read without advancing it.

    Examples:
        >>> counter = itertools.count()
        >>> next(counter), next(counter), count_of(counter)
        (0, 1, 2)
    """
    return int(repr(counter)[6:-1])


class Flow:
    """What leaves a stage: items and markers (``items`` ``None``: not known here)."""

    __slots__ = ("items", "markers")

    def __init__(self, items: int | None, markers: int) -> None:
        self.items = items
        self.markers = markers


_DEFAULTS: dict[str, Any] = {"markers": 0, "errors": 0, "busy_s": 0.0, "workers": None,
                             "utilization": None, "capacity": None, "mean_fill": None,
                             "wait_s": None}  # fmt: skip


class Row:
    """A row being assembled; ``group``: the worker stage whose threads run it."""

    __slots__ = ("fields", "group", "wait", "where")

    def __init__(self, **fields: Any) -> None:
        self.fields = {**_DEFAULTS, **fields}
        self.group: Row | None = None
        #: A process or executor stage's last step row: ``" in process(2)"``.
        self.where: str | None = None
        #: Seconds spent pulling the stage below (a timed fused run).
        self.wait = 0.0


class Probe:
    """Reads one stage's counters; the base is a stage that passes everything on."""

    started: float | None = None
    ended: float | None = None
    closed_at: float | None = None
    #: Whether the stage's threads pull the stages below it.
    pulls_below = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.built = clock()

    def counted_in(self) -> int | None:
        """The items this stage took in, where it counts them itself."""
        return None

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        items = below.items  # None: the stage above counts it (see ``_collect``)
        return [Row(name=self.name, items_in=items, items_out=items, markers=below.markers)], below

    def closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = clock()


class SourceProbe(Probe):
    """A source: exact at no cost where ``operator.length_hint`` tells its position."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        super().__init__("source")
        self._iterator = iterator
        sized = type(iterator) in EXHAUSTIBLE
        self._total = operator.length_hint(iterator) if sized else None
        #: Counts what leaves an unsized source, where the stage above does not.
        self.counter: Any = None

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        out = None
        if self._total is not None:
            out = self._total - operator.length_hint(self._iterator)
        elif isinstance(self.counter, Counted):
            out = count_of(self.counter.items)
        elif self.counter is not None:
            out = count_of(self.counter)
        return [Row(name="source", items_in=out, items_out=out)], Flow(out, 0)

    @property
    def sized(self) -> bool:
        return self._total is not None


class FusedProbe(Probe):
    """A fused run: one row per op, from its ``Tally``; ``runs`` can switch it to the
    timed form (``_sync._Runs``)."""

    def __init__(self, tally: Tally, runs: Any = None) -> None:
        super().__init__("fused")
        self.tally = tally
        self.runs = runs
        self.thread = threading.get_ident()

    def counted_in(self) -> int | None:
        return self.tally.figures()[_tally.IN] if self.tally.count_in else None

    @property
    def ended(self) -> float | None:  # type: ignore[override]
        end = self.tally.figures()[_tally.END]
        return float(end) if end else None

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        tally = self.tally
        figures = tally.figures()
        items = figures[_tally.IN] if tally.count_in else (below.items or 0)
        markers = figures[_tally.MARKERS]
        rows: list[Row] = []
        for index, op in enumerate(tally.ops):
            errors = tally.errors[index]
            count = figures[_tally.slot(index, 0)]
            if isinstance(op, FlattenOp):
                out = count
            elif isinstance(op, FilterOp):
                out = items - errors - count
            elif isinstance(op, (MapOp, EachOp, OnOp)):
                out = items - errors
            else:
                out = items
            busy = _scaled(figures[_tally.slot(index, 1)], figures[_tally.slot(index, 3)], items)
            row = Row(name=op.label, items_in=items, items_out=max(out, 0), markers=markers,
                      errors=errors, busy_s=busy)  # fmt: skip
            rows.append(row)
            items = max(out, 0)
            markers -= figures[_tally.slot(index, 2)]
        if rows:
            pulls = rows[0].fields["items_in"] + figures[_tally.MARKERS]
            rows[0].wait = _scaled(figures[_tally.WAIT], figures[_tally.WAITS], pulls)
        return rows, Flow(items, markers)


def _scaled(seconds: float, timed: int, count: int) -> float:
    """``seconds`` spent on ``timed`` items, scaled to ``count`` (a sampled form)."""
    return seconds * count / timed if timed else 0.0


class WorkerFigures:
    """The counters of a thread stage: written by its workers and readers, racily."""

    def __init__(self) -> None:
        self.pulled = itertools.count()
        self.pulled_markers = itertools.count()
        self.delivered = itertools.count()
        self.markers = itertools.count()
        self.wait_s = 0.0
        self.fill_sum = 0
        self.started: float | None = None
        self.ended: float | None = None

    def seen(self, x: Any) -> None:
        """A worker pulled ``x``."""
        if x.__class__ is Marker:
            next(self.pulled_markers)
        else:
            next(self.pulled)


class ThreadProbe(Probe):
    """A thread stage: its workers' pulls, its readers' items and waits."""

    pulls_below = True

    def __init__(self, core: Any, name: str) -> None:
        super().__init__(name)
        self.core = core

    @property
    def figures(self) -> WorkerFigures:
        figures: WorkerFigures = self.core.insight
        return figures

    @property
    def started(self) -> float | None:  # type: ignore[override]
        return self.figures.started

    @property
    def ended(self) -> float | None:  # type: ignore[override]
        return self.figures.ended

    def counted_in(self) -> int | None:
        return count_of(self.figures.pulled)

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        f = self.figures
        out = count_of(f.delivered)
        markers = count_of(f.markers)
        row = Row(name=self.name, items_in=count_of(f.pulled), items_out=out,
                  markers=count_of(f.pulled_markers), errors=0, busy_s=0.0,
                  workers=self.core.workers, capacity=self.core.maxsize,
                  mean_fill=f.fill_sum / (out + markers) if out + markers else 0.0,
                  wait_s=f.wait_s)  # fmt: skip
        return [row], Flow(out, markers)


class LoopProbe(ThreadProbe):
    """An asyncio stage: read as a thread stage, but its coroutines are not timed (they
    wait more than they work), so it gives no busy time nor utilization."""

    def counted_in(self) -> int | None:
        return None

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        rows, flow = super().rows(below)
        rows[0].fields.update(items_in=below.items or 0, markers=below.markers)
        return rows, flow


class ChunkProbe(Probe):
    """A process or executor stage: what came back with each chunk, one row per step
    (``"map(f) in process(2)"``); the worker figures sit on the last step's row."""

    def __init__(self, core: Any, name: str, ops: tuple[Any, ...] = (), where: str = "") -> None:
        super().__init__(name)
        self.core = core
        self.ops = ops
        self.where = where
        core.insight.steps(len(ops), [op.label for op in ops])

    @property
    def started(self) -> float | None:  # type: ignore[override]
        figures: ChunkFigures = self.core.insight
        return figures.started

    @property
    def ended(self) -> float | None:  # type: ignore[override]
        figures: ChunkFigures = self.core.insight
        return figures.ended

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        f: ChunkFigures = self.core.insight
        if not self.ops:
            row = Row(name=self.name, items_in=f.items_in, items_out=f.items_out,
                      markers=below.markers, errors=f.errors + (1 if f.failed else 0),
                      busy_s=f.busy_s)  # fmt: skip
            rows = [row]
        else:
            rows = self._step_rows(f, below.markers)
        last = rows[-1]
        last.where = self.where
        last.fields.update(workers=self.core.workers, capacity=self.core.maxsize,
                           mean_fill=f.fill_sum / f.chunks if f.chunks else 0.0,
                           wait_s=f.wait_s)  # fmt: skip
        for row in rows[:-1]:
            row.group = last
        return rows, Flow(f.items_out, below.markers)

    def _step_rows(self, f: ChunkFigures, markers: int) -> list[Row]:
        items = f.items_in
        sampled = sum(f.samples)
        rows: list[Row] = []
        for index, op in enumerate(self.ops):
            errors = f.step_errors[index]
            count = f.counts[index]
            if isinstance(op, FlattenOp):
                out = count
            elif isinstance(op, FilterOp):
                out = items - errors - count
            else:
                out = items - errors
            share = f.samples[index] / sampled if sampled else 1.0 / len(self.ops)
            rows.append(Row(name=f"{op.label}{self.where}", items_in=items,
                            items_out=max(out, 0), markers=markers, errors=errors,
                            busy_s=f.busy_s * share))  # fmt: skip
            items = max(out, 0)
        rows[-1].fields["items_out"] = f.items_out  # exact: what came back
        return rows


class ChunkFigures:
    """The counters of a process or executor stage, written by its reader; per step:
    ``counts`` (filter: dropped, flatten: yielded), ``samples`` (seconds of the timed
    first item of each chunk) and ``step_errors``."""

    def __init__(self) -> None:
        self.items_in = self.items_out = self.errors = self.chunks = self.fill_sum = 0
        self.busy_s = self.wait_s = 0.0
        self.failed = False
        self.started: float | None = None
        self.ended: float | None = None
        self.counts: list[int] = []
        self.samples: list[float] = []
        self.step_errors: list[int] = []
        self.labels: list[str] = []

    def steps(self, size: int, labels: list[str]) -> None:
        """The stage runs ``size`` steps labelled ``labels``."""
        self.counts, self.samples, self.step_errors = [0] * size, [0.0] * size, [0] * size
        self.labels = labels

    def fail(self, step: int) -> None:
        """A chunk failed: step ``step`` raised (-1: not known, the last step counts it)."""
        self.failed = True
        if self.step_errors:
            self.step_errors[step if 0 <= step < len(self.step_errors) else -1] += 1

    def add(self, steps: Any, drops: Any) -> None:
        """A chunk's step figures (``_stepfigures.Steps``) and the items it dropped."""
        if steps is not None:
            # The workers run the stage's own steps: one figure per step, always.
            assert len(steps[0]) == len(self.counts), (len(steps[0]), len(self.counts))
            for index, (count, sample) in enumerate(zip(steps[0], steps[1], strict=True)):
                self.counts[index] += count
                self.samples[index] += sample
        labels = self.labels
        for drop in drops:
            label = drop[0]
            if label in labels:
                self.step_errors[labels.index(label)] += 1
            elif self.step_errors:
                self.step_errors[-1] += 1


def chunk_done(
    core: Any, count: int, elapsed: float, out: list[Any], drops: Any, *, steps: Any = None
) -> None:
    """A chunk of ``count`` items came back after ``elapsed`` seconds of work with
    ``out`` (in an ordered region, ``(n, items)`` records), the items it ``drops``
    (ignore_errors) and its per-step figures ``steps``."""
    core.feeder.measured(count, elapsed)
    f: ChunkFigures = core.insight
    f.fill_sum += core.feeder.in_flight()
    f.chunks += 1
    f.items_in += count
    f.busy_s += elapsed
    f.errors += len(drops)
    f.add(steps, drops)
    if core.upstream._tagger is not None:
        f.items_out += sum(len(items) for _, items in out)
    else:
        f.items_out += len(out)


class CountProbe(Probe):
    """Any other stage, counted where its items leave it (``counter``): one C-level
    counter when no marker can occur and one thread pulls it (``zip`` with
    ``itertools.count``), a ``Counted`` otherwise; with no counter, the stage above it
    counts what it takes in."""

    def __init__(self, name: str, counter: Any = None) -> None:
        super().__init__(name)
        self.counter = counter

    @property
    def ended(self) -> float | None:  # type: ignore[override]
        return getattr(self.counter, "ended", None)

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        counter = self.counter
        markers = below.markers
        out: int | None = None
        if isinstance(counter, Counted):
            out, markers = count_of(counter.items), count_of(counter.markers)
        elif counter is not None:
            out = count_of(counter)
        items = out if self.name == "source" else below.items  # a source counted as it ends
        row = Row(name=self.name, items_in=items, items_out=out, markers=below.markers)
        return [row], Flow(out, markers)


class Counted(Iterator[Any]):
    """Counts the items and markers passing through (C-level counters: several threads
    may pull it); notes when the stream ended."""

    __slots__ = ("_item", "_marker", "_pull", "_stage", "ended", "items", "markers")

    def __init__(self, upstream: Iterator[Any], stage: Any = None) -> None:
        self._pull = upstream.__next__
        # A weak reference: the stage's probe holds this, and a cycle would keep a dropped
        # run (and its threads) alive until the next garbage collection.
        self._stage = None if stage is None else weakref.ref(stage)
        self.items = itertools.count()
        self.markers = itertools.count()
        self._item = self.items.__next__
        self._marker = self.markers.__next__
        self.ended: float | None = None

    def _end(self) -> None:
        if self.ended is None:
            self.ended = clock()

    def __next__(self) -> Any:
        try:
            x = self._pull()
        except StopIteration:
            self._end()
            raise
        if x.__class__ is Marker:
            self._marker()
        else:
            self._item()
        return x

    def __length_hint__(self) -> int:
        stage = None if self._stage is None else self._stage()
        hint = -1 if stage is None else operator.length_hint(stage, -1)
        return NotImplemented if hint < 0 else hint


def count_record(record: tuple[int, list[Any]], item: Any, marker: Any) -> None:
    """Count the items and markers of an ordered region's record (``item()`` and
    ``marker()`` count one)."""
    for x in record[1]:
        (marker if x.__class__ is Marker else item)()


class CountedRecords(Counted):
    """Counts the items and markers of the records ``(n, items)`` of an ordered region
    passing through."""

    __slots__ = ()

    def __next__(self) -> Any:
        try:
            record = self._pull()
        except StopIteration:
            self._end()
            raise
        count_record(record, self._item, self._marker)
        return record


def counted_raw(stage: Stage[Any]) -> Any:
    """Counts what leaves ``stage`` for the stages built on it (its ``raw``); the counter."""
    raw = stage.raw
    if stage._tagger is not None:
        counted: Counted = CountedRecords(raw)
        stage._raw = counted
        return counted
    if not stage._may_mark and stage._thread_safe is False:
        counter = itertools.count()
        stage._raw = map(operator.itemgetter(0), zip(raw, counter, strict=False))
        return counter
    counted = Counted(raw)
    stage._raw = counted
    return counted


class FinalView(ViewStage[Any]):
    """What a run hands out when its last stage counts nothing itself: the same items,
    counted on their way to the consumer (its figures are the last stage's row)."""

    _wrapper = True

    def __repr__(self) -> str:
        return repr(self._upstream)


def final_view(stage: Stage[Any], name: str) -> Stage[Any]:
    """``stage`` as the last stage of a run, its items counted."""
    counted = Counted(stage.raw, stage)
    stage._probe = CountProbe(name, counted)
    view: FinalView = make_view(counted, stage._tagger, FinalView)
    view._attach(raw=counted, node=None, upstream=stage, may_mark=stage._may_mark,
                 thread_safe=False, tagger=stage._tagger)  # fmt: skip
    return view


class CountingParts(Parts):
    """The parts of a flatten stage, counting the elements handed out at no cost per
    element: a part that is a builtin sequence's iterator tells its position
    (``length_hint``), any other is counted by a C-level ``zip`` with a counter."""

    __slots__ = ("_counter", "_done", "_start", "taken")

    def __init__(self, iterables: Iterator[Any]) -> None:
        super().__init__(iterables)
        self._counter = itertools.count()
        self._done = 0
        self._start: int | None = None
        #: The items flattened so far (each one a part).
        self.taken = 0

    def __next__(self) -> Iterator[Any]:
        self._done += self._current_count()
        self._start = None
        part = super().__next__()
        self.taken += 1
        if type(part) in EXHAUSTIBLE:
            self._start = operator.length_hint(part)
            return part
        return map(_FIRST, zip(part, self._counter, strict=False))

    def _current_count(self) -> int:
        start, current = self._start, self._current
        if start is None or current is None:
            return 0
        return start - operator.length_hint(current)

    def count(self) -> int:
        """The elements handed out so far."""
        return self._done + self._current_count() + count_of(self._counter)


_FIRST = operator.itemgetter(0)


class FlattenProbe(Probe):
    """A flatten stage outside a fused run (``CountingParts``)."""

    def __init__(self, name: str, parts: CountingParts) -> None:
        super().__init__(name)
        self.parts = parts

    def counted_in(self) -> int | None:
        return self.parts.taken

    def rows(self, below: Flow) -> tuple[list[Row], Flow]:
        out = self.parts.count()
        row = Row(name=self.name, items_in=below.items or 0, items_out=out, markers=below.markers)
        return [row], Flow(out, below.markers)
