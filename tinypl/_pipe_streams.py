"""The type-keeping stream operations of the fluent builder, a base class of ``Pipe``:
shuffle, take, skip, shard, repeat and prefetch. Each adds one node of ``_plan_streams``
(checked at once) and returns a new pipe of the same item type.
"""

from __future__ import annotations

from typing import TypeVar

from . import _plan_streams as streams
from ._marker import Marker
from ._pipe_base import Builds

__all__ = ["StreamMethods"]

P = TypeVar("P", bound="StreamMethods")


class StreamMethods(Builds):
    """Stream operations that keep the item type (see ``Pipe``)."""

    __slots__ = ()

    def shuffle(self: P, buffer_size: int, seed: int | None = None) -> P:
        """Shuffle through a buffer of ``buffer_size`` items: once it is full, each new
        item takes the place of a uniformly chosen one, which is emitted.

        A marker flushes the buffer: every item that arrived before it is emitted
        (shuffled) before it. With a ``seed`` every run gives the same order; each
        epoch (the items between two markers) and each pass of a ``repeat`` below gets
        its own order.

        Examples:
            >>> from tinypl import Pipe
            >>> out = list(Pipe(range(10)).shuffle(4, seed=1))
            >>> sorted(out) == list(range(10)), out == list(Pipe(range(10)).shuffle(4, seed=1))
            (True, True)
        """
        return self._keep(streams.Shuffle(self.plan, buffer_size, seed))

    def take(self: P, n: int) -> P:
        """The first ``n`` items; markers before the ``n``-th pass and are not counted.

        Right after the ``n``-th item the stages above are closed: their threads and
        processes stop.

        Examples:
            >>> import itertools
            >>> from tinypl import Pipe
            >>> list(Pipe(itertools.count()).map(lambda x: x * x).take(4))
            [0, 1, 4, 9]
        """
        return self._keep(streams.Take(self.plan, n))

    def skip(self: P, n: int) -> P:
        """All but the first ``n`` items; markers pass and are not counted.

        Examples:
            >>> from tinypl import Pipe
            >>> list(Pipe(range(6)).skip(4))
            [4, 5]
        """
        return self._keep(streams.Skip(self.plan, n))

    def shard(self: P, index: int, count: int) -> P:
        """The items whose position here is ``index`` modulo ``count`` (one rank's share
        in data-parallel training); every marker passes on every shard.

        Examples:
            >>> from tinypl import Pipe
            >>> list(Pipe(range(10)).shard(1, 3))
            [1, 4, 7]
        """
        return self._keep(streams.Shard(self.plan, index, count))

    def repeat(self: P, times: int | None = None, marker: Marker | None = None) -> P:
        """Run the pipeline above again from its source, ``times`` times (``None``:
        forever); with ``marker``, emit it after each pass (an epoch marker).

        The source must be re-iterable (not an iterator or a generator): ``TypeError``
        otherwise, here. A seeded ``shuffle`` above gives each pass its own order, and a
        new run of the pipe repeats the whole sequence.

        Examples:
            >>> from tinypl import Marker, Pipe
            >>> list(Pipe(range(3)).repeat(2))
            [0, 1, 2, 0, 1, 2]
            >>> epoch = Marker("epoch")
            >>> list(Pipe("ab").repeat(3, marker=epoch).until(epoch))
            ['a', 'b']
        """
        return self._keep(streams.Repeat(self.plan, times, marker))

    def prefetch(self: P, n: int) -> P:
        """Read up to ``n`` items ahead in one background thread, keeping their order;
        the stages above, back to the previous thread or process stage, run in it.

        Examples:
            >>> from tinypl import Pipe
            >>> list(Pipe(range(5)).map(str).prefetch(2))
            ['0', '1', '2', '3', '4']
        """
        return self._keep(streams.Prefetch(self.plan, n))
