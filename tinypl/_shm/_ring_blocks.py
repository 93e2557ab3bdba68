"""The inside of a ring buffer: its mapping, its lock and its block allocator.

Blocks tile the data area; free blocks are merged lazily while searching. Next fit:
the search starts at the rover, just past the previous allocation, so FIFO use
behaves like a classic ring buffer, while space freed out of order is reused at once
and an unread block only pins its own bytes. The allocation state lives in the
segment and is protected by ``fcntl.flock`` on a per-process file descriptor plus a
per-process :class:`threading.Lock`.

Examples:
    >>> BlockState.NAMES[BlockState.READY]
    'ready'
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

from ._layout import U64, BlockState, RingBlock, RingHeader
from ._segments import ALIGN, Backoff, open_segment_fd, pid_alive, unlink_segment

__all__ = ["Block", "BufferClosedError", "RingCore", "RingMapping"]

_HEADER = RingBlock.HEADER
_DATA = RingHeader.SIZE


class BufferClosedError(RuntimeError):
    """The shared buffer is gone: its creator closed it or the creator process died.

    Raised by :meth:`SharedMemoryRingBuffer.write` (including a writer that is
    waiting for free space) and :meth:`SharedMemoryRingBuffer.read` in processes
    that merely *attached* to the buffer, so that they never block forever on a
    buffer nobody reads any more.

    Examples:
        >>> issubclass(BufferClosedError, RuntimeError)
        True
    """


class Block(NamedTuple):
    """One block of a ring buffer's data area, as :meth:`RingCore.blocks` lists it."""

    position: int
    """Offset in the data area."""
    size: int
    """Bytes, header included."""
    state: str
    """One of :attr:`BlockState.NAMES`."""


