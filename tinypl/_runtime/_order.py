"""Order restoration: numbering items at ``Save``, putting them back in order at ``Load``.

Between the two, items travel as records ``(n, items)``: ``n`` is the sequence number the
save gave to one upstream item and ``items`` is the list of what became of it (one item
after a map, none after a filter drops it, many after a flatten; markers included). Because
every number always reaches the load, even as an empty list, a filter, a flatten or an
error between the two ends can never leave the load waiting for a number that never comes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["GroupApply", "LoadRaw", "SaveRaw", "Tagger"]

Record = tuple[int, list[Any]]


class Tagger:
    """The shared state of one ordered region: which numbers were issued and completed.

    ``issue`` blocks while ``window`` numbers are outstanding (backpressure, so the load's
    buffer stays bounded); ``complete`` marks a number as handed out (or abandoned).
    """

    def __init__(
        self,
        window: int,
        adaptive: bool = False,
        token: object = None,
        positions: bool = False,
        *,
        released: bool = False,
    ) -> None:
        #: Whether a stage downstream may widen the window (``order()`` without maxsize).
        self.adaptive = adaptive
        #: The identity of the save (``plan.OrderToken``) a load may name.
        self.token = token
        #: Whether sequence numbers are positions in the pipeline's source.
        self.positions = positions
        #: Whether the region is handed out unordered (``plan.Release``).
        self.released = released
        self._cond = threading.Condition(threading.Lock())
        self._issued = 0
        self._next = 0  # lowest number not yet completed
        self._done: set[int] = set()
        self._waiting = 0
        self._stopping = False
        self._window = window
        #: Numbers whose record was lost to an error (the load must not skip them).
        self.failed: dict[int, BaseException] = {}

    @property
    def window(self) -> int:
        return self._window

    @window.setter
    def window(self, value: int) -> None:
        with self._cond:
            self._window = value
            self._cond.notify_all()

    @property
    def next(self) -> int:
        """The lowest sequence number not yet completed."""
        return self._next

    def would_block(self) -> bool:
        """Whether ``issue`` would wait now (a feeder flushes what it holds first)."""
        return self._issued >= self._next + self._window

    def issue(self) -> int:
        with self._cond:
            while self._issued >= self._next + self._window and not self._stopping:
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
            if self._stopping:
                raise StopIteration
            n = self._issued
            self._issued = n + 1
            return n

    def complete(self, n: int) -> None:
        with self._cond:
            if n == self._next:
                n += 1
                done = self._done
                while n in done:
                    done.remove(n)
                    n += 1
                self._next = n
                if self._waiting:
                    self._cond.notify_all()
            elif n > self._next:
                self._done.add(n)

    def retract(self, n: int) -> None:
        """Number ``n``, the last issued, numbered no element (its pull found the end):
        the next ``issue`` hands it out again. Completing it instead would count an
        element past the end as delivered (a checkpoint listed it)."""
        with self._cond:
            if n == self._issued - 1:
                self._issued = n
                return
        self.complete(n)

    def completed(self) -> tuple[int, list[int]]:
        """The lowest number not yet completed, and the completed numbers above it."""
        with self._cond:
            return self._next, sorted(self._done)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def fail(self, n: int, error: BaseException) -> None:
        with self._cond:
            self.failed[n] = error

    def forget(self, error: BaseException) -> None:
        """``error`` is raised to the consumer: the numbers whose records it cost are
        complete (a later pull goes on after them)."""
        failed = self.failed
        for k, v in list(failed.items()):
            if v is error or v is error.__cause__:
                del failed[k]
                self.complete(k)

    def divert(self, record: Record) -> list[Any]:
        """Hand a record's items to someone other than the load (a public pull)."""
        self.complete(record[0])
        return record[1]

    # Core protocol: the tagger is the resource a save stage owns.
    def signal(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def shutdown(self) -> None:
        self.signal()


class SaveRaw:
    """Numbers each element pulled from upstream: ``x`` becomes ``(n, [x])``."""

    __slots__ = ("_pull", "_tagger", "lock")

    def __init__(self, upstream: Iterator[Any], tagger: Tagger) -> None:
        self._pull = upstream.__next__
        self._tagger = tagger
        self.lock = threading.Lock()

    def __iter__(self) -> SaveRaw:
        return self

    def __next__(self) -> Record:
        with self.lock:
            n = self._tagger.issue()
            try:
                x = self._pull()
            except StopIteration:
                self._tagger.retract(n)
                raise
            except BaseException:
                self._tagger.complete(n)
                raise
            return (n, [x])


class LoadRaw:
    """Pulls records and hands their items out in sequence order."""

    __slots__ = ("_buffer", "_pending", "_pull", "_tagger")

    def __init__(self, upstream: Iterator[Any], tagger: Tagger) -> None:
        self._pull = upstream.__next__
        self._tagger = tagger
        self._buffer: dict[int, list[Any]] = {}
        self._pending: deque[Any] = deque()

    def __iter__(self) -> LoadRaw:
        return self

    def __next__(self) -> Any:
        pending = self._pending
        tagger = self._tagger
        buffer = self._buffer
        while True:
            if pending:
                return pending.popleft()
            expected = tagger.next
            items = buffer.pop(expected, None)
            if items is None:
                try:
                    n, items = self._pull()
                except StopIteration:
                    error = tagger.failed.pop(expected, None)
                    if error is not None:
                        tagger.complete(expected)
                        raise error from None
                    if not buffer or tagger.stopping:
                        buffer.clear()  # closed: hand out nothing more, and never a gap
                        raise
                    # A number was handed out elsewhere (see Tagger.divert): skip the gap.
                    expected = min(buffer)
                    items = buffer.pop(expected)
                except BaseException as error:
                    # An error raised through here (e.g. a stage in this thread) releases
                    # the number it cost, so a later pull goes on after it.
                    tagger.forget(error)
                    raise
                else:
                    if n != expected:
                        buffer[n] = items
                        continue
            tagger.complete(expected)
            if len(items) == 1:
                return items[0]
            pending.extend(items)


class GroupApply:
    """Applies per-item stages to the items of each record, keeping its number."""

    __slots__ = ("_apply", "_positions", "_pull", "_tagger")

    def __init__(
        self,
        upstream: Iterator[Any],
        apply: Callable[[list[Any], int | None], list[Any]],
        tagger: Tagger,
    ) -> None:
        self._pull = upstream.__next__
        self._apply = apply
        self._tagger = tagger
        self._positions = tagger.positions

    def __iter__(self) -> GroupApply:
        return self

    def __next__(self) -> Record:
        n, items = self._pull()
        try:
            return (n, self._apply(items, n if self._positions else None))
        except BaseException as error:
            # The record is lost with the error: the load must neither skip the number
            # (items after it would come before the error) nor wait for it forever.
            self._tagger.fail(n, error)
            raise
