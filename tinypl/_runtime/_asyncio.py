"""The asyncio backend: per-item stages run as coroutines on one event loop per stage.

An asyncio stage owns a loop thread (``tinypl-asyncio-N``) running ``concurrency`` worker
coroutines. Each takes an element from upstream, runs the compiled ops on it
(``_compile.coroutine_function``: ``async def`` functions are awaited, plain ones called
inline) and puts what came of it on the stage's output queue, which the consumer reads as
it reads a thread stage's (``_threads.QueueReader``). So at most ``concurrency`` items are
in flight, and a full output queue holds the workers back.

Where the elements come from:

- a builtin sequence source (list, range, ...) never blocks: the workers pull it inline;
- an async source directly upstream is driven on this loop (``async for``);
- anything else may block (a generator, a thread stage, an order window), so a feeder
  thread (``tinypl-asyncio-N-feed``) pulls it and hands the elements to the loop, a
  bounded number ahead.

A marker closes a *segment*: the items of a segment come out in completion order, but
every item pulled before a marker comes out before it and every item after it, after it
(a worker that finishes early in a later segment waits for its turn). In an ordered
region the elements are numbered records and markers travel inside them.

A worker error is recorded and no new element is taken; as in a thread stage, the items
in flight are finished and delivered, then the error is raised to the consumer.
``close()`` cancels every coroutine, and the loop thread ends with the run.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from queue import SimpleQueue
from typing import Any, NoReturn

from .. import _plan as plan
from .._marker import Marker
from ._asource import AsyncSourceStage, Failed, finish_loop, join_threads, wake
from ._collect import name_of
from ._compile import coroutine_function
from ._control import DONE, END, FAILED, SIGNAL_CHECK, Control
from ._failure import FailureHandling
from ._skip import Budget, budget_for, keep_budget
from ._stage import SourceStage, Stage, WorkerStage, signal_stop, worker_stage
from ._stats import LoopProbe, WorkerFigures
from ._threads import QueueReader

__all__ = ["LoopCore", "LoopStage", "loop_stage"]

_ids = itertools.count()


def _timer(timeout: float) -> Callable[[float, Any], Any]:
    """``await timed(start, awaitable)``: the awaitable, cancelled with ``TimeoutError``
    once its item has taken ``timeout`` seconds since ``start`` (``time.monotonic``)."""

    async def timed(start: float, awaitable: Any) -> Any:
        left = start + timeout - time.monotonic()
        try:
            return await asyncio.wait_for(awaitable, max(left, 0.0))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(f"the item took longer than timeout={timeout:g} s") from None

    return timed


def _compiled(node: plan.RunOnLoop, budget: Budget | None) -> Callable[[Any, int | None], Any]:
    """The stage's ops as one coroutine function: in the drop form inside an
    ``ignore_errors`` scope, and timed when the stage has a ``timeout``."""
    drop = seen = None
    if budget is not None:
        assert node.skip is not None
        drop = budget.drop
        seen = budget.count if node.skip.first else None
    timed = None if node.timeout is None else _timer(node.timeout)
    return coroutine_function(node.ops, drop=drop, seen=seen, timed=timed, clock=time.monotonic)


_WAIT = object()  # no element is ready: await one
_END = object()  # upstream has ended


# -- inputs: where the workers' elements come from ----------------------------------------


class _Inline:
    """A builtin sequence's iterator, pulled on the loop (it never blocks)."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._next = iterator.__next__

    def take(self) -> Any:
        try:
            return self._next()
        except StopIteration:
            return _END

    async def next(self) -> Any:
        return self.take()

    def stop(self) -> None:
        pass


class _AsyncInput:
    """An async iterable upstream, iterated on the loop by one worker at a time."""

    def __init__(self, iterable: Any) -> None:
        self._iterable = iterable
        self._iterator: Any = None
        self._lock: asyncio.Lock | None = None
        self._ended = False

    def take(self) -> Any:
        return _END if self._ended else _WAIT

    async def next(self) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ended:
                return _END
            if self._iterator is None:
                self._iterator = self._iterable.__aiter__()
            try:
                return await self._iterator.__anext__()
            except StopAsyncIteration:
                self._ended = True
                return _END

    def stop(self) -> None:
        pass

    async def aclose(self) -> None:
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


