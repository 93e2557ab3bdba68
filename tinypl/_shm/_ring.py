"""The public ring buffer of tinypl 0.1.0 (``pl.process.SharedMemoryRingBuffer``).

Examples:
    >>> with SharedMemoryRingBuffer(1 << 16) as rb:
    ...     rb.read(rb.write({"a": 1}))
    {'a': 1}
"""

from __future__ import annotations

import os
import pickle
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from .._validate import check_bool, check_int, check_number
from ._layout import U64, BlockState, RingBlock, RingHeader
from ._pickling import check_plain, dumps_out_of_band
from ._ring_blocks import Block, BufferClosedError, RingCore, RingMapping
from ._segments import (
    ALIGN,
    ClosingContext,
    attach_segment,
    create_segment,
    current_process,
    register_owner_cleanup,
    round_up,
)

__all__ = ["BufferClosedError", "RingBufferRef", "SharedMemoryRingBuffer", "ring_blocks"]

_WHERE = "SharedMemoryRingBuffer"
_DATA = RingHeader.SIZE


class RingBufferRef(NamedTuple):
    """Small picklable handle for an object stored in a :class:`SharedMemoryRingBuffer`.

    Returned by :meth:`SharedMemoryRingBuffer.write`; pass it (to any process)
    to :meth:`SharedMemoryRingBuffer.read`, which can succeed only once.

    Examples:
        >>> import pickle
        >>> with SharedMemoryRingBuffer(1 << 16) as rb:
        ...     ref = rb.write([1, 2, 3])
        ...     assert pickle.loads(pickle.dumps(ref)) == ref
        ...     rb.read(ref)
        [1, 2, 3]
    """

    buffer: str
    """Name of the buffer's shared memory segment."""
    position: int
    """Offset of the object's block in the data area."""
    token: int
    """Unique token of the block, checked on read."""
    nbytes: int
    """Bytes of buffer space the object occupies."""


# One core per segment and process: every handle of the process shares its lock.
_cores: weakref.WeakValueDictionary[str, RingCore] = weakref.WeakValueDictionary()
_cores_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _cores_lock
    _cores_lock = threading.Lock()
    for core in list(_cores.values()):
        core.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _attach_core(name: str) -> RingCore:
    missing = BufferClosedError(
        f"SharedMemoryRingBuffer {name!r} no longer exists (its creator closed it or exited)"
    )
    fd, mm = attach_segment(name, missing)
    mapping = RingMapping(name, fd, mm, owner_pid=-1)
    try:
        core = RingCore(mapping, owner=False)
    except BaseException:
        mapping.release()
        raise
    weakref.finalize(core, mapping.release).atexit = False
    return core


def _attach_ring_buffer(
    name: str, allow_pickle: bool, timeout: float | None
) -> SharedMemoryRingBuffer:
    """Unpickling hook: attach to an existing ring buffer (cached per process)."""
    with _cores_lock:
        core = _cores.get(name)
        if core is None or core.released:
            core = _cores[name] = _attach_core(name)
    return SharedMemoryRingBuffer._from_core(core, allow_pickle, timeout)


def _create_core(capacity: int) -> RingCore:
    name, fd, mm = create_segment(_DATA + capacity, "r")
    pid, start = current_process()
    mapping = RingMapping(name, fd, mm, owner_pid=pid)
    try:
        mm[:8] = RingHeader.MAGIC
        U64.pack_into(mm, RingHeader.CAPACITY, capacity)
        U64.pack_into(mm, RingHeader.CREATOR_PID, pid)
        U64.pack_into(mm, RingHeader.CREATOR_START, start)
        RingBlock.HEADER.pack_into(mm, _DATA, capacity, 0, BlockState.FREE, 0)
        core = RingCore(mapping, owner=True)
    except BaseException:
        mapping.release()
        raise
    register_owner_cleanup(core, mapping.release)
    with _cores_lock:
        _cores[name] = core
    return core


class _Frame(NamedTuple):
    """Where the parts of one object go inside its block."""

    stream_at: int
    buffer_at: list[int]
    total: int


