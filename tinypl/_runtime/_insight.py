"""The insight stages (issue 12): ``.progress()`` draws a tqdm bar, ``.report()`` hands
the run's figures to a callable (or the ``tinypl.stats`` logger) every few seconds.

Both switch the fused runs below them to their timed form at once, so that ``busy_s``
counts from the start. The bar closes with its stage (or when the stream ends); the
report thread is stopped and joined by ``close()``, and by garbage collection of a
dropped run, since it holds its stage only by a weak reference.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .._marker import Marker
from .._plan_insight import Progress, Report
from ._collect import name_of, start_timing
from ._hint import remaining
from ._registry import build
from ._stage import Stage, make_view, share_through
from ._stats import Probe

__all__ = ["ProgressStep", "ReportCore"]

_ids = itertools.count()
#: Seconds ``close()`` waits for the report thread (one inside ``to`` finishes it first).
JOIN_TIMEOUT = 10.0


def _bar(desc: str | None, total: int | None, options: dict[str, Any]) -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # notebook form if any

    return tqdm(desc=desc, total=total, **options)


class ProgressStep(Iterator[Any]):
    """Passes everything on, counting the items on a tqdm bar made at the first pull."""

    __slots__ = ("_bar", "_make", "_pull", "closed")

    def __init__(self, upstream: Iterator[Any], make: Callable[[], Any]) -> None:
        self._pull = upstream.__next__
        self._make = make
        self._bar: Any = None
        self.closed = False

    def __next__(self) -> Any:
        bar = self._bar
        if bar is None:
            if self.closed:
                raise StopIteration
            bar = self._bar = self._make()
        try:
            x = self._pull()
        except StopIteration:
            self.shutdown()
            raise
        if x.__class__ is not Marker:
            bar.update()
        return x

    # Core protocol: the bar is the stage's resource.
    def signal(self) -> None:
        pass

    def shutdown(self) -> None:
        self.closed = True
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


@build.register
def _progress(node: Progress, upstream: Stage[Any]) -> Stage[Any]:
    start_timing(upstream)
    total = node.total if node.total is not None else remaining(upstream)
    options = dict(node.options)
    step = ProgressStep(upstream.raw, lambda: _bar(node.desc, total, options))
    stage: Stage[Any] = make_view(step, upstream._tagger)
    stage._attach(raw=step, node=node, upstream=upstream, may_mark=upstream._may_mark,
                  thread_safe=False, tagger=upstream._tagger, core=step)  # fmt: skip
    stage._probe = Probe(name_of(node))
    weakref.finalize(stage, step.shutdown)
    return stage


class ReportCore:
    """The thread that reports a stage's figures every ``every`` seconds."""

    def __init__(self, every: float, to: Callable[[Any], Any] | None) -> None:
        self.every = every
        self.to = to
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = f"tinypl-report-{next(_ids)}"

    def start(self, stage: Stage[Any]) -> None:
        target = weakref.ref(stage)
        thread = threading.Thread(target=self._run, args=(target,), name=self.name, daemon=True)
        self._thread = thread
        thread.start()

    def _run(self, target: weakref.ref[Stage[Any]]) -> None:
        log = logging.getLogger("tinypl.stats")
        while not self._stop.wait(self.every):
            stage = target()
            if stage is None or stage.closed:
                return
            stats = stage.stats()
            del stage  # the run may be dropped while ``to`` runs
            try:
                if self.to is None:
                    log.info("%s", stats)
                else:
                    self.to(stats)
            except Exception:  # a failing hook must not go unnoticed, nor end the run
                log.exception("tinypl: the report hook failed")

    # Core protocol.
    def signal(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)


def _same(raw: Iterator[Any]) -> Iterator[Any]:
    return raw


@build.register
def _report(node: Report, upstream: Stage[Any]) -> Stage[Any]:
    start_timing(upstream)
    core = ReportCore(node.every, node.to)
    raw = upstream.raw  # the stage adds nothing per item
    stage: Stage[Any] = make_view(raw, upstream._tagger)
    stage._attach(raw=raw, node=node, upstream=upstream, may_mark=upstream._may_mark,
                  thread_safe=False, tagger=upstream._tagger, core=core)  # fmt: skip
    share_through(stage, upstream, _same)
    stage._probe = Probe(name_of(node))
    weakref.finalize(stage, core.shutdown)
    core.start(stage)
    return stage
