"""The feeder of a process stage: a thread that pulls the stages upstream, packs items
into chunks (their size adapts to the measured cost per item) and sends each chunk to
the least busy worker, at most ``maxsize`` chunks in flight (credits)."""

from __future__ import annotations

import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from .._marker import Marker
from ._control import DONE, failure
from ._stage import Stage
from ._worker import unpicklable

__all__ = ["Feeder"]

#: Target seconds of worker time per chunk, and of feeder time to gather one.
CHUNK_SECONDS = 0.005
GATHER_SECONDS = 0.002
MAX_CHUNK = 4096


class _Stopped(Exception):
    """The stage was closed while the feeder waited."""


class Feeder:
    """Chunks of the upstream items, sent through ``send(index, data)``; markers and
    control messages go to ``post`` (the reader's queue) instead."""

    #: Target seconds of worker time per chunk (an executor stage aims higher: each of
    #: its chunks pays the engine's scheduling cost).
    chunk_seconds = CHUNK_SECONDS

    def __init__(
        self,
        upstream: Stage[Any],
        *,
        stage: str,
        workers: int,
        maxsize: int,
        chunksize: int | None,
        send: Callable[[int, bytes], None],
        post: Callable[[Any], None],
        keep: bool = False,
    ) -> None:
        self.upstream = upstream
        self.stage = stage
        self.workers = workers
        self.maxsize = maxsize
        self.chunksize = chunksize
        self.tagged = upstream._tagger is not None
        self.item_cost = 0.0  # seconds of worker time per item (moving average)
        #: Chunks sent to each worker and not yet answered.
        self.outstanding = [0] * workers
        self.stopping = False
        self._send_bytes = send
        self._post = post
        self._credits: SimpleQueue[None] = SimpleQueue()
        for _ in range(maxsize):
            self._credits.put(None)
        self._lock = threading.Lock()  # the outstanding counts
        self._chunk: list[Any] = []  # the chunk being gathered
        self._chunk_lock = threading.Lock()
        self._send_lock = threading.Lock()  # the feeder and a flushing reader share pipes
        self._chunk_ids = 0
        self._started = 0.0  # when the chunk being gathered got its first item
        self._thread: threading.Thread | None = None
        #: ``keep``: the chunks each worker holds (sent, not answered), oldest first, so
        #: that a worker can be replaced and what it held sent again (timeout, restart).
        self.keep = keep
        self.held: list[deque[tuple[int, list[Any]]]] = [deque() for _ in range(workers)]

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the feeder to stop; wakes it if it waits for a credit."""
        self.stopping = True
        self._credits.put(None)

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def received(self, index: int) -> None:
        """Worker ``index`` answered a chunk: one more may be sent."""
        with self._lock:
            self.outstanding[index] -= 1
            if self.keep:
                self.held[index].popleft()  # a worker answers its chunks in order
        self._credits.put(None)

    def measured(self, count: int, elapsed: float) -> None:
        """A worker spent ``elapsed`` seconds on a chunk of ``count`` items."""
        if count:
            cost = elapsed / count
            self.item_cost = cost if self.item_cost == 0 else 0.8 * self.item_cost + 0.2 * cost

    def in_flight(self) -> int:
        return sum(self.outstanding)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._pump()
        except _Stopped:
            pass
        except BaseException as error:
            # Items gathered before the error was raised still go to the workers.
            try:
                if not self.stopping:
                    self.flush()
            except BaseException:  # the first error is the one to report
                pass
            self._post(failure(error))
        finally:
            self._post(DONE)

    def _pump(self) -> None:
        pull = self.upstream.raw.__next__
        tagger = self.upstream._tagger
        fixed = self.chunksize
        size = 1 if fixed is None else fixed
        while not self.stopping:
            if self._chunk and tagger is not None and tagger.would_block():
                # The numbers we hold count against the order window: send them before
                # waiting for it, or the load would wait for them forever.
                self.flush()
            try:
                x = pull()
            except StopIteration:
                break
            if self._bypasses(x):
                self.flush()
                self._post(x)
                continue
            chunk, gathered = self._gather(x, size)
            if chunk is None:
                continue
            self._send(chunk)
            if fixed is None:
                size = self._next_size(size, gathered)
            if tagger is not None and tagger.adaptive:
                tagger.window = max(tagger.window, (self.maxsize + self.workers) * size)
        if not self.stopping:
            self.flush()

    def _bypasses(self, x: Any) -> bool:
        # Markers never enter a worker (nor an ordered record holding one, or none).
        if self.tagged:
            items = x[1]
            return not items or any(i.__class__ is Marker for i in items)
        return x.__class__ is Marker

    def _gather(self, x: Any, size: int) -> tuple[list[Any] | None, float]:
        """Add ``x`` to the chunk; the chunk and the gathering time per item once full."""
        with self._chunk_lock:
            chunk = self._chunk
            if not chunk:
                self._started = time.perf_counter()
            chunk.append(x)
            if len(chunk) < size:
                return None, 0.0
            self._chunk = []
        return chunk, (time.perf_counter() - self._started) / len(chunk)

    def _next_size(self, size: int, gathered: float) -> int:
        # Grow by doubling towards a chunk that keeps a worker busy for CHUNK_SECONDS,
        # but never so big that gathering it from a slow upstream delays the workers.
        if self.item_cost == 0:
            return size  # no cost measured yet: items might be large, stay small
        target = min(MAX_CHUNK, int(self.chunk_seconds / self.item_cost))
        if gathered > 0:
            target = min(target, int(GATHER_SECONDS / gathered))
        return max(1, min(size * 2, target))

    def flush(self, *, wait: bool = True) -> None:
        """Send the partial chunk, if any: the feeder, or (``wait=False``) a reader about
        to wait, which never waits for a credit. Only the reader hands credits back, and
        the feeder may take the last one after the reader saw nothing in flight: with no
        credit the chunk stays, for the feeder or the reader's next flush."""
        with self._chunk_lock:
            chunk, self._chunk = self._chunk, []
        if not chunk:
            return
        if not wait:
            try:
                self._credits.get_nowait()
            except Empty:
                with self._chunk_lock:
                    self._chunk[:0] = chunk  # before what the feeder gathered since
                return
        self._send(chunk, credited=not wait)

    def _send(self, chunk: list[Any], *, credited: bool = False) -> None:
        import cloudpickle

        if not credited:
            self._credits.get()
        if self.stopping:
            raise _Stopped
        with self._lock:
            self._chunk_ids += 1
            chunk_id = self._chunk_ids
        try:
            # By value where needed: classes defined in __main__ do not exist in workers.
            data = cloudpickle.dumps((chunk_id, chunk), protocol=5)
        except Exception as error:
            # In an ordered region each element is a record (n, items): name an item.
            items = [y for x in chunk for y in x[1]] if self.tagged else chunk
            bad = unpicklable(items, pickle.dumps)
            raise TypeError(
                f"{self.stage}: an item of type {bad} cannot be pickled to send it to"
                f" a worker process: {error}"
            ) from error
        with self._send_lock:
            if self.stopping:
                # Checked again under the lock: a stage that keeps its workers sends
                # them STOP holding this lock, and nothing may follow it.
                raise _Stopped
            # The worker is chosen and counted under the send lock: ``resend`` resets a
            # replaced worker's count under it too, and a count taken before would be
            # lost, so that the reader would finish with this chunk still in flight.
            with self._lock:
                index = min(range(self.workers), key=self.outstanding.__getitem__)
                self.outstanding[index] += 1
                if self.keep:
                    self.held[index].append((chunk_id, chunk))
            self._send_bytes(index, data)

    @property
    def send_lock(self) -> threading.Lock:
        """Held while a chunk is sent (and while the workers' pipes are rewired)."""
        return self._send_lock

    def resend(
        self,
        index: int,
        replace: Callable[[], list[tuple[int, list[Any]]]],
        waiting: Callable[[], None],
    ) -> None:
        """Worker ``index`` was replaced: send what it held again. ``replace`` runs while
        no chunk is being sent (it starts the new worker) and returns the chunks to send
        again, which may be fewer than were held (a credit comes back for each missing).
        ``waiting`` is called while a send in progress holds the pipes: it reads results,
        so that a worker blocked on its result pipe lets that send finish."""
        import cloudpickle

        while not self._send_lock.acquire(timeout=0.05):
            waiting()
        try:
            chunks = replace()
            with self._lock:
                gone = len(self.held[index]) - len(chunks)
                self.held[index] = deque(chunks)
                self.outstanding[index] = len(chunks)
            for chunk_id, chunk in chunks:
                self._send_bytes(index, cloudpickle.dumps((chunk_id, chunk), protocol=5))
        finally:
            self._send_lock.release()
        for _ in range(gone):
            self._credits.put(None)

    def new_id(self) -> int:
        """A chunk id no chunk has had."""
        with self._lock:
            self._chunk_ids += 1
            return self._chunk_ids

    def holding(self, index: int) -> list[tuple[int, list[Any]]]:
        """The chunks worker ``index`` holds, oldest first (with ``keep``)."""
        with self._lock:
            return list(self.held[index])