def _frame(stream: bytes, raws: list[memoryview]) -> _Frame:
    stream_at = RingBlock.HEADER_SIZE + RingBlock.ENTRY.size * len(raws)
    pos = stream_at + len(stream)
    offsets: list[int] = []
    for raw in raws:
        pos = round_up(pos, ALIGN)
        offsets.append(pos)
        pos += raw.nbytes
    return _Frame(stream_at, offsets, round_up(pos, ALIGN))


def _copy_in(mm: Any, base: int, stream: bytes, raws: list[memoryview], frame: _Frame) -> None:
    RingBlock.PAYLOAD.pack_into(mm, base + RingBlock.PAYLOAD_AT, len(stream), len(raws))
    entry = RingBlock.ENTRY
    with memoryview(mm) as view:
        start = base + frame.stream_at
        view[start : start + len(stream)] = stream
        for i, (off, raw) in enumerate(zip(frame.buffer_at, raws, strict=True)):
            entry.pack_into(mm, base + RingBlock.HEADER_SIZE + entry.size * i, off, raw.nbytes)
            view[base + off : base + off + raw.nbytes] = raw


def _copy_out(mm: Any, base: int) -> Any:
    stream_len, nbuf = RingBlock.PAYLOAD.unpack_from(mm, base + RingBlock.PAYLOAD_AT)
    entry = RingBlock.ENTRY
    with memoryview(mm) as view:
        buffers: list[bytearray] = []
        for i in range(nbuf):
            off, n = entry.unpack_from(mm, base + RingBlock.HEADER_SIZE + entry.size * i)
            buffers.append(bytearray(view[base + off : base + off + n]))
        start = base + RingBlock.HEADER_SIZE + entry.size * nbuf
        stream = bytes(view[start : start + stream_len])
    return pickle.loads(stream, buffers=buffers)


