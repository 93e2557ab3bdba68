"""Checkpoint mode ``unordered``: concurrent stages at the end of a plan, with no
``order()``, that hand their items out as they complete.

The planner numbers such a region like an ordered one (``plan.Release``): element
``n`` is the ``n``-th element (item or marker) the stages upstream of the region
yield. The state is ``count``, the number below which every element was delivered;
``done``, the delivered numbers above it (at most the region's window); and
``partial``, ``[n, k]`` when only the first ``k`` elements that element ``n`` became
(after a flatten, say) were delivered. A resumed run replays the stages upstream of the
region (from the source's position when it can), drops the first ``count`` elements and
those in ``done``, and recomputes the rest: a run's items in flight are never saved.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from typing import Any, TypeGuard

from ._runtime import Stage
from ._runtime._order import Tagger
from ._runtime._release import ReleaseRaw
from ._runtime._stage import ViewStage, make_view

__all__ = ["Resume", "UnorderedRun", "resume_of", "skipping"]


class Resume:
    """Where a resumed run starts: ``count`` elements dropped, then those at the
    ``skips`` (sorted, counted from ``count``); ``partial``: pairs ``(n, k)``, a record
    (numbered as the resumed run numbers it) and how many of its elements to drop."""

    __slots__ = ("count", "partial", "skips")

    def __init__(self, count: int, skips: list[int], partial: tuple[tuple[int, int], ...]):
        self.count = count
        self.skips = skips
        self.partial = partial


def _ints(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(type(v) is int for v in value)


def resume_of(state: Mapping[str, Any] | None) -> Resume:
    """The start a state asks for (checked), or a fresh run's for ``None``."""
    if state is None:
        return Resume(0, [], ())
    count = state.get("count")
    if type(count) is not int or count < 0:
        raise ValueError(f"Pipe.iter: state['count'] must be an int >= 0, got {count!r}")
    done = state.get("done")
    if not _ints(done) or any(b <= a for a, b in zip([count, *done], done, strict=False)):
        raise ValueError(
            f"Pipe.iter: state['done'] must list increasing ints above state['count'], got {done!r}"
        )
    skips = [d - count for d in done]
    partial = state.get("partial")
    pairs: list[tuple[int, int]] = []
    if isinstance(partial, list) and all(_ints(p) and len(p) == 2 for p in partial):
        pairs = [(p[0], p[1]) for p in partial]
    starts = {n for n, _ in pairs}
    valid = isinstance(partial, list) and len(pairs) == len(starts) == len(partial)
    if not valid or any(n < count or n - count in skips or k < 1 for n, k in pairs):
        raise ValueError(
            "Pipe.iter: state['partial'] must list pairs [n, k]: each an element n >="
            f" state['count'] not in state['done'] and a count k >= 1, got {partial!r}"
        )
    at = [n - count for n, _ in pairs]
    return Resume(count, skips, tuple(
        (a - bisect.bisect_left(skips, a), k) for a, (_, k) in zip(at, pairs, strict=True)
    ))  # fmt: skip


def skipping(stage: Stage[Any], skips: list[int]) -> Stage[Any]:
    """``stage`` without its elements at the places ``skips`` (sorted)."""
    if not skips:
        return stage
    dropped = set(skips)
    keep = itertools.chain((i not in dropped for i in range(skips[-1] + 1)), itertools.repeat(True))
    raw = itertools.compress(stage.raw, keep)
    view: ViewStage[Any] = make_view(raw, stage._tagger)
    view._attach(raw=raw, node=None, upstream=stage, may_mark=stage._may_mark,
                 thread_safe=False, tagger=stage._tagger)  # fmt: skip
    view._wrapper = True
    return view


class UnorderedRun:
    """Reads a live unordered run's state from its region's tagger and release."""

    __slots__ = ("_release", "_resume", "_tagger")

    def __init__(self, resume: Resume, tagger: Tagger, release: ReleaseRaw) -> None:
        self._resume = resume
        self._tagger = tagger
        self._release = release

    def _source_number(self, j: int) -> int:
        """The number, in the run this one resumes, of this run's element ``j``."""
        r = j
        for s in self._resume.skips:
            if s > r:
                break
            r += 1
        return self._resume.count + r

    def state(self) -> dict[str, Any]:
        """``count``, ``done`` and ``partial``, in the numbering of the first run."""
        lowest, done = self._tagger.completed()
        completed = set(done)
        release = self._release
        undone = set(release.since)
        partial: dict[int, int] = {}
        if release.record >= 0 and release.given < release.size:
            partial[release.record] = release.given
        for j, k in release.resumed_in.items():
            # A record the run resumed inside, unless it has been delivered whole since.
            if j not in partial and (j in undone or (j >= lowest and j not in completed)):
                partial[j] = k
        undone.update(partial)
        # Every element below ``prefix`` (in this run's numbering) was delivered, and so
        # was every one the resumed run skipped: the first not delivered is ``prefix``'s.
        prefix = min([lowest, *undone])
        count = self._source_number(prefix)
        ahead = [j for j in itertools.chain(range(prefix, lowest), done) if j not in undone]
        given = {self._source_number(j) for j in ahead}
        given.update(self._resume.count + s for s in self._resume.skips)
        return {
            "count": count,
            "done": sorted(g for g in given if g > count),
            "partial": sorted([self._source_number(j), k] for j, k in partial.items()),
        }