class RingMapping:
    """A process-local mapping of one segment plus its idempotent cleanup.

    Kept apart from the objects using it so that finalizers can reference it without
    keeping those objects alive. If ``owner_pid`` is this process, the cleanup also
    marks the segment closed and unlinks its name.
    """

    __slots__ = ("fd", "mm", "name", "owner_pid", "released")

    def __init__(self, name: str, fd: int, mm: mmap.mmap, owner_pid: int) -> None:
        self.name = name
        self.fd = fd
        self.mm = mm
        self.owner_pid = owner_pid
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            if self.owner_pid == os.getpid():
                with suppress(ValueError, IndexError):  # already unmapped
                    self.mm[RingHeader.CLOSED] = 1
                unlink_segment(self.name)
        finally:
            if self.fd >= 0:
                with suppress(OSError):
                    os.close(self.fd)
                self.fd = -1
            # BufferError: a thread still copies through a view; the mapping then
            # goes away when that view and this object are garbage collected.
            with suppress(BufferError):
                self.mm.close()

    def reopen_fd_after_fork(self) -> None:
        """Give a forked child its own open file description (flock is per description)."""
        if self.released or self.fd < 0:
            return
        old = self.fd
        try:
            self.fd = os.open(f"/proc/self/fd/{old}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            try:
                self.fd = open_segment_fd(self.name)
            except OSError:
                self.fd = -1
        with suppress(OSError):
            os.close(old)


class RingCore:
    """Per-process state of one ring buffer segment, shared by all handles in the process."""

    def __init__(self, mapping: RingMapping, owner: bool) -> None:
        mm = mapping.mm
        if mm[:8] != RingHeader.MAGIC:
            raise ValueError(f"shared memory segment {mapping.name!r} is not a ring buffer")
        self.mapping = mapping
        self.name = mapping.name
        self.owner = owner
        self.capacity: int = U64.unpack_from(mm, RingHeader.CAPACITY)[0]
        self.creator_pid: int = U64.unpack_from(mm, RingHeader.CREATOR_PID)[0]
        self.creator_start: int = U64.unpack_from(mm, RingHeader.CREATOR_START)[0]
        self.thread_lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError("internal object")

    @property
    def released(self) -> bool:
        return self.mapping.released

    def is_creator(self) -> bool:
        return self.owner and self.mapping.owner_pid == os.getpid()

    def after_fork(self) -> None:
        self.thread_lock = threading.Lock()
        self.mapping.reopen_fd_after_fork()

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """Exclusive access to the header: thread lock, then flock on our own fd."""
        with self.thread_lock:
            if self.mapping.released:
                raise ValueError("SharedMemoryRingBuffer is closed")
            mm = self.mapping.mm
            if mm[RingHeader.CLOSED]:
                raise BufferClosedError(
                    f"SharedMemoryRingBuffer {self.name!r} was closed by its creator "
                    f"(pid {self.creator_pid})"
                )
            fd = self.mapping.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield mm
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self.thread_lock:
            self.mapping.release()

    # ---- allocation (the caller holds the lock) ------------------------------------

    def _block(self, mm: mmap.mmap, pos: int) -> tuple[int, int, int, int]:
        size, token, state, pid = _HEADER.unpack_from(mm, _DATA + pos)
        if size <= 0 or size % ALIGN or pos + size > self.capacity:
            raise RuntimeError(
                f"SharedMemoryRingBuffer {self.name!r} is corrupted (block at {pos} has "
                f"size {size})"
            )
        return size, token, state, pid

    def _merge_free(self, mm: mmap.mmap, pos: int, size: int) -> int:
        """Merge the free blocks that follow the free block at ``pos``; its new size."""
        end = pos + size
        while end < self.capacity:
            next_size, _token, next_state, _pid = self._block(mm, end)
            if next_state != BlockState.FREE:
                break
            end += next_size
        if end - pos != size:
            _HEADER.pack_into(mm, _DATA + pos, end - pos, 0, BlockState.FREE, 0)
        return end - pos

    def _take(self, mm: mmap.mmap, pos: int, size: int, total: int) -> int:
        """Turn the free block at ``pos`` into a WRITING block of ``total`` bytes."""
        if size > total:  # split off the rest as a free block
            _HEADER.pack_into(mm, _DATA + pos + total, size - total, 0, BlockState.FREE, 0)
        seq: int = U64.unpack_from(mm, RingHeader.SEQ)[0] + 1
        U64.pack_into(mm, RingHeader.SEQ, seq)
        token = ((seq & 0xFFFFFFFF) << 32) | int.from_bytes(os.urandom(4), "little")
        _HEADER.pack_into(mm, _DATA + pos, total, token, BlockState.WRITING, os.getpid())
        RingBlock.PAYLOAD.pack_into(mm, _DATA + pos + RingBlock.PAYLOAD_AT, 0, 0)
        U64.pack_into(mm, RingHeader.ROVER, (pos + total) % self.capacity)
        U64.pack_into(mm, RingHeader.USED, U64.unpack_from(mm, RingHeader.USED)[0] + total)
        return token

    def _try_alloc(self, mm: mmap.mmap, total: int) -> tuple[int, int] | None:
        cap = self.capacity
        pos: int = U64.unpack_from(mm, RingHeader.ROVER)[0]
        if not U64.unpack_from(mm, RingHeader.USED)[0]:
            pos = 0  # empty: restart at the beginning (cache-warm, least fragmented)
        scanned = 0
        while scanned < cap:
            size, _token, state, _pid = self._block(mm, pos)
            if state == BlockState.FREE:
                size = self._merge_free(mm, pos, size)
                if size >= total:
                    return pos, self._take(mm, pos, size, total)
            scanned += size
            pos = (pos + size) % cap
        # A merge may have swallowed the rover's block boundary; 0 always is one.
        U64.pack_into(mm, RingHeader.ROVER, 0)
        return None

    def _free_locked(self, mm: mmap.mmap, pos: int) -> None:
        size, _token, state, _pid = self._block(mm, pos)
        if state != BlockState.FREE:
            _HEADER.pack_into(mm, _DATA + pos, size, 0, BlockState.FREE, 0)
            U64.pack_into(mm, RingHeader.USED, U64.unpack_from(mm, RingHeader.USED)[0] - size)

    def _reclaim_dead(self, mm: mmap.mmap) -> None:
        """Free blocks whose writer or reader process died mid-operation."""
        me = os.getpid()
        pos = 0
        while pos < self.capacity:
            size, _token, state, pid = self._block(mm, pos)
            busy = state in (BlockState.WRITING, BlockState.READING)
            if busy and pid != me and not pid_alive(pid):
                import logging  # here: only a dead process's block needs it

                logging.getLogger("tinypl").warning(
                    "SharedMemoryRingBuffer %s: reclaiming %d bytes held by dead process %d",
                    self.name,
                    size,
                    pid,
                )
                self._free_locked(mm, pos)
            pos += size

    def _creator_died(self) -> bool:
        return not self.is_creator() and not pid_alive(self.creator_pid, self.creator_start)

    def alloc(self, total: int, timeout: float | None) -> tuple[int, int]:
        """Reserve ``total`` bytes; blocks (polling) while the buffer is full."""
        backoff: Backoff | None = None
        while True:
            with self.locked() as mm:
                got = self._try_alloc(mm, total)
            if got is not None:
                return got
            if backoff is None:
                backoff = Backoff(timeout)
            elif backoff.check_due():
                if self._creator_died():
                    raise BufferClosedError(
                        f"SharedMemoryRingBuffer {self.name!r} is full and its creator "
                        f"process {self.creator_pid} died, so nobody will free space"
                    )
                with self.locked() as mm:
                    self._reclaim_dead(mm)
            if backoff.expired():
                raise TimeoutError(
                    f"no space for {total} bytes in SharedMemoryRingBuffer {self.name!r} "
                    f"after waiting {timeout} s (capacity {self.capacity} bytes, "
                    f"{self.in_use()} in use); read (or discard) pending references to "
                    "free space"
                )
            backoff.sleep()

    def set_state(self, pos: int, token: int, state: int) -> None:
        with self.locked() as mm:
            size, found, _state, _pid = _HEADER.unpack_from(mm, _DATA + pos)
            if found == token:
                _HEADER.pack_into(mm, _DATA + pos, size, token, state, os.getpid())

    def free(self, pos: int) -> None:
        with self.locked() as mm:
            self._free_locked(mm, pos)

    def claim(self, pos: int, token: int, nbytes: int) -> bool:
        """Mark the block READING if it still holds the unread object of that token.

        A stale position is either a block boundary whose token changed, or lies
        inside another block; there a header-like match of the 64-bit random-salted
        token, the size and the state is practically impossible.
        """
        with self.locked() as mm:
            if 0 <= pos <= self.capacity - RingBlock.HEADER_SIZE and pos % ALIGN == 0:
                size, found, state, _pid = _HEADER.unpack_from(mm, _DATA + pos)
                if found == token and size == nbytes and state == BlockState.READY:
                    _HEADER.pack_into(mm, _DATA + pos, size, token, BlockState.READING, os.getpid())
                    return True
        return False

    def in_use(self) -> int:
        with self.locked() as mm:
            used: int = U64.unpack_from(mm, RingHeader.USED)[0]
        return used

    def blocks(self) -> list[Block]:
        """The blocks tiling the data area, in order (for tests and debugging)."""
        out: list[Block] = []
        with self.locked() as mm:
            pos = 0
            while pos < self.capacity:
                size, _token, state, _pid = self._block(mm, pos)
                out.append(Block(pos, size, BlockState.NAMES[state]))
                pos += size
        return out
