"""The reader side of the result transport: :func:`loads`, :func:`discard`, :func:`trim_cache`.

Examples:
    >>> from tinypl._shm import ShmPool
    >>> with ShmPool(1 << 20, min_buffer=0) as pool:
    ...     discard(pool.dumps(b"x" * 100))
"""

from __future__ import annotations

import mmap
import os
import pickle
import threading
import time
import weakref
from typing import Any, Final

from ._layout import U64, MessageFormat, PoolHeader
from ._segments import attach_segment, pid_alive, unlink_segment

__all__ = ["discard", "loads", "trim_cache"]

_SLOTS = PoolHeader.SLOTS
_NSLOTS = PoolHeader.NSLOTS
_SWEEP_INTERVAL: Final = 1.0


class ReaderSegment:
    """Reader-side mapping of a pool segment (cached per process)."""

    __slots__ = ("mm", "name", "view", "writer_pid", "writer_start")

    def __init__(self, name: str, mm: mmap.mmap) -> None:
        self.name = name
        self.mm = mm
        self.view = memoryview(mm)
        self.writer_pid: int = U64.unpack_from(mm, PoolHeader.WRITER_PID)[0]
        self.writer_start: int = U64.unpack_from(mm, PoolHeader.WRITER_START)[0]

    def idle(self) -> bool:
        """No region is in use (so no message in flight refers to this segment)."""
        return self.mm.find(b"\x01", _SLOTS, _SLOTS + _NSLOTS) < 0

    def finished(self) -> bool:
        """The writer closed the pool or died, and nothing refers to the segment."""
        closed = bool(self.mm[PoolHeader.CLOSED])
        return (closed or not pid_alive(self.writer_pid, self.writer_start)) and self.idle()


_segments: dict[str, ReaderSegment] = {}
_segments_lock = threading.Lock()
_last_sweep = 0.0


def _after_fork_in_child() -> None:
    global _segments_lock
    _segments_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _sweep_locked() -> int:
    global _last_sweep
    _last_sweep = time.monotonic()
    dead = [name for name, segment in _segments.items() if segment.finished()]
    for name in dead:
        # Views still alive keep the mapping (and the pages) alive on their own.
        del _segments[name]
    return len(dead)


def trim_cache() -> int:
    """Drop cached reader mappings of pools that were closed or whose writer died.

    :func:`loads` does this by itself from time to time; call it after a
    worker exited to release its memory promptly. Mappings still referenced by
    live arrays are only unmapped once those arrays die. Returns the number of
    segments dropped from the cache.

    Examples:
        >>> trim_cache() >= 0
        True
    """
    with _segments_lock:
        return _sweep_locked()


def _attach(name: str) -> ReaderSegment:
    missing = ValueError(
        f"shared memory segment {name!r} of a ShmPool message does not exist "
        "(was the message already loaded in another process?)"
    )
    fd, mm = attach_segment(name, missing)
    os.close(fd)
    if mm[:8] != PoolHeader.MAGIC:
        mm.close()
        raise ValueError(f"shared memory segment {name!r} is not a ShmPool segment")
    mm[PoolHeader.ATTACHED] = 1
    unlink_segment(name)  # the only reader has it mapped now; nobody else needs the name
    return ReaderSegment(name, mm)


def _reader_segment(name: str) -> ReaderSegment:
    segment = _segments.get(name)
    if segment is not None:
        return segment
    with _segments_lock:
        segment = _segments.get(name)
        if segment is None:
            segment = _attach(name)
            _sweep_locked()
            _segments[name] = segment
        elif time.monotonic() - _last_sweep > _SWEEP_INTERVAL:
            _sweep_locked()
    return segment


Descriptor = tuple[int, int, int, int]  # segment index, slot, offset, nbytes


def _read_names(mv: memoryview, pos: int, count: int) -> tuple[list[str], int]:
    names: list[str] = []
    for _ in range(count):
        n = mv[pos]
        names.append(bytes(mv[pos + 1 : pos + 1 + n]).decode("ascii"))
        pos += 1 + n
    return names, pos


def _parse_message(mv: memoryview) -> tuple[list[ReaderSegment], list[Descriptor], int]:
    head = MessageFormat.HEAD
    if mv.nbytes < head.size:
        raise ValueError("not a ShmPool message (too short)")
    magic, version, _flags, nseg, ndesc = head.unpack_from(mv, 0)
    if magic != MessageFormat.MAGIC or version != MessageFormat.VERSION:
        raise ValueError("not a ShmPool message (bad magic or version)")
    names, pos = _read_names(mv, head.size, nseg)
    descs: list[Descriptor] = []
    for _ in range(ndesc):
        idx, _pad, slot, off, n = MessageFormat.DESC.unpack_from(mv, pos)
        pos += MessageFormat.DESC.size
        descs.append((idx, slot, off, n))
    segments = [_reader_segment(name) for name in names]
    for idx, slot, off, n in descs:
        if idx >= len(segments) or slot >= _NSLOTS or off + n > len(segments[idx].mm):
            raise ValueError("corrupt ShmPool message (descriptor out of range)")
    for idx, slot, _off, _n in descs:
        _check_unclaimed(segments[idx], slot)
    return segments, descs, pos


