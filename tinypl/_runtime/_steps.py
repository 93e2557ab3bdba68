"""Raw iterators of the synchronous stages when markers can occur in the stream.

Each is a small class with ``__next__`` rather than a generator, so an exception raised
by a user function does not finish the stream: the next pull carries on, as it does for
the builtin ``map`` the marker-free fast path compiles to.
"""

from __future__ import annotations

import operator
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .._errors import MarkerNotAllowedError
from .._marker import Marker

__all__ = [
    "Batches",
    "FlattenStep",
    "InsertMarkerStep",
    "Locked",
    "OnStep",
    "PartitionStep",
    "RatelimitStep",
    "TraceStep",
    "UntilStep",
]



class _Raw(Iterator[Any]):
    __slots__ = ("_pull",)

    def __init__(self, upstream: Iterator[Any]) -> None:
        self._pull = upstream.__next__

    def __iter__(self) -> _Raw:
        return self


class FlattenStep(_Raw):
    """Yields the elements of each item lazily (eagerly: the item is listed first)."""

    __slots__ = ("_eager", "_inner")

    def __init__(self, upstream: Iterator[Any], eager: bool) -> None:
        super().__init__(upstream)
        self._eager = eager
        self._inner: Iterator[Any] | None = None

    def __next__(self) -> Any:
        while True:
            inner = self._inner
            if inner is not None:
                for x in inner:
                    return x
                self._inner = None
            x = self._pull()
            if x.__class__ is Marker:
                return x
            self._inner = iter(list(x)) if self._eager else iter(x)


class InsertMarkerStep(_Raw):
    """Emits ``marker`` after (or before) every ``every`` items."""

    __slots__ = ("_after", "_count", "_every", "_marker", "_pending")

    def __init__(self, upstream: Iterator[Any], marker: Marker, every: int, after: bool) -> None:
        super().__init__(upstream)
        self._marker = marker
        self._every = every
        self._after = after
        self._count = 0
        self._pending: deque[Any] = deque()

    def state(self) -> list[Any]:
        """For a checkpoint, between two items: ``[items since the last marker, whether
        the marker is due next]``."""
        return [self._count, bool(self._pending)]

    def load(self, count: int, due: bool) -> None:
        """Go on from a ``state()``."""
        self._count = count
        if due:
            self._pending.append(self._marker)

    def __next__(self) -> Any:
        if self._pending:
            return self._pending.popleft()
        x = self._pull()
        if x.__class__ is Marker:
            return x
        count = self._count
        self._count = (count + 1) % self._every
        if self._after:
            if count + 1 == self._every:
                self._pending.append(self._marker)
            return x
        if count == 0:
            self._pending.append(x)
            return self._marker
        return x


class OnStep(_Raw):
    """Calls ``fn()`` whenever a matching marker passes (``marker=None``: any marker)."""

    __slots__ = ("_consume", "_fn", "_marker")

    def __init__(
        self, upstream: Iterator[Any], marker: Marker | None, fn: Callable[[], Any], consume: bool
    ) -> None:
        super().__init__(upstream)
        self._marker = marker
        self._fn = fn
        self._consume = consume

    def __next__(self) -> Any:
        while True:
            x = self._pull()
            if x.__class__ is Marker and (self._marker is None or x is self._marker):
                self._fn()
                if self._consume:
                    continue
            return x


class UntilStep(_Raw):
    """Ends the stream at the first matching marker, which it consumes."""

    __slots__ = ("_ended", "_marker")

    def __init__(self, upstream: Iterator[Any], marker: Marker | None) -> None:
        super().__init__(upstream)
        self._marker = marker
        self._ended = False

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        x = self._pull()
        if x.__class__ is Marker and (self._marker is None or x is self._marker):
            self._ended = True
            raise StopIteration
        return x


class Batches(_Raw):
    """Lists of up to ``size`` items, when no marker can occur."""

    __slots__ = ("_batch", "_size")

    def __init__(self, upstream: Iterator[Any], size: int) -> None:
        super().__init__(upstream)
        self._size = size
        self._batch: list[Any] = []

    def __next__(self) -> list[Any]:
        # The batch lives on the object, so an error in an upstream function loses nothing.
        batch = self._batch
        pull = self._pull
        size = self._size
        try:
            while len(batch) < size:
                batch.append(pull())
        except StopIteration:
            if not batch:
                raise
        self._batch = []
        return batch


