"""The writer side of the result transport of process stages: :class:`ShmPool`.

Examples:
    >>> from tinypl._shm import loads
    >>> with ShmPool(1 << 20, min_buffer=0) as pool:
    ...     loads(pool.dumps(b"x" * 10))
    b'xxxxxxxxxx'
"""

from __future__ import annotations

import mmap
import os
import pickle
import threading
import time
from typing import Any, Final

from ._layout import U64, MessageFormat, PoolHeader
from ._lend import Lending, Lent, check_order, check_shape, release
from ._pickling import dumps_out_of_band
from ._regions import Region, WriterSegment
from ._segments import (
    Backoff,
    ClosingContext,
    Creator,
    create_segment,
    current_process,
    pid_alive,
    process_identity,
    register_owner_cleanup,
    round_up,
)

__all__ = ["GROW_RETRY_INTERVAL", "ShmPool"]

GROW_RETRY_INTERVAL: Final = 1.0
"""Seconds a pool waits before it tries to create a segment again after a failure."""

_SLOTS = PoolHeader.SLOTS
_NSLOTS = PoolHeader.NSLOTS
_ALIGN = PoolHeader.REGION_ALIGN


def _init_header(mm: mmap.mmap, writer: Creator, reader: Creator) -> None:
    mm[:8] = PoolHeader.MAGIC
    U64.pack_into(mm, PoolHeader.WRITER_PID, writer[0])
    U64.pack_into(mm, PoolHeader.WRITER_START, writer[1])
    U64.pack_into(mm, PoolHeader.NSLOTS_AT, _NSLOTS)
    U64.pack_into(mm, PoolHeader.READER_PID, reader[0])
    U64.pack_into(mm, PoolHeader.READER_START, reader[1])


class PoolState:
    """Everything the pool owns, kept apart from :class:`ShmPool` for its finalizers."""

    def __init__(self, capacity: int, min_buffer: int, max_wait: float, reader_pid: int) -> None:
        self.capacity = capacity
        self.min_buffer = min_buffer
        self.max_wait = max_wait
        self.reader = process_identity(reader_pid)
        self.writer = current_process()
        self.pid = self.writer[0]
        self.segments: list[WriterSegment] = []
        # Reentrant: a result's own pickling may lend an array (ShmPool.empty in a
        # __reduce__) while dumps() holds the lock.
        self.lock = threading.RLock()
        self.closed = False
        self.inline_fallbacks = 0
        self.grow_failed_at = -1e9
        self.warned = False
        self.lending = Lending()

    # ---- allocation -------------------------------------------------------------

    def _free(self, states: bytes, region: Region) -> bool:
        """Whether ``region`` may be handed out, split or merged: its state byte says
        free (the reader is done with it) and no lent array of this process pins it."""
        return states[region.slot] == 0 and region not in self.lending.pinned

    def _best_free(self, need: int) -> tuple[WriterSegment, Region] | None:
        best: tuple[WriterSegment, Region] | None = None
        for segment in self.segments:
            states = segment.states()
            for r in segment.regions:
                fits = r.size >= need and self._free(states, r)
                if fits and (best is None or r.size < best[1].size):
                    best = (segment, r)
        return best

    def _find(self, need: int) -> tuple[WriterSegment, Region] | None:
        best = self._best_free(need)
        if best is not None:
            segment, r = best
            rest = r.size - need
            if rest >= max(self.min_buffer, _ALIGN) and segment.free_slots:
                # Split; the remainder's slot byte is 0 (free) already.
                new = Region(r.offset + need, rest, segment.free_slots.pop())
                r.size = need
                segment.regions.insert(segment.regions.index(r) + 1, new)
            segment.mark(r, True)
            return best
        for segment in self.segments:
            if segment.size - segment.top >= need and segment.free_slots:
                r = Region(segment.top, need, segment.free_slots.pop())
                segment.top += need
                segment.regions.append(r)
                segment.mark(r, True)
                return segment, r
        return None

    def _coalesce(self) -> bool:
        """Merge adjacent free regions (a free slot can only be taken by us, so this is safe)."""
        changed = False
        for segment in self.segments:
            states = segment.states()
            merged: list[Region] = []
            for r in segment.regions:
                prev = merged[-1] if merged else None
                if prev is not None and self._free(states, prev) and self._free(states, r):
                    prev.size += r.size
                    segment.free_slots.append(r.slot)
                    changed = True
                else:
                    merged.append(r)
            if merged and self._free(states, merged[-1]):
                last = merged.pop()
                segment.top = last.offset
                segment.free_slots.append(last.slot)
                changed = True
            segment.regions = merged
        return changed

    def _new_segment(self, size: int) -> WriterSegment | None:
        try:
            name, fd, mm = create_segment(PoolHeader.SIZE + size, "p", self.reader)
        except OSError as exc:
            self.grow_failed_at = time.monotonic()
            # Once per pool: a full /dev/shm stays full, and results still arrive inline.
            import logging  # here: a fork server imports this module, rarely logs

            logger = logging.getLogger("tinypl")
            log = logger.debug if self.warned else logger.warning
            self.warned = True
            log("ShmPool: cannot create a shared memory segment (sending inline): %s", exc)
            return None
        os.close(fd)
        _init_header(mm, self.writer, self.reader)
        return WriterSegment(name, mm)

    def _grow(self, need: int) -> tuple[WriterSegment, Region] | None:
        total = sum(segment.size - PoolHeader.SIZE for segment in self.segments)
        left = self.capacity - total
        if need > left or time.monotonic() - self.grow_failed_at < GROW_RETRY_INTERVAL:
            return None
        size = round_up(min(left, max(need, total, PoolHeader.MIN_SEGMENT)), _ALIGN)
        segment = self._new_segment(max(need, min(size, left - left % _ALIGN)))
        if segment is None:
            return None
        self.segments.append(segment)
        return self._find(need)

    def alloc(self, nbytes: int) -> tuple[WriterSegment, Region] | None:
        need = round_up(max(nbytes, 1), _ALIGN)
        if need > self.capacity:
            return None
        got = self._find(need)
        if got is None and self._coalesce():
            got = self._find(need)
        if got is None:
            got = self._grow(need)
        if got is None and self.max_wait > 0:
            backoff = Backoff(self.max_wait)
            while got is None and not backoff.expired():
                backoff.sleep()
                self._coalesce()
                got = self._find(need)
        return got

    # ---- lifecycle ----------------------------------------------------------------

    def trim(self, keep: int) -> int:
        """Close the newest segments with no region in use until at most ``keep`` bytes
        stay allocated; returns how many were closed."""
        closed = 0
        total = sum(segment.size - PoolHeader.SIZE for segment in self.segments)
        for segment in reversed(list(self.segments)):
            if total <= keep:
                break
            states = segment.states()
            if not all(self._free(states, r) for r in segment.regions):
                continue
            self.segments.remove(segment)
            total -= segment.size - PoolHeader.SIZE
            _close_segment(segment, reader_alive=True)
            closed += 1
        return closed

    def close(self) -> None:
        if self.closed or os.getpid() != self.pid:
            return  # a forked child must not touch its parent's pool
        self.closed = True
        reader_alive = pid_alive(*self.reader)
        for segment in self.segments:
            _close_segment(segment, reader_alive)
        self.segments.clear()


