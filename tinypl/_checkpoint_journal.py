"""A seeded buffer shuffle before an ordered (or released) region: its state at the
point the consumer stands, though it has run ahead of it.

The region's state is a count of the elements entering it; with a shuffle upstream, a
resumed run would have to replay the shuffle up to there (``_dropping``). Instead the
shuffle keeps a journal: a snapshot of its buffer's source positions and its
generator's state every ``SPAN`` emissions (the last two kept), and since each snapshot
the index of the buffer slot each emission drew. The shuffle's state after any
emission since the older snapshot follows: the snapshot's positions with the journal's
replacements applied, its generator advanced by as many draws. The state is then that
of ``shuffle`` mode (``_checkpoint_shuffle``), and a resumed run re-reads only the
buffer's positions. Only the steady phase is journaled (a full buffer, one draw per
emission); a cut before it or in the flush at the end falls back to a replay.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from ._checkpoint_shuffle import PositionedShuffle
from ._runtime._streams import rng_state

__all__ = ["SPAN", "JournaledShuffle"]

#: Emissions between two snapshots (at least the buffer's size, so that a snapshot's
#: copy costs at most one position per emission).
SPAN = 4096


class _Snapshot:
    __slots__ = ("at", "emitted", "journal", "rng", "source")

    def __init__(self, emitted: int, at: list[int], rng: Any, source: int) -> None:
        self.emitted = emitted
        self.at = at
        self.rng = rng
        self.source = source
        self.journal: list[int] = []  # the slot each emission since drew


class JournaledShuffle(PositionedShuffle):
    """A ``PositionedShuffle`` that can tell its state after any recent emission."""

    __slots__ = ("_snapshots", "_span")

    def __init__(self, size: int, rng: random.Random, position: Any) -> None:
        super().__init__(size, rng, position)
        self._span = max(SPAN, size)
        self._snapshots: list[_Snapshot] = []

    def _snapshot(self, emitted: int, source: int) -> _Snapshot:
        """The state before emission ``emitted``, whose incoming element is at ``source``."""
        taken = _Snapshot(emitted, list(self._at), self.rng.getstate(), source)
        # One list replaces the other: a reader in another thread sees either.
        self._snapshots = [*self._snapshots[-1:], taken]
        return taken

    def _plain(self, upstream: Iterator[Any]) -> Iterator[Any]:
        buffer, at, size, draw = self._buffer, self._at, self._size, self._random
        places = self._filled(upstream)
        last = self._snapshots[-1] if self._snapshots else None
        # A fresh generator after an error goes on counting where the last one stopped.
        emitted = 0 if last is None else last.emitted + len(last.journal)
        left = 0
        log: Any = None
        for p, x in places:  # the buffer is full
            if not left:
                log, left = self._snapshot(emitted, p).journal.append, self._span
            left -= 1
            j = int(draw() * size)
            y = buffer[j]
            buffer[j] = x
            at[j] = p
            log(j)
            emitted += 1
            yield y
        yield from self._drained()

    def state_after(self, emitted: int) -> dict[str, Any] | None:
        """The shuffle's state after ``emitted`` emissions of this run (as ``state()``
        gives it, with the source's position); ``None`` outside the journal."""
        for snapshot in reversed(self._snapshots):
            steps = emitted - snapshot.emitted
            if 0 <= steps <= len(snapshot.journal):
                break
        else:
            return None
        at = list(snapshot.at)
        source = snapshot.source
        for offset, j in enumerate(snapshot.journal[:steps]):
            at[j] = source + offset
        rng = random.Random()
        rng.setstate(snapshot.rng)
        for _ in range(steps):
            rng.random()
        return {
            "source": source + steps,
            "buffer": at,
            "flush": [],
            "ended": False,
            "rng": rng_state(rng),
        }