class _Feeder:
    """A thread pulling a (maybe blocking) upstream, at most ``room`` elements ahead."""

    def __init__(self, pull: Callable[[], Any], room: int, loop: asyncio.AbstractEventLoop):
        self._pull = pull
        self._loop = loop
        self._inbox: deque[Any] = deque()
        self._tokens: SimpleQueue[None] = SimpleQueue()
        for _ in range(room):
            self._tokens.put(None)
        self._hungry: asyncio.Future[None] | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self.closed = False  # the loop is closing: nobody to wake

    def run(self) -> None:
        pull, inbox, token = self._pull, self._inbox, self._tokens.get
        try:
            while True:
                token()
                if self._stopping:
                    return
                try:
                    x = pull()
                except StopIteration:
                    x = _END
                inbox.append(x)
                if self._hungry is not None:
                    self._feed()
                if x is _END:
                    return
        except BaseException as error:
            inbox.append(Failed(error))
            self._feed()

    def _feed(self) -> None:
        with self._lock:
            waiter, self._hungry = self._hungry, None
            if waiter is not None and not self.closed:
                self._loop.call_soon_threadsafe(wake, waiter)

    def close(self) -> None:
        """The loop is closing: nobody is left to wake."""
        with self._lock:
            self.closed = True

    def take(self) -> Any:
        inbox = self._inbox
        if not inbox:
            return _WAIT
        x = inbox[0]
        if x is _END:
            return x  # left in place: every worker sees the end
        if x.__class__ is Failed:
            raise x.error
        inbox.popleft()
        self._tokens.put(None)
        return x

    async def next(self) -> Any:
        while True:
            x = self.take()
            if x is not _WAIT:
                return x
            if self._stopping:
                return _END
            with self._lock:
                if self._hungry is None:
                    self._hungry = self._loop.create_future()
                waiter = self._hungry
            # Looked at again once the waiter is published: the feeder appends, then
            # looks for a waiter, so one of the two sees the other (no lost wake-up).
            if self._inbox:
                continue
            await waiter

    def stop(self) -> None:
        self._stopping = True
        self._tokens.put(None)
        self._feed()  # workers waiting for an element see the end


class _Segment:
    """The items between two markers: how many are in flight, and the marker after them."""

    __slots__ = ("marker", "pending", "turn")

    def __init__(self) -> None:
        self.pending = 0
        self.marker: Marker | None = None
        self.turn: asyncio.Future[None] | None = None  # set once it is the first segment


# -- the stage's core --------------------------------------------------------------------