class PartitionStep(_Raw):
    """Lists of up to ``size`` items, with a policy for the markers between them."""

    __slots__ = ("_batch", "_ended", "_held", "_markers", "_pending", "_size", "_split")

    def __init__(
        self, upstream: Iterator[Any], size: int, markers: str | None, split_on_marker: bool
    ) -> None:
        super().__init__(upstream)
        self._size = size
        self._markers = markers
        self._split = split_on_marker
        self._batch: list[Any] = []
        self._held: list[Marker] = []
        self._pending: deque[Any] = deque()
        self._ended = False

    def held(self) -> list[Marker] | None:
        """For a checkpoint, right after a batch: the markers due before the next one
        (its batch is empty then: a batch was just emitted); ``None`` in the middle of a
        batch (after a marker pulled from the raw stream, say)."""
        if self._batch or not all(x.__class__ is Marker for x in self._pending):
            return None
        return list(self._pending)

    def load(self, held: list[Marker]) -> None:
        """Go on from ``held()``: those markers come first."""
        self._pending.extend(held)

    def _flush(self) -> None:
        if self._batch:
            self._pending.append(self._batch)
            self._batch = []
        self._pending.extend(self._held)
        self._held.clear()

    def __next__(self) -> Any:
        pending = self._pending
        while not pending:
            if self._ended:
                raise StopIteration
            try:
                x = self._pull()
            except StopIteration:
                self._ended = True
                self._flush()
                continue
            if x.__class__ is Marker:
                if self._markers is None:
                    raise MarkerNotAllowedError(
                        f"partition: {x!r} reached a partition stage built with markers=None;"
                        " pass markers='after' (hold it until the batch is emitted) or"
                        " markers='before' (emit it at once)"
                    )
                if self._markers == "before" or not self._batch:
                    pending.append(x)
                else:
                    self._held.append(x)
                if self._split:
                    self._flush()
            else:
                self._batch.append(x)
                if len(self._batch) == self._size:
                    self._flush()
        return pending.popleft()


class RatelimitStep(_Raw):
    """At most ``num`` items per ``period`` seconds (markers and the end pass at once)."""

    __slots__ = ("_num", "_period", "_times")

    def __init__(self, upstream: Iterator[Any], num: int, period: float) -> None:
        super().__init__(upstream)
        self._num = num
        self._period = period
        self._times: deque[float] = deque()

    def __next__(self) -> Any:
        x = self._pull()
        if x.__class__ is Marker:
            return x
        times = self._times
        if len(times) >= self._num:
            wait = times[0] + self._period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            times.popleft()
        times.append(time.monotonic())
        return x


class TraceStep(_Raw):
    """Logs every pull and what it returned to the ``tinypl.debug`` logger (INFO)."""

    __slots__ = ("_log", "_message")

    def __init__(self, upstream: Iterator[Any], message: Any) -> None:
        import logging  # here, not at the top: only a traced run needs it

        super().__init__(upstream)
        self._message = message
        self._log = logging.getLogger("tinypl.debug")

    def _text(self, *item: Any) -> str:
        message = self._message
        return message if isinstance(message, str) else str(message(*item))

    def __next__(self) -> Any:
        self._log.info("Pulling   %s", self._text())
        x = self._pull()
        # A marker is never handed to a user function.
        self._log.info("Returning %s", repr(x) if x.__class__ is Marker else self._text(x))
        return x


class Locked(_Raw):
    """Pulls upstream under a lock: the mutex stage."""

    __slots__ = ("_upstream", "lock", "stopped")

    def __init__(self, upstream: Iterator[Any], lock: Any) -> None:
        super().__init__(upstream)
        self._upstream = upstream
        self.lock = lock
        self.stopped = False

    def __length_hint__(self) -> Any:
        # The lock changes no count: a source put under it (a free-threaded build's
        # shared builtin iterator) still tells a progress bar its total.
        hint = operator.length_hint(self._upstream, -1)
        return NotImplemented if hint < 0 else hint

    def __next__(self) -> Any:
        with self.lock:
            if self.stopped:  # close() was called while this pull waited for the lock
                raise StopIteration
            return self._pull()

    # Core protocol: the mutex stage's resource is its gate.
    def signal(self) -> None:
        self.stopped = True

    def shutdown(self) -> None:
        self.stopped = True