def _close_segment(segment: WriterSegment, reader_alive: bool) -> None:
    # A name that a sent message refers to, and that the reader has not attached yet,
    # must survive: the reader attaches and unlinks it when it loads (or discards) that
    # message.
    attached = segment.mm[PoolHeader.ATTACHED]
    segment.close(unlink=not segment.referenced or bool(attached) or not reader_alive)


class _Message:
    """A message being built by :meth:`ShmPool.dumps`: names and descriptors."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[bytes] = []
        self.descs: list[bytes] = []
        self.taken: list[tuple[WriterSegment, Region]] = []  # copied into: free on failure
        self.lent: list[Lent] = []  # lent regions it carries: lent again on failure

    def add(
        self, segment: WriterSegment, region: Region, nbytes: int, offset: int | None = None
    ) -> None:
        """One buffer in ``region``, at ``offset`` in the segment (default: the start of
        the region)."""
        idx = self.index.get(segment.name)
        if idx is None:
            idx = self.index[segment.name] = len(self.names)
            self.names.append(segment.name.encode("ascii"))
        at = region.offset if offset is None else offset
        self.descs.append(MessageFormat.DESC.pack(idx, 0, region.slot, at, nbytes))

    def pack(self, stream: bytes) -> bytes:
        head = MessageFormat.HEAD.pack(
            MessageFormat.MAGIC, MessageFormat.VERSION, 0, len(self.names), len(self.descs)
        )
        parts = [head]
        for name in self.names:
            parts += (bytes((len(name),)), name)
        return b"".join([*parts, *self.descs, stream])


def _take_buffer(state: PoolState, message: _Message, pb: pickle.PickleBuffer) -> bool:
    """Copy one out-of-band buffer into the pool; True keeps it inline instead."""
    with pb.raw() as raw:
        n = raw.nbytes
        if n < state.min_buffer:
            return True
        found = state.lending.find(raw)
        if found is not None:  # the data is in the pool already: no copy
            lent, offset = found
            lent.sent = True
            message.lent.append(lent)
            message.add(lent.segment, lent.region, n, offset)
            return False
        got = state.alloc(n)
        if got is None:
            state.inline_fallbacks += 1
            return True
        segment, region = got
        message.taken.append(got)
        message.add(segment, region, n)
        segment.view[region.offset : region.offset + n] = raw
    return False


class ShmPool(ClosingContext):
    """Single-writer shared-memory pool for zero-copy transport of results to a reader.

    Create one pool per worker process. :meth:`dumps` pickles an object with
    protocol 5; every out-of-band buffer (numpy array data) of at least
    ``min_buffer`` bytes is copied -- one ``memcpy`` -- into a region of the
    pool, smaller ones are kept inline. It returns a compact ``bytes`` message
    to send over a pipe. The reader process (normally the parent) calls
    :func:`~tinypl._shm.loads` on it and gets the object back with its large arrays
    as zero-copy views on the shared memory. When the reader drops the last
    reference to such an array the region goes back to the pool.

    Allocation: each segment has a table of one-byte region states in its
    header. Only the writer sets a state to "used" (when it hands the region
    out) and only the reader sets it back to "free" (when its views die), so no
    lock is needed. Region bookkeeping (offsets, sizes, splitting, coalescing of
    adjacent free regions, best fit) is private to the writer. Regions are
    reused, so in a steady state no page faults occur on either side. When no
    region fits, the pool grows by creating a new segment (sizes double, at
    least 4 MiB) until ``capacity`` bytes are reached, then waits up to
    ``max_wait`` seconds for the reader to free a region, and finally sends
    the buffer inline in the message (a copy through the pipe). That fallback
    means a reader holding on to all results can never deadlock the writer.
    When a segment cannot be created (a full ``/dev/shm``), the pool logs one
    warning, sends inline, and tries again every :data:`GROW_RETRY_INTERVAL` s.

    Segment names are unlinked as soon as nobody needs them: the reader
    unlinks a name right after attaching it (views stay valid, the mapping
    keeps the pages alive), and :meth:`close` (also run on garbage collection,
    interpreter exit and multiprocessing child exit) unlinks names that no
    message refers to. Only a message that is never loaded nor passed to
    :func:`~tinypl._shm.discard` can leave a segment behind (e.g. when a worker is
    killed with messages in flight); :func:`~tinypl._shm.cleanup_orphans` removes
    those once the writer (and the reader, or the pipe) is gone.

    Not thread-safe across processes: only the creating process may call
    :meth:`dumps`; all messages of one pool must be loaded by one reader
    process, each exactly once. The pool is not picklable.

    Args:
        capacity: maximum total bytes of shared memory (over all segments).
        min_buffer: buffers smaller than this are sent inline.
        max_wait: seconds to wait for a free region once the pool is at
            capacity before falling back to inline transport.
        reader_pid: pid of the process that loads the messages (default: the
            parent process). Used to unlink names if the reader died.

    Examples:
        >>> import numpy as np
        >>> from tinypl._shm import loads
        >>> pool = ShmPool(16 << 20)
        >>> message = pool.dumps({"img": np.ones((512, 512)), "id": 7})
        >>> # the array data is not in the message
        >>> len(message) < 1000
        True
        >>> out = loads(message)  # normally in another process
        >>> float(out["img"].sum()), out["id"], pool.stats()["regions_in_use"]
        (262144.0, 7, 1)
        >>> del out  # the region returns to the pool
        >>> pool.stats()["regions_in_use"]
        0
        >>> pool.close()
    """

    def __init__(
        self,
        capacity: int,
        min_buffer: int = 64 * 1024,
        *,
        max_wait: float = 0.01,
        reader_pid: int | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if min_buffer < 0:
            raise ValueError(f"min_buffer must be >= 0, got {min_buffer!r}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait!r}")
        reader = os.getppid() if reader_pid is None else reader_pid
        self._state = PoolState(capacity, min_buffer, max_wait, reader)
        register_owner_cleanup(self, self._state.close)

    @property
    def capacity(self) -> int:
        """Maximum total bytes of shared memory."""
        return self._state.capacity

    @property
    def min_buffer(self) -> int:
        """Buffers smaller than this many bytes are sent inline."""
        return self._state.min_buffer

    @property
    def owner(self) -> int:
        """The pid of the process that created the pool (the only one that may write)."""
        return self._state.pid

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state.closed

    def dumps(self, obj: object) -> bytes:
        """Serialize ``obj`` into a message for :func:`~tinypl._shm.loads`; large buffers
        go to the pool.

        Examples:
            >>> import numpy as np
            >>> from tinypl._shm import loads
            >>> with ShmPool(1 << 20, min_buffer=0) as pool:
            ...     loads(pool.dumps(np.arange(3))).tolist()
            [0, 1, 2]
        """
        state = self._state
        if os.getpid() != state.pid:
            raise RuntimeError("a ShmPool can only be used by the process that created it")
        if state.closed:
            raise ValueError("ShmPool is closed")
        message = _Message()
        with state.lock:
            try:
                stream = dumps_out_of_band(obj, lambda pb: _take_buffer(state, message, pb))
            except BaseException:
                for segment, region in message.taken:  # never sent: give the regions back
                    segment.mark(region, False)
                for lent in message.lent:
                    lent.sent = False
                    if not lent.alive:  # its array died while pickling: nobody has it
                        release(lent)
                raise
            for segment, _region in message.taken:
                segment.referenced = True
            for lent in message.lent:
                lent.segment.referenced = True
        return message.pack(stream)

    def empty(self, shape: int | tuple[int, ...], dtype: Any = float, order: str = "C") -> Any:
        """An uninitialized array that lives in the pool, so that :meth:`dumps` sends it
        (or a contiguous view of it) without copying it: it reaches the reader as a view
        on the same memory. Sent once; a later message carries a copy. Arrays smaller
        than ``min_buffer``, of object dtype, or for which the pool has no room are plain
        ``numpy.empty`` arrays.

        The region stays in use until the reader dropped the arrays it received and the
        last array on it here died (never sent: only the latter). Write to it only
        before sending it: after that the reader sees every write.

        Examples:
            >>> from tinypl._shm import loads
            >>> with ShmPool(1 << 22) as pool:
            ...     a = pool.empty((256, 256), "float32")
            ...     a.fill(2.0)
            ...     b = loads(pool.dumps(a))
            ...     a[0, 0] = 7.0  # the same memory (never do this after sending)
            ...     b.dtype.name, float(b[0, 0]), float(b[1, 1])
            ('float32', 7.0, 2.0)
        """
        import numpy as np

        dims, layout = check_shape(shape), check_order(order)
        kind = np.dtype(dtype)
        nbytes = kind.itemsize * int(np.prod(dims, dtype=np.int64))
        state = self._state
        plain = kind.hasobject or kind.subdtype is not None  # subarrays add dimensions
        if plain or nbytes < max(state.min_buffer, 1) or state.closed:
            return np.empty(dims, kind, layout)
        if os.getpid() != state.pid:
            raise RuntimeError("a ShmPool can only be used by the process that created it")
        with state.lock:
            got = state.alloc(nbytes)
            if got is None:
                return np.empty(dims, kind, layout)
            base = state.lending.lend(*got, nbytes)
        return base.view(kind).reshape(dims, order=layout)

    def stats(self) -> dict[str, int]:
        """Counters for monitoring and tests.

        Keys: ``segments``, ``allocated`` (bytes in segments), ``regions``,
        ``regions_in_use``, ``bytes_in_use`` and ``inline_fallbacks``.

        Examples:
            >>> with ShmPool(1 << 20) as pool:
            ...     pool.stats()["segments"]
            0
        """
        state = self._state
        with state.lock:
            regions = in_use = bytes_in_use = 0
            for segment in state.segments:
                states = segment.states()
                regions += len(segment.regions)
                for r in segment.regions:
                    if states[r.slot]:
                        in_use += 1
                        bytes_in_use += r.size
            return {
                "segments": len(state.segments),
                "allocated": sum(s.size - PoolHeader.SIZE for s in state.segments),
                "regions": regions,
                "regions_in_use": in_use,
                "bytes_in_use": bytes_in_use,
                "inline_fallbacks": state.inline_fallbacks,
            }

    def trim(self, keep: int) -> int:
        """Unmap the newest segments with no region in use until at most ``keep`` bytes
        of shared memory stay allocated (an idle worker keeps that much for its next
        run); returns how many segments were unmapped.

        Examples:
            >>> import numpy as np
            >>> from tinypl._shm import loads
            >>> with ShmPool(1 << 26) as pool:
            ...     kept = [loads(pool.dumps(np.ones(1 << 19))) for _ in range(4)]
            ...     del kept
            ...     before = pool.stats()["segments"]
            ...     closed = pool.trim(0)
            ...     before, closed, pool.stats()["segments"]
            (3, 3, 0)
        """
        with self._state.lock:
            return self._state.trim(keep)

    def close(self) -> None:
        """Unmap the pool and unlink segment names no pending message refers to.

        Idempotent. Views already handed out by :func:`~tinypl._shm.loads` stay valid.

        Examples:
            >>> pool = ShmPool(1 << 20)
            >>> pool.close(); pool.close(); pool.closed
            True
        """
        with self._state.lock:
            self._state.close()

    def __reduce__(self) -> Any:
        raise TypeError("ShmPool is not picklable: it belongs to the process that created it")

    def __repr__(self) -> str:
        state = self._state
        return (
            f"<ShmPool capacity={state.capacity} segments={len(state.segments)} "
            f"{'closed' if state.closed else 'open'}>"
        )
