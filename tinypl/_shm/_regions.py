"""The writer's view of a pool segment and of the regions in it (shared by the pool and
by the arrays it lends).

Examples:
    >>> Region(4096, 8192, 0).size
    8192
"""

from __future__ import annotations

import mmap
from contextlib import suppress

from ._layout import PoolHeader
from ._segments import unlink_segment

__all__ = ["Region", "WriterSegment"]

_SLOTS = PoolHeader.SLOTS
_NSLOTS = PoolHeader.NSLOTS


class Region:
    """A piece of a segment that one buffer of one message occupies."""

    __slots__ = ("offset", "size", "slot")

    def __init__(self, offset: int, size: int, slot: int) -> None:
        self.offset = offset
        self.size = size
        self.slot = slot


class WriterSegment:
    """Writer-side view of one pool segment; region bookkeeping is writer-private."""

    __slots__ = ("free_slots", "mm", "name", "referenced", "regions", "size", "top", "view")

    def __init__(self, name: str, mm: mmap.mmap) -> None:
        self.name = name
        self.mm = mm
        self.size = len(mm)
        self.view = memoryview(mm)
        self.top = PoolHeader.SIZE  # start of the never-used tail of the segment
        self.regions: list[Region] = []  # sorted by offset, contiguous up to top
        self.free_slots = list(range(_NSLOTS - 1, -1, -1))
        self.referenced = False  # some returned message points into this segment

    def states(self) -> bytes:
        return self.mm[_SLOTS : _SLOTS + _NSLOTS]

    def mark(self, region: Region, used: bool) -> None:
        self.mm[_SLOTS + region.slot] = used

    def close(self, unlink: bool) -> None:
        try:
            self.mm[PoolHeader.CLOSED] = 1
            if unlink:
                unlink_segment(self.name)
        finally:
            with suppress(BufferError):  # a dumps() still running in a thread
                self.view.release()
                self.mm.close()