# Regions of loaded messages whose views are alive in this process: (segment, slot).
_live_regions: set[tuple[str, int]] = set()


def _release_region(mm: mmap.mmap, name: str, slot: int, pid: int) -> None:
    """Finalizer of a region's base array: give the region back to the writer."""
    if os.getpid() != pid:
        return  # a forked child dropping inherited views must not free the parent's regions
    _live_regions.discard((name, slot))
    mm[_SLOTS + slot] = 0
    if mm[PoolHeader.CLOSED]:
        _drop_if_finished(name)


def _drop_if_finished(name: str) -> None:
    """Unmap a closed pool's segment once its last region is back: the cached mapping
    holds a descriptor too, so keeping it would leak one fd per finished run."""
    # A finalizer may run inside a garbage collection that interrupted a holder of the
    # lock (this thread's own sweep, say): never wait for it; the next sweep drops it.
    if not _segments_lock.acquire(blocking=False):
        return
    try:
        segment = _segments.get(name)
        if segment is not None and segment.finished():
            del _segments[name]  # views still alive keep the mapping on their own
    finally:
        _segments_lock.release()


def _check_unclaimed(segment: ReaderSegment, slot: int) -> None:
    if (segment.name, slot) in _live_regions or not segment.mm[_SLOTS + slot]:
        raise ValueError(
            "this ShmPool message was already loaded or discarded; every message must be "
            "passed to loads() or discard() exactly once"
        )


def loads(message: bytes | bytearray | memoryview) -> Any:
    """Rebuild an object from a :meth:`ShmPool.dumps` message (in the reader process).

    Arrays whose data travelled through shared memory come back as zero-copy
    views on it (writable if the original was). Each region returns to the
    writer's pool when the last array using it is garbage collected; keeping
    arrays alive is safe -- even after the writer closed its pool or exited --
    but keeps their memory out of the pool. Segments are attached by name
    once per process and cached. Load every message exactly once, in one
    process (loading it again raises :class:`ValueError`); use :func:`discard`
    for messages you will not load.

    Examples:
        >>> import numpy as np
        >>> from tinypl._shm import ShmPool
        >>> pool = ShmPool(1 << 20, min_buffer=1024)
        >>> big, small = loads(pool.dumps([np.zeros(1000), np.zeros(10)]))
        >>> # only `big` lives in shared memory
        >>> pool.stats()["regions_in_use"]
        1
        >>> del big
        >>> pool.stats()["regions_in_use"]
        0
        >>> pool.close()
    """
    with memoryview(message) as raw, raw.cast("B") as mv:
        segments, descs, pos = _parse_message(mv)
        if not descs:
            return pickle.loads(mv[pos:])
        import numpy as np  # only messages with pooled buffers hold arrays

        pid = os.getpid()
        buffers: list[Any] = []
        for idx, slot, off, n in descs:
            segment = segments[idx]
            # frombuffer over a memoryview (not over another ndarray) so that numpy
            # does not collapse the base chain past this object: every array built
            # on the region keeps `region` alive, and its death frees the slot.
            region = np.frombuffer(segment.view[off : off + n], dtype=np.uint8)
            _live_regions.add((segment.name, slot))
            finalizer = weakref.finalize(
                region, _release_region, segment.mm, segment.name, slot, pid
            )
            finalizer.atexit = False
            buffers.append(region)
        return pickle.loads(mv[pos:], buffers=buffers)


def discard(message: bytes | bytearray | memoryview) -> None:
    """Give the pool regions of a message back without loading it.

    Use it for messages that will never be passed to :func:`loads` (for
    example results dropped after a cancellation), so that their memory
    returns to the pool and their segment names get unlinked.

    Examples:
        >>> import numpy as np
        >>> from tinypl._shm import ShmPool
        >>> with ShmPool(1 << 20, min_buffer=0) as pool:
        ...     discard(pool.dumps(np.ones(100)))
        ...     pool.stats()["regions_in_use"]
        0
    """
    with memoryview(message) as raw, raw.cast("B") as mv:
        segments, descs, _pos = _parse_message(mv)
        for idx, slot, _off, _n in descs:
            segments[idx].mm[_SLOTS + slot] = 0
