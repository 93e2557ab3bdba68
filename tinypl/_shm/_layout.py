"""Byte layouts of the two segment formats (ring buffer and pool), shared by their
writers, their readers and the orphan sweep.

All integers are little endian. Both headers fill the first page of a segment and
start with an 8-byte magic.

Examples:
    >>> U64.unpack_from(bytes(8))[0]
    0
"""

from __future__ import annotations

import mmap
import struct
from typing import Final

__all__ = ["U64", "BlockState", "MessageFormat", "PoolHeader", "RingBlock", "RingHeader"]

U64: Final = struct.Struct("<Q")


class RingHeader:
    """Offsets in the first page of a ring buffer segment (u64 fields unless noted)."""

    MAGIC: Final = b"TPLRING1"
    SIZE: Final = 4096  # the data area starts here
    CAPACITY: Final = 8  # bytes in the data area
    ROVER: Final = 16  # block boundary where the next-fit search starts
    USED: Final = 24  # bytes in blocks that are not free
    SEQ: Final = 32  # allocation counter (high half of the tokens)
    CREATOR_PID: Final = 40
    CREATOR_START: Final = 48
    CLOSED: Final = 56  # one byte, set by the creator on close


class RingBlock:
    """The 64-byte header that starts every block of a ring buffer's data area."""

    HEADER: Final = struct.Struct("<QQII")  # size, token, state, pid of the holder
    PAYLOAD: Final = struct.Struct("<QI")  # stream length, number of buffers
    PAYLOAD_AT: Final = 24  # offset of PAYLOAD in the block
    HEADER_SIZE: Final = 64
    ENTRY: Final = struct.Struct("<QQ")  # (offset in block, length) per out-of-band buffer


class BlockState:
    """State of a ring buffer block (the ``state`` field of its header)."""

    FREE: Final = 0
    WRITING: Final = 1
    READY: Final = 2
    READING: Final = 3
    NAMES: Final = ("free", "writing", "ready", "reading")


class PoolHeader:
    """Offsets in the first page of a pool segment; one state byte per region follows."""

    MAGIC: Final = b"TPLPOOL1"
    SIZE: Final = 4096  # regions start here
    WRITER_PID: Final = 8
    WRITER_START: Final = 16
    NSLOTS_AT: Final = 24
    CLOSED: Final = 32  # byte: the writer closed the pool
    ATTACHED: Final = 33  # byte: the reader attached and unlinked the name
    READER_PID: Final = 40
    READER_START: Final = 48
    SLOTS: Final = 64  # the region state table: 1 used, 0 free
    NSLOTS: Final = SIZE - SLOTS
    MIN_SEGMENT: Final = 4 << 20
    REGION_ALIGN: Final = mmap.PAGESIZE


class MessageFormat:
    """A pool message: header, segment names (u8 length + ascii), descriptors, pickle."""

    MAGIC: Final = b"TPL5"
    HEAD: Final = struct.Struct("<4sBBHI")  # magic, version, flags, nseg, ndesc
    DESC: Final = struct.Struct("<HHIQQ")  # segment index, pad, slot, offset, nbytes
    VERSION: Final = 1