class LoopCore(FailureHandling):
    """The loop thread, worker coroutines, feeder and output queue of one asyncio stage."""

    def __init__(
        self, upstream: Stage[Any], node: plan.RunOnLoop, budget: Budget | None = None
    ) -> None:
        self.upstream = upstream
        self.workers = node.concurrency
        self.maxsize = node.queue_size
        self.name = f"tinypl-asyncio-{next(_ids)}"
        self.out: SimpleQueue[Any] = SimpleQueue()
        self.get: Callable[[], Any] = self._start_and_get
        self.poll = self.out.get_nowait
        #: The figures of ``stage.stats()`` (written by the thread stage's reader).
        self.insight = WorkerFigures()
        self._apply = _compiled(node, budget)
        self._tagger = upstream._tagger
        #: Whether its queue holds the records of an ordered region (``_threads._read``).
        self.records = self._tagger is not None
        self._positions = self._tagger is not None and self._tagger.positions
        # Unordered, it keeps markers between segments, also numbered for a checkpoint.
        released = self._tagger is None or self._tagger.released
        self._marks = upstream._may_mark and released
        self._segments: deque[_Segment] = deque([_Segment()])
        self._advancing = False
        self._lock = threading.Lock()
        self._queued = 0  # elements in ``out`` (items and markers), at most maxsize
        self._space: deque[asyncio.Future[None]] = deque()  # workers waiting for room
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False  # the loop is closed
        self._input: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle: set[asyncio.Task[None]] = set()  # waiting for an element or a turn
        self._main: asyncio.Task[None] | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._signalled = False
        self.error: BaseException | None = None
        self._raised = False
        self._replicas = None
        self._fail_lock = self._lock
        self._shut = False

    # -- starting --------------------------------------------------------------------

    def _start_and_get(self) -> Any:
        with self._lock:
            if not self._threads and not self._stopping:
                self.insight.started = time.perf_counter()
                self._start()
            self.get = functools.partial(self.out.get, True, SIGNAL_CHECK)
        return self.get()

    def _start(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        upstream = self.upstream
        raw = upstream.raw
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._threads.append(thread)
        if isinstance(upstream, AsyncSourceStage) and upstream.adopt():
            self._input = _AsyncInput(upstream.driver.iterable)
        elif isinstance(upstream, SourceStage) and upstream._can_share() and not self._marks:
            self._input = _Inline(raw)  # a builtin sequence's iterator: never blocks
        else:
            feeder = _Feeder(raw.__next__, self.workers, loop)
            self._input = feeder
            name = f"{self.name}-feed"
            self._threads.append(threading.Thread(target=feeder.run, name=name, daemon=True))
        for started in self._threads:
            started.start()

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run_workers())
            finish_loop(loop)
        except BaseException as error:  # reported to the consumer
            self._record(error)
        finally:
            with self._lock:
                self._closed = True
                self._space.clear()
            if isinstance(self._input, _Feeder):
                self._input.close()
            asyncio.set_event_loop(None)
            loop.close()
            self.out.put(DONE)

    # -- on the loop -----------------------------------------------------------------

    async def _run_workers(self) -> None:
        self._main = asyncio.current_task()
        if self._stopping:
            return
        self._tasks = [asyncio.ensure_future(self._work()) for _ in range(self.workers)]
        try:
            # return_exceptions: a worker cancelled after an error must not stop the rest.
            await asyncio.gather(*self._tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if isinstance(self._input, _AsyncInput):
                await self._input.aclose()

    async def _work(self) -> None:
        source, apply, tagged = self._input, self._apply, self._tagger is not None
        idle, task = self._idle, asyncio.current_task()
        assert task is not None
        n: int | None = None
        try:
            while not self._stopping:
                x = source.take()
                if x is _WAIT:
                    idle.add(task)
                    try:
                        x = await source.next()
                    finally:
                        idle.discard(task)
                if x is _END:
                    return
                if self._marks:
                    await self._segmented(x, task, tagged)
                elif tagged:
                    n, items = x
                    done = await apply(items, n if self._positions else None)
                    await self._put((n, done))
                else:
                    for y in await apply((x,), None):
                        await self._put(y)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # reported to the consumer
            if n is not None and self._tagger is not None:
                self._tagger.fail(n, error)
            self._record(error)

    async def _segmented(self, x: Any, task: asyncio.Task[None], tagged: bool) -> None:
        """``x`` in its segment; ``tagged``: ``x`` is a record ``(n, items)`` of a
        released region (a marker travels alone in its record)."""
        segments = self._segments
        items = x[1] if tagged else (x,)
        if len(items) == 1 and items[0].__class__ is Marker:
            segments[-1].marker = x
            segments.append(_Segment())
            await self._advance()
            return
        segment = segments[-1]
        segment.pending += 1
        n = x[0] if tagged else None
        try:
            done = await self._apply(items, n if self._positions else None)
        except BaseException as error:
            if n is not None:
                assert self._tagger is not None
                self._tagger.fail(n, error)
            raise
        if tagged:
            done = [(n, done)]
        if segment is not segments[0]:
            if self._stopping:
                return  # an earlier item failed: this one comes after it
            if segment.turn is None:
                segment.turn = asyncio.get_running_loop().create_future()
            self._idle.add(task)
            try:
                await segment.turn
            finally:
                self._idle.discard(task)
        for y in done:
            await self._put(y)
        segment.pending -= 1
        if not segment.pending:
            await self._advance()

    async def _advance(self) -> None:
        """Hand out the marker of every finished first segment (one worker at a time)."""
        if self._advancing:
            return  # the worker advancing sees what changed when its put returns
        self._advancing = True
        try:
            segments = self._segments
            while len(segments) > 1 and not segments[0].pending:
                marker = segments[0].marker
                await self._put(marker)
                segments.popleft()
                turn = segments[0].turn
                if turn is not None:
                    wake(turn)
        finally:
            self._advancing = False

    async def _put(self, x: Any) -> None:
        while True:
            with self._lock:
                if self._queued < self.maxsize:
                    self._queued += 1
                    break
                waiter = asyncio.get_running_loop().create_future()
                self._space.append(waiter)
            await waiter
        self.out.put(x)

    def _record(self, error: BaseException) -> None:
        with self._lock:
            first = self.error is None
            if first:
                self.error = error
        self._stopping = True
        if not first:
            return
        # As in a thread stage, the items in flight are finished and delivered before the
        # error is raised (in an ordered region: every item before the failed one); the
        # workers waiting for an element, or for a turn behind the failed item, stop now.
        for task in list(self._idle):
            task.cancel()
        if self._input is not None:
            self._input.stop()
        # The error is raised once the loop is done; a feeder waiting upstream (an order
        # window held open by the failed item) must be woken to finish.
        signal_stop(self.upstream)

    def _cancel(self) -> None:
        if self._main is not None:
            self._main.cancel()

    # -- reader side -----------------------------------------------------------------

    def free(self, _: object) -> None:
        """A reader took an element off the queue: its slot is free."""
        with self._lock:
            self._queued -= 1
            if self._space and not self._closed:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(wake, self._space.popleft())

    def fill(self) -> float:
        return min(max(self._queued, 0), self.maxsize) / self.maxsize

    def control(self, message: Control) -> None:
        """Handle a control message pulled by a reader: return to read on, or raise."""
        if message is not END and self.error is not None:
            self.fail()
        self.out.put(END)
        raise StopIteration

    def fail(self) -> NoReturn:
        self.out.put(FAILED)  # other readers fail as well
        self.raise_failure("raise")

    # -- Core protocol ---------------------------------------------------------------

    def signal(self) -> None:
        with self._lock:
            if self._signalled:
                return
            self._signalled = True
            self._stopping = True
            if self._loop is not None and not self._closed:
                self._loop.call_soon_threadsafe(self._cancel)
        if self._input is not None:
            self._input.stop()
        self.out.put(END)  # wakes readers waiting for an item

    def shutdown(self) -> None:
        self.signal()
        with self._lock:
            if self._shut:
                return
            self._shut = True
            threads = list(self._threads)
        join_threads(threads, "asyncio")
        out = self.out
        while not out.empty():
            out.get_nowait()
        out.put(FAILED if self.error is not None else END)


class LoopStage(WorkerStage[Any]):
    """A live asyncio stage: ``workers`` is its concurrency, ``maxsize`` its queue bound."""


def loop_stage(node: plan.RunOnLoop, upstream: Stage[Any]) -> Stage[Any]:
    budget = budget_for(node.skip, upstream)  # in an ignore_errors scope
    core = LoopCore(upstream, node, budget)
    # The thread stage's reader: it needs only get/free/control/close_in_background.
    reader = QueueReader(core)  # type: ignore[arg-type]
    stage = worker_stage(LoopStage, reader, node, upstream, core)
    stage._probe = LoopProbe(core, name_of(node))
    return keep_budget(stage, budget)
