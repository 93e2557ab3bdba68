"""Handing out a numbered region's records as they complete, in no order.

A run that may be asked for its state numbers the concurrent stages at its end like an
ordered region (``plan.Release``): the numbers are not used to reorder, only to tell a
checkpoint which of the region's input elements the consumer has received. The window
of the region's ``Tagger`` bounds how far past the oldest unfinished element the region
may run, and with it the size of that record.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from .._marker import is_marker
from ._order import Tagger
from ._stage import Stage, ViewStage, WorkerStage, make_view, node_of
from ._stats import Probe

__all__ = ["ReleaseRaw", "released"]


class ReleaseRaw:
    """Pulls records ``(n, items)`` and hands their items out as they come.

    What a checkpoint reads: ``record``, ``given`` and ``size``, the number of the
    record of the last *item* handed out, how many of its elements had been handed out
    with it and how many it has; ``since``, the numbers of the records whose elements
    (markers all) were handed out after that item (they belong to a resumed run).
    Records are handed out one after the other, so every record the tagger counts as
    complete but those is delivered whole.
    """

    __slots__ = ("_k", "_marks", "_n", "_pending", "_pull", "_size", "_skip", "_tagger",
                 "given", "record", "resumed_in", "since", "size")  # fmt: skip

    def __init__(
        self,
        upstream: Iterator[Any],
        tagger: Tagger,
        may_mark: bool,
        skip: tuple[tuple[int, int], ...],
    ) -> None:
        self._pull = upstream.__next__
        self._tagger = tagger
        self._marks = may_mark
        #: ``{n: k}``: record ``n``'s first ``k`` elements were delivered by the run this
        #: one resumes (``_skip``: those not handed out yet).
        self.resumed_in = dict(skip)
        self._skip = dict(skip)
        self._pending: deque[Any] = deque()
        self._n = self._k = self._size = 0  # the record being handed out
        self.record = -1
        self.given = self.size = 0
        self.since: list[int] = []

    def __iter__(self) -> ReleaseRaw:
        return self

    def __next__(self) -> Any:
        pending = self._pending
        while True:
            if pending:
                self._k += 1
                x = pending.popleft()
                self._handed(x)
                return x
            n, items = self._pull_record()
            self._tagger.complete(n)
            offset = 0
            if self._skip and n in self._skip:
                offset = self._skip.pop(n)
                items = items[offset:]
            if not items:
                continue
            if len(items) == 1 and not offset:
                x = items[0]
                if self._marks and is_marker(x):
                    self.since.append(n)
                else:
                    self.record, self.given, self.size = n, 1, 1
                    if self.since:
                        self.since.clear()
                return x
            self._n, self._k, self._size = n, offset, offset + len(items)
            pending.extend(items)

    def _handed(self, x: Any) -> None:
        if self._marks and is_marker(x):
            self.since.append(self._n)
        else:
            self.record, self.given, self.size = self._n, self._k, self._size
            if self.since:
                self.since.clear()

    def _pull_record(self) -> tuple[int, list[Any]]:
        tagger = self._tagger
        try:
            return self._pull()  # type: ignore[no-any-return]
        except StopIteration:
            failed = tagger.failed
            if failed and not tagger.stopping:
                n = min(failed)
                tagger.complete(n)
                raise failed.pop(n) from None
            raise
        except BaseException as error:
            tagger.forget(error)  # the records it cost are handed out as this error
            raise


class _Released(ViewStage[Any]):
    """The stage a released region hands out: it reads like the region's last stage
    (its node, length hint and repr); ``stats()`` sees that stage's figures."""

    _hint_upstream = True
    _wrapper = True


class _ReleasedWorkers(WorkerStage[Any], _Released):
    """Over a thread, process or asyncio stage: its ``workers``, ``maxsize``, ``fill``."""


def released(upstream: Stage[Any], tagger: Tagger, skip: tuple[tuple[int, int], ...]) -> Stage[Any]:
    """The live ``Release`` of the region numbered by ``tagger``, ending at ``upstream``."""
    raw = ReleaseRaw(upstream.raw, tagger, upstream._may_mark, skip)
    workers = isinstance(upstream, WorkerStage)
    stage: ViewStage[Any] = make_view(raw, None, _ReleasedWorkers if workers else _Released)
    stage._attach(raw=raw, node=node_of(upstream), upstream=upstream,
                  may_mark=upstream._may_mark, thread_safe=False)  # fmt: skip
    if isinstance(upstream, WorkerStage):
        stage._pool = upstream._pool  # type: ignore[attr-defined]
    stage._probe = Probe("release")  # passes the figures of the stage below on
    weakref.finalize(stage, tagger.signal)
    return stage
