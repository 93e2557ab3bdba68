"""``async for x in pipe``: a run pulled by a pump thread, awaited by the consumer.

The pump thread (``tinypl-aiter-N``) pulls the run's stage, which may block, and appends
what it gets to a small buffer; the consuming coroutine takes from the buffer and awaits
a future only when it is empty, which the pump sets through ``call_soon_threadsafe``. So
the consumer's event loop never blocks and a thread hop costs nothing while items are
ready. Closing (``aclose()``, ``break`` then garbage collection, or cancelling the
consuming task) wakes whatever the pump waits for; the pump then closes the run itself.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections import deque
from queue import SimpleQueue
from typing import Any

from .._plan import Node
from ._asource import Failed, wake
from ._registry import materialize
from ._stage import Stage, signal_stop

__all__ = ["AsyncRun"]

#: Items the pump may hold ready for the consumer.
BUFFER = 16

_ids = itertools.count()
_END = object()


class _Pump:
    """The shared state of one async run (holds no reference to the ``AsyncRun``)."""

    def __init__(self, plan: Node) -> None:
        self._plan = plan
        self._stage: Stage[Any] | None = None
        self._thread: threading.Thread | None = None
        self._buffer: deque[Any] = deque()
        self._tokens: SimpleQueue[None] = SimpleQueue()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._ended: asyncio.Future[None] | None = None  # set when the pump is done
        self.done = threading.Event()

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stage = materialize(self._plan)  # raises here, in the consumer, on a bad plan
        for _ in range(BUFFER):
            self._tokens.put(None)
        name = f"tinypl-aiter-{next(_ids)}"
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        stage = self._stage
        assert stage is not None
        buffer, token = self._buffer, self._tokens.get
        try:
            pull = stage.__next__
            while True:
                token()
                if self._closing:
                    break
                try:
                    x = pull()
                except StopIteration:
                    buffer.append(_END)
                    break
                buffer.append(x)
                if self._waiter is not None:
                    self._wake_consumer()
        except BaseException as error:  # raised in the consumer
            buffer.append(Failed(error))
        finally:
            try:
                stage.close()
            finally:
                self.done.set()
                self._wake_consumer()

    def _wake_consumer(self) -> None:
        with self._lock:
            waiter, self._waiter = self._waiter, None
            ended = self._ended
            loop = self._loop
            targets = [f for f in (waiter, ended if self.done.is_set() else None) if f]
            if loop is not None and targets:
                try:
                    for future in targets:
                        loop.call_soon_threadsafe(wake, future)
                except RuntimeError:
                    pass  # the consumer's loop is closed: nobody waits any more

    async def next(self) -> Any:
        if self._closing:
            raise StopAsyncIteration  # closed: what the buffer holds is dropped
        if self._thread is None:
            self._start()
        buffer = self._buffer
        while True:
            if buffer:
                x = buffer[0]
                if x is _END:
                    raise StopAsyncIteration
                if x.__class__ is Failed:
                    buffer[0] = _END  # raised once; the run is over
                    raise x.error
                buffer.popleft()
                self._tokens.put(None)
                return x
            assert self._loop is not None
            with self._lock:
                waiter = self._waiter = self._loop.create_future()
            # Looked at again once the waiter is published: the pump appends, then looks
            # for a waiter, so one of the two sees the other (no lost wake-up).
            if buffer:
                continue
            try:
                await waiter
            except asyncio.CancelledError:
                self.close()
                raise

    def close(self) -> None:
        """Stop the run without waiting: the pump closes it as it leaves."""
        self._closing = True
        self._tokens.put(None)
        stage = self._stage
        if stage is not None:
            signal_stop(stage)

    async def aclose(self) -> None:
        self.close()
        if self._thread is None or self.done.is_set():
            return
        assert self._loop is not None
        with self._lock:
            self._ended = self._loop.create_future()
            ended = self._ended
        if not self.done.is_set():
            await ended


class AsyncRun:
    """A run of a pipe consumed with ``async for`` (what ``Pipe.__aiter__`` returns).

    ``aclose()`` stops it and waits until every thread of the run has ended; dropping it
    (``break``) or cancelling the consuming task stops it without waiting.
    """

    def __init__(self, plan: Node) -> None:
        self._pump = _Pump(plan)
        weakref.finalize(self, self._pump.close)

    def __aiter__(self) -> AsyncRun:
        return self

    async def __anext__(self) -> Any:
        return await self._pump.next()

    async def aclose(self) -> None:
        """Stop the run and wait until its threads have ended."""
        await self._pump.aclose()