class SharedMemoryRingBuffer(ClosingContext):
    """A ring buffer in shared memory for passing (numpy-heavy) objects between processes.

    ``write(obj)`` copies ``obj`` into the buffer and returns a small picklable
    :class:`RingBufferRef`; ``read(ref)`` returns the object. Both work in any
    process: the buffer object itself is picklable (also with cloudpickle,
    e.g. captured in a closure) and unpickling attaches to the same segment by
    name, under the fork, forkserver and spawn start methods alike.

    Objects are serialized with pickle protocol 5: numpy arrays (any shape and
    dtype, including zero-size and non-contiguous ones) inside tuples, lists,
    dicts or arbitrary objects go to the buffer out-of-band, so a large array
    costs a single ``memcpy``. Other objects are pickled into the buffer when
    ``allow_pickle`` is true; with ``allow_pickle=False`` only arrays and
    scalars without object dtype, None/bool/int/float/complex/str/bytes and
    (nested) tuples, lists and dicts of those are accepted, anything else
    raises :class:`TypeError` naming the offending type.

    ``read`` returns a *private copy* (arrays are ordinary writable arrays not
    backed by shared memory) and frees the space immediately, so writers can
    reuse it at once. Each reference can be read exactly once; reading it again
    raises :class:`ValueError`. A reference that is never read keeps its space
    forever -- call :meth:`discard` for references you drop.

    Writers block while the buffer is full, polling with exponential backoff
    (50 us up to 5 ms) until a reader frees space. They never wait forever on a
    dead buffer: they raise :class:`BufferClosedError` if the creator process
    died or closed the buffer, and :class:`TimeoutError` after ``timeout``
    seconds (default ``None``: wait as long as the creator lives). An object
    larger than the whole buffer raises :class:`ValueError` at once. Blocks
    held by a writer or reader process that died mid-copy are reclaimed.

    Any number of processes and threads may write and read concurrently. The
    allocation state (a list of blocks tiling the data area, allocated next-fit
    so that first-in-first-out use behaves like a classic ring) lives in the
    segment and is protected by ``fcntl.flock`` on a per-process file
    descriptor plus a per-process :class:`threading.Lock`; data is copied
    outside the lock. References may be read in any order and freed space is
    reused at once; a reference that is never read pins only its own block.

    The creator (the process that constructed the object) owns the segment:
    :meth:`close`, garbage collection of the last handle, or interpreter exit
    unlinks it. Handles in other processes only unmap it. ``close`` is
    idempotent; the buffer is a context manager. If the creator is killed
    (SIGKILL), :func:`tinypl.process.cleanup` removes the segment later.

    Args:
        size: capacity in bytes (an int > 0, rounded up to a multiple of 64). Each
            object needs a little framing (64 bytes plus 16 per array, plus alignment).
        allow_pickle: allow arbitrary picklable objects (a bool, see above).
        timeout: maximum number of seconds (a number >= 0, or None) ``write`` waits
            for free space.

    Examples:
        >>> import numpy as np
        >>> with SharedMemoryRingBuffer(1 << 20) as rb:
        ...     ref = rb.write({"x": np.arange(6).reshape(2, 3), "tag": "a"})
        ...     out = rb.read(ref)
        >>> int(out["x"].sum()), out["tag"]
        (15, 'a')
    """

    _core: RingCore | None
    _creator: bool

    def __init__(self, size: int, allow_pickle: bool = True, timeout: float | None = None) -> None:
        capacity = round_up(check_int(_WHERE, "size", size, minimum=1), ALIGN)
        self._allow_pickle = check_bool(_WHERE, "allow_pickle", allow_pickle)
        self._timeout = _check_timeout(timeout)
        self._core = _create_core(capacity)
        self._creator = True

    @classmethod
    def _from_core(
        cls, core: RingCore, allow_pickle: bool, timeout: float | None
    ) -> SharedMemoryRingBuffer:
        self = cls.__new__(cls)
        self._allow_pickle = allow_pickle
        self._timeout = timeout
        self._core = core
        self._creator = False  # unpickled copies never own the segment
        return self

    # ---- properties ---------------------------------------------------------------

    def _live_core(self) -> RingCore:
        core = self._core
        if core is None or core.released:
            raise ValueError("SharedMemoryRingBuffer is closed")
        return core

    @property
    def name(self) -> str:
        """Name of the shared memory segment (``/dev/shm/<name>`` on Linux)."""
        return self._live_core().name

    @property
    def capacity(self) -> int:
        """Size of the data area in bytes."""
        return self._live_core().capacity

    @property
    def allow_pickle(self) -> bool:
        """Whether arbitrary picklable objects are accepted by :meth:`write`."""
        return self._allow_pickle

    @property
    def timeout(self) -> float | None:
        """Maximum seconds :meth:`write` waits for free space (None: while the creator lives)."""
        return self._timeout

    @property
    def closed(self) -> bool:
        """Whether this handle was closed (or the creator process closed the buffer)."""
        core = self._core
        return core is None or core.released or bool(core.mapping.mm[RingHeader.CLOSED])

    def bytes_in_use(self) -> int:
        """Bytes currently occupied (including blocks read but not yet reclaimed).

        Examples:
            >>> with SharedMemoryRingBuffer(4096) as rb:
            ...     rb.bytes_in_use()
            0
        """
        return self._live_core().in_use()

    # ---- main API -----------------------------------------------------------------

    def write(self, obj: object) -> RingBufferRef:
        """Copy ``obj`` into the buffer; return a reference for :meth:`read`.

        Blocks while the buffer is full (see the class docstring).

        Raises:
            ValueError: the object needs more space than the whole buffer, or
                this handle is closed.
            TypeError: ``allow_pickle=False`` and ``obj`` holds an unsupported type.
            TimeoutError: no space became free within ``timeout`` seconds.
            BufferClosedError: the creator closed the buffer or died.

        Examples:
            >>> import numpy as np
            >>> with SharedMemoryRingBuffer(1 << 16, allow_pickle=False) as rb:
            ...     ref = rb.write((np.eye(2), 3.5))
            ...     rb.read(ref)[0].tolist()
            [[1.0, 0.0], [0.0, 1.0]]
        """
        core = self._live_core()
        if not self._allow_pickle:
            check_plain(obj)
        pbs: list[pickle.PickleBuffer] = []
        stream = dumps_out_of_band(obj, pbs.append)
        raws = [pb.raw() for pb in pbs]
        try:
            frame = _frame(stream, raws)
            if frame.total > core.capacity:
                framing = frame.total - sum(r.nbytes for r in raws)
                raise ValueError(
                    f"object of type {type(obj).__name__} needs {frame.total} bytes of "
                    f"buffer space (data plus {framing} bytes of framing) but the "
                    f"SharedMemoryRingBuffer capacity is {core.capacity} bytes"
                )
            position, token = core.alloc(frame.total, self._timeout)
            try:
                _copy_in(core.mapping.mm, _DATA + position, stream, raws, frame)
            except BaseException:
                core.free(position)
                raise
            core.set_state(position, token, BlockState.READY)
        finally:
            for raw in raws:
                raw.release()
            for pb in pbs:
                pb.release()
        return RingBufferRef(core.name, position, token, frame.total)

    def _claim(self, ref: object) -> tuple[RingCore, RingBufferRef]:
        core = self._live_core()
        if not isinstance(ref, RingBufferRef):
            raise TypeError(f"expected a RingBufferRef, got {type(ref).__name__}")
        if ref.buffer != core.name:
            raise ValueError(f"{ref!r} belongs to buffer {ref.buffer!r}, not to {core.name!r}")
        if not core.claim(ref.position, ref.token, ref.nbytes):
            raise ValueError(
                f"{ref!r} has already been read (or discarded); every reference can be read "
                "exactly once"
            )
        return core, ref

    def read(self, ref: RingBufferRef) -> Any:
        """Return the object stored under ``ref`` (a private copy) and free its space.

        Raises:
            ValueError: ``ref`` was already read or discarded, belongs to another
                buffer, or this handle is closed.
            BufferClosedError: the creator closed the buffer.

        Examples:
            >>> with SharedMemoryRingBuffer(1 << 16) as rb:
            ...     ref = rb.write("hello")
            ...     rb.read(ref)
            'hello'
        """
        core, ref = self._claim(ref)
        try:
            return _copy_out(core.mapping.mm, _DATA + ref.position)
        finally:
            core.free(ref.position)

    def discard(self, ref: RingBufferRef) -> None:
        """Free the space of an unread reference without deserializing it.

        Examples:
            >>> with SharedMemoryRingBuffer(1 << 16) as rb:
            ...     rb.discard(rb.write(b"unused"))
            ...     rb.bytes_in_use()
            0
        """
        core, ref = self._claim(ref)
        core.free(ref.position)

    def close(self) -> None:
        """Release this handle; for the creating handle also destroy the segment.

        Only the object constructed by ``SharedMemoryRingBuffer(...)`` (in its
        own process) destroys the segment; handles obtained by unpickling or
        inherited by a forked child only detach (the mapping goes away with
        the last handle of the process). Idempotent. After the creator closed
        the buffer, waiting writers in other processes raise
        :class:`BufferClosedError`.

        Examples:
            >>> rb = SharedMemoryRingBuffer(4096)
            >>> rb.close(); rb.close(); rb.closed
            True
        """
        core, self._core = self._core, None
        if core is not None and self._creator and core.is_creator():
            core.close()

    def __reduce__(self) -> tuple[Callable[..., SharedMemoryRingBuffer], tuple[Any, ...]]:
        return _attach_ring_buffer, (self._live_core().name, self._allow_pickle, self._timeout)

    def __repr__(self) -> str:
        core = self._core
        if core is None or core.released:
            return "<SharedMemoryRingBuffer closed>"
        role = "creator" if self._creator and core.is_creator() else "attached"
        return (
            f"<SharedMemoryRingBuffer {core.name!r} capacity={core.capacity} {role} "
            f"allow_pickle={self._allow_pickle}>"
        )


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    seconds = check_number(_WHERE, "timeout", timeout, positive=False)
    if not seconds >= 0:
        raise ValueError(f"{_WHERE}: timeout must be None or >= 0, got {timeout!r}")
    return seconds


def ring_blocks(buffer: SharedMemoryRingBuffer) -> list[Block]:
    """The blocks that tile ``buffer``'s data area, in order: the allocator's state.

    For tests and debugging: the sizes add up to :attr:`~SharedMemoryRingBuffer.capacity`,
    and those of blocks that are not ``"free"`` to :meth:`~SharedMemoryRingBuffer.bytes_in_use`.

    Examples:
        >>> with SharedMemoryRingBuffer(4096) as rb:
        ...     ref = rb.write(b"x")
        ...     [(block.size, block.state) for block in ring_blocks(rb)]
        [(128, 'ready'), (3968, 'free')]
    """
    return buffer._live_core().blocks()
