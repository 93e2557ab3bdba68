"""Shared-memory transport for numpy-heavy objects between processes.

Two independent pieces live here:

* :class:`SharedMemoryRingBuffer` -- a user-facing, picklable ring buffer. Any
  process (created with fork, forkserver or spawn) can :meth:`~SharedMemoryRingBuffer.write`
  an object into it and get a small picklable :class:`RingBufferRef` back; any
  process can :meth:`~SharedMemoryRingBuffer.read` the reference exactly once.
* :class:`ShmPool` / :func:`loads` -- a single-writer buffer pool used by the
  process backend: a worker serializes results with :meth:`ShmPool.dumps`
  (large numpy buffers are copied once into shared memory), the parent rebuilds
  them with :func:`loads` as zero-copy views; a region goes back to the pool as
  soon as the parent drops the last view on it.

Shared memory segments are POSIX shm objects (``/dev/shm/tinypl_<random>``)
created with mode 0600 and opened with ``_posixshmem`` directly, so the
``multiprocessing`` resource tracker is never involved (it would unlink
segments, or warn about "leaked shared_memory", when an *attaching* process
exits). Cross-process coordination uses ``fcntl.flock`` (ring buffer) or a
lock-free single-writer-per-transition slot table (pool); no ``SemLock`` is
needed, so both work in any process, not only in children that received a
lock at spawn time.
"""

from __future__ import annotations

import _posixshmem
import errno
import fcntl
import io
import logging
import mmap
import multiprocessing.util as _mp_util
import os
import pickle
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "BufferClosedError",
    "RingBufferRef",
    "SharedMemoryRingBuffer",
    "ShmPool",
    "cleanup_orphans",
    "discard",
    "loads",
    "trim_cache",
]

logger = logging.getLogger("tinypl")

_NAME_PREFIX: Final = "tinypl_"
_ALIGN: Final = 64  # alignment of everything placed in a segment (cache line, >= any dtype)
_PAGE: Final = mmap.PAGESIZE

# Waiting: there is no cheap cross-process wake-up primitive available without
# SemLock (which cannot be pickled outside of process spawning) or platform
# specific futexes, so waiters poll with exponential backoff, starting at 50 us
# and capped at 5 ms. Liveness of the peer process is checked every 100 ms.
_MIN_SLEEP: Final = 50e-6
_MAX_SLEEP: Final = 5e-3
_CHECK_INTERVAL: Final = 0.1


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


# --------------------------------------------------------------------------- #
# Low-level helpers: segments, process liveness, backoff, pickling
# --------------------------------------------------------------------------- #


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _shm_path(name: str) -> str:
    return "/" + name


def _unlink(name: str) -> None:
    with suppress(FileNotFoundError):
        _posixshmem.shm_unlink(_shm_path(name))


def _create_segment(size: int) -> tuple[str, int, mmap.mmap]:
    """Create a fresh 0600 segment of ``size`` bytes; return (name, fd, mapping)."""
    for _ in range(64):
        name = _NAME_PREFIX + secrets.token_hex(8)
        try:
            fd = _posixshmem.shm_open(_shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
        break
    else:  # pragma: no cover
        raise FileExistsError("could not find an unused shared memory name")
    try:
        os.ftruncate(fd, size)
        if hasattr(os, "posix_fallocate"):
            # Reserve the pages now: on a full /dev/shm (64 MB in default Docker
            # containers!) we get a clean error here instead of SIGBUS later.
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise OSError(
                        exc.errno,
                        f"cannot allocate {size} bytes of shared memory in /dev/shm "
                        f"({exc.strerror}); free space there or increase its "
                        "size (e.g. docker run --shm-size=1g)",
                    ) from exc
        mm = mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        _unlink(name)
        raise
    return name, fd, mm


def _attach_segment(name: str) -> tuple[int, mmap.mmap]:
    """Open and map an existing segment; return (fd, mapping)."""
    fd = _posixshmem.shm_open(_shm_path(name), os.O_RDWR, 0o600)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd, mm


def _proc_stat(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/<pid>/stat (state is [0], start time is [19]).

    None if the process does not exist; raises OSError if procfs is unusable.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].split()


def _proc_starttime(pid: int) -> int:
    try:
        fields = _proc_stat(pid)
    except OSError:
        return 0
    return int(fields[19]) if fields is not None and len(fields) > 19 else 0


def _pid_alive(pid: int, starttime: int = 0) -> bool:
    """Whether process ``pid`` runs (zombies count as dead; ``starttime`` guards pid reuse).

    Errs on the side of "alive" when procfs cannot be read.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by somebody else
        return True
    try:
        fields = _proc_stat(pid)
    except OSError:  # no procfs, EMFILE, hidepid, ...: trust kill()
        return True
    if fields is None:
        return not os.path.isdir("/proc/self")  # vanished since kill(), or no procfs
    if fields[0] in (b"Z", b"X"):
        return False
    return not (starttime and len(fields) > 19 and int(fields[19]) != starttime)


class _Backoff:
    __slots__ = ("deadline", "delay", "next_check")

    def __init__(self, timeout: float | None) -> None:
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.delay = _MIN_SLEEP
        self.next_check = now + _CHECK_INTERVAL

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def check_due(self) -> bool:
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + _CHECK_INTERVAL
            return True
        return False

    def sleep(self) -> None:
        delay = self.delay
        if self.deadline is not None:
            delay = max(0.0, min(delay, self.deadline - time.monotonic()))
        time.sleep(delay)
        self.delay = min(self.delay * 2, _MAX_SLEEP)


def _array_from_buffer(
    buffer: Any, dtype: np.dtype[Any], shape: tuple[int, ...], order: str
) -> npt.NDArray[Any]:
    """Unpickling hook for arrays reduced by :class:`_Pickler`."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that sends the data of every plain ndarray out of band.

    numpy's own reduction pickles non-contiguous and datetime/timedelta arrays
    in-band (a ``tobytes`` copy inside the stream) and even loses the byte
    order of non-native datetime arrays; reducing plain arrays here avoids
    both. Arrays of object dtype, zero itemsize, and subclasses keep numpy's
    (or the subclass's) reduction.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and not obj.dtype.hasobject and obj.dtype.itemsize > 0:
            if obj.flags.c_contiguous:
                order = "C"
            elif obj.flags.f_contiguous:
                order = "F"
            else:
                obj, order = np.ascontiguousarray(obj), "C"
            # A flat uint8 view: datetime arrays cannot export the buffer protocol
            # themselves (and ravel of a contiguous array is a view, not a copy).
            data = pickle.PickleBuffer(obj.ravel(order="K").view(np.uint8))
            return _array_from_buffer, (data, obj.dtype, obj.shape, order)
        return NotImplemented


def _dumps(obj: object, buffer_callback: Callable[[pickle.PickleBuffer], Any]) -> bytes:
    f = io.BytesIO()
    _Pickler(f, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return f.getvalue()


_PLAIN_TYPES: Final = (type(None), bool, int, float, complex, str, bytes)


def _check_plain(obj: object) -> None:
    """Raise TypeError unless obj only holds arrays, scalars and plain containers."""
    seen: set[int] = set()
    stack: list[object] = [obj]
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _PLAIN_TYPES:
            continue
        if isinstance(x, np.ndarray) and t is np.ndarray:
            if x.dtype.hasobject:
                raise TypeError(
                    f"cannot write a numpy array of dtype {x.dtype} (it holds Python objects) "
                    "to a SharedMemoryRingBuffer created with allow_pickle=False"
                )
            continue
        if isinstance(x, np.generic) and not x.dtype.hasobject:
            continue
        if isinstance(x, (tuple, list, dict)) and t in (tuple, list, dict):
            if id(x) not in seen:
                seen.add(id(x))
                if isinstance(x, dict):
                    stack.extend(x.keys())
                    stack.extend(x.values())
                else:
                    stack.extend(x)
            continue
        raise TypeError(
            f"cannot write an object of type {t.__module__}.{t.__qualname__} to a "
            "SharedMemoryRingBuffer created with allow_pickle=False (supported: numpy "
            "arrays and scalars without object dtype, None, bool, int, float, complex, "
            "str, bytes, and tuples, lists and dicts of those)"
        )


class _Mapping:
    """A process-local mapping of one segment plus its idempotent cleanup.

    Kept apart from the objects using it so that finalizers can reference it
    without keeping those objects alive. If ``owner_pid`` is this process, the
    cleanup also marks the segment closed and unlinks its name.
    """

    __slots__ = ("closed_flag_offset", "fd", "mm", "name", "owner_pid", "released")

    def __init__(
        self, name: str, fd: int, mm: mmap.mmap, owner_pid: int, closed_flag_offset: int
    ) -> None:
        self.name = name
        self.fd = fd
        self.mm = mm
        self.owner_pid = owner_pid
        self.closed_flag_offset = closed_flag_offset
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            if self.owner_pid == os.getpid():
                with suppress(ValueError, IndexError):  # already unmapped
                    self.mm[self.closed_flag_offset] = 1
                _unlink(self.name)
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
                self.fd = _posixshmem.shm_open(_shm_path(self.name), os.O_RDWR, 0o600)
            except OSError:
                self.fd = -1
        with suppress(OSError):
            os.close(old)


def _register_owner_cleanup(obj: object, cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` when ``obj`` is collected, at interpreter exit, and at the exit
    of a multiprocessing child (which leaves via ``os._exit`` and skips atexit)."""
    weakref.finalize(obj, cleanup)
    _mp_util.Finalize(obj, cleanup, exitpriority=0)


# --------------------------------------------------------------------------- #
# SharedMemoryRingBuffer
# --------------------------------------------------------------------------- #

# Segment header (first page): all integers little endian u64.
_RING_MAGIC: Final = b"TPLRING1"
_RING_HDR_SIZE: Final = 4096
_RH_CAPACITY: Final = 8
_RH_ROVER: Final = 16  # block boundary where the next-fit search starts
_RH_USED: Final = 24  # bytes in blocks that are not free
_RH_SEQ: Final = 32  # allocation counter (high half of the tokens)
_RH_CREATOR_PID: Final = 40
_RH_CREATOR_START: Final = 48
_RH_CLOSED: Final = 56  # one byte, set by the creator on close
_Q: Final = struct.Struct("<Q")

# The data area is tiled by blocks; a 64-byte header starts every block.
_BLK: Final = struct.Struct("<QQII")  # size, token, state, pid
_BLK_PAYLOAD: Final = struct.Struct("<QI")  # stream length, number of buffers; at offset 24
_BLK_HDR_SIZE: Final = 64
_ENTRY: Final = struct.Struct("<QQ")  # (offset in block, length) per out-of-band buffer
_FREE: Final = 0
_WRITING: Final = 1
_READY: Final = 2
_READING: Final = 3


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


class _RingCore:
    """Per-process state of one ring buffer segment, shared by all handles in the process."""

    def __init__(self, mapping: _Mapping, owner: bool) -> None:
        mm = mapping.mm
        if mm[:8] != _RING_MAGIC:
            raise ValueError(f"shared memory segment {mapping.name!r} is not a ring buffer")
        self.m = mapping
        self.name = mapping.name
        self.owner = owner
        self.capacity: int = _Q.unpack_from(mm, _RH_CAPACITY)[0]
        self.creator_pid: int = _Q.unpack_from(mm, _RH_CREATOR_PID)[0]
        self.creator_start: int = _Q.unpack_from(mm, _RH_CREATOR_START)[0]
        self.tlock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError("internal object")

    @property
    def released(self) -> bool:
        return self.m.released

    def is_creator(self) -> bool:
        return self.owner and self.m.owner_pid == os.getpid()

    def after_fork(self) -> None:
        self.tlock = threading.Lock()
        self.m.reopen_fd_after_fork()

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """Exclusive access to the header: thread lock, then flock on our own fd."""
        with self.tlock:
            if self.m.released:
                raise ValueError("SharedMemoryRingBuffer is closed")
            mm = self.m.mm
            if mm[_RH_CLOSED]:
                raise BufferClosedError(
                    f"SharedMemoryRingBuffer {self.name!r} was closed by its creator "
                    f"(pid {self.creator_pid})"
                )
            fd = self.m.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield mm
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self.tlock:
            self.m.release()

    # ---- allocation (caller holds the lock) ----------------------------------
    #
    # Blocks tile the data area; free blocks are merged lazily while searching.
    # Next fit: the search starts at the rover, just past the previous
    # allocation, so FIFO use behaves like a classic ring buffer, while space
    # freed out of order is reused at once and an unread block only pins its
    # own bytes.

    def _block(self, mm: mmap.mmap, pos: int) -> tuple[int, int, int, int]:
        size, token, state, pid = _BLK.unpack_from(mm, _RING_HDR_SIZE + pos)
        if size <= 0 or size % _ALIGN or pos + size > self.capacity:
            raise RuntimeError(
                f"SharedMemoryRingBuffer {self.name!r} is corrupted (block at {pos} has "
                f"size {size})"
            )
        return size, token, state, pid

    def _try_alloc(self, mm: mmap.mmap, total: int) -> tuple[int, int] | None:
        cap = self.capacity
        pos: int = _Q.unpack_from(mm, _RH_ROVER)[0]
        if not _Q.unpack_from(mm, _RH_USED)[0]:
            pos = 0  # empty: restart at the beginning (cache-warm, least fragmented)
        scanned = 0
        while scanned < cap:
            size, _token, state, _pid = self._block(mm, pos)
            if state == _FREE:
                end = pos + size
                while end < cap:
                    next_size, _t, next_state, _p = self._block(mm, end)
                    if next_state != _FREE:
                        break
                    end += next_size
                if end - pos != size:
                    size = end - pos
                    _BLK.pack_into(mm, _RING_HDR_SIZE + pos, size, 0, _FREE, 0)
                if size >= total:
                    if size > total:  # split off the rest as a free block
                        _BLK.pack_into(mm, _RING_HDR_SIZE + pos + total, size - total, 0, _FREE, 0)
                    seq: int = _Q.unpack_from(mm, _RH_SEQ)[0] + 1
                    _Q.pack_into(mm, _RH_SEQ, seq)
                    token = ((seq & 0xFFFFFFFF) << 32) | secrets.randbits(32)
                    off = _RING_HDR_SIZE + pos
                    _BLK.pack_into(mm, off, total, token, _WRITING, os.getpid())
                    _BLK_PAYLOAD.pack_into(mm, off + 24, 0, 0)
                    _Q.pack_into(mm, _RH_ROVER, (pos + total) % cap)
                    _Q.pack_into(mm, _RH_USED, _Q.unpack_from(mm, _RH_USED)[0] + total)
                    return pos, token
            scanned += size
            pos = (pos + size) % cap
        # A merge may have swallowed the rover's block boundary; 0 always is one.
        _Q.pack_into(mm, _RH_ROVER, 0)
        return None

    def _free_locked(self, mm: mmap.mmap, pos: int) -> None:
        size, _token, state, _pid = self._block(mm, pos)
        if state != _FREE:
            _BLK.pack_into(mm, _RING_HDR_SIZE + pos, size, 0, _FREE, 0)
            _Q.pack_into(mm, _RH_USED, _Q.unpack_from(mm, _RH_USED)[0] - size)

    def _reclaim_dead(self, mm: mmap.mmap) -> None:
        """Free blocks whose writer or reader process died mid-operation."""
        me = os.getpid()
        pos = 0
        while pos < self.capacity:
            size, _token, state, pid = self._block(mm, pos)
            if state in (_WRITING, _READING) and pid != me and not _pid_alive(pid):
                logger.warning(
                    "SharedMemoryRingBuffer %s: reclaiming %d bytes held by dead process %d",
                    self.name,
                    size,
                    pid,
                )
                self._free_locked(mm, pos)
            pos += size

    def alloc(self, total: int, timeout: float | None) -> tuple[int, int]:
        """Reserve ``total`` bytes; blocks (polling) while the buffer is full."""
        backoff: _Backoff | None = None
        while True:
            with self.locked() as mm:
                got = self._try_alloc(mm, total)
            if got is not None:
                return got
            if backoff is None:
                backoff = _Backoff(timeout)
            elif backoff.check_due():
                if not self.is_creator() and not _pid_alive(self.creator_pid, self.creator_start):
                    raise BufferClosedError(
                        f"SharedMemoryRingBuffer {self.name!r} is full and its creator "
                        f"process {self.creator_pid} died, so nobody will free space"
                    )
                with self.locked() as mm:
                    self._reclaim_dead(mm)
            if backoff.expired():
                used = self.in_use()
                raise TimeoutError(
                    f"no space for {total} bytes in SharedMemoryRingBuffer {self.name!r} "
                    f"after waiting {timeout} s (capacity {self.capacity} bytes, "
                    f"{used} in use); read (or discard) pending references to free space"
                )
            backoff.sleep()

    def set_state(self, pos: int, token: int, state: int) -> None:
        with self.locked() as mm:
            off = _RING_HDR_SIZE + pos
            size, tok, _state, _pid = _BLK.unpack_from(mm, off)
            if tok == token:
                _BLK.pack_into(mm, off, size, token, state, os.getpid())

    def free(self, pos: int) -> None:
        with self.locked() as mm:
            self._free_locked(mm, pos)

    def claim(self, ref: RingBufferRef) -> None:
        """Mark the block READING if it still holds ``ref``'s unread object.

        A stale position is either a block boundary whose token changed, or lies
        inside another block; there a header-like match of the 64-bit random-salted
        token, the size and the state is practically impossible.
        """
        pos = ref.position
        with self.locked() as mm:
            if 0 <= pos <= self.capacity - _BLK_HDR_SIZE and pos % _ALIGN == 0:
                size, token, state, _pid = _BLK.unpack_from(mm, _RING_HDR_SIZE + pos)
                if token == ref.token and size == ref.nbytes and state == _READY:
                    _BLK.pack_into(mm, _RING_HDR_SIZE + pos, size, token, _READING, os.getpid())
                    return
        raise ValueError(
            f"{ref!r} has already been read (or discarded); every reference can be read "
            "exactly once"
        )

    def in_use(self) -> int:
        with self.locked() as mm:
            used: int = _Q.unpack_from(mm, _RH_USED)[0]
        return used


_cores: weakref.WeakValueDictionary[str, _RingCore] = weakref.WeakValueDictionary()
_cores_lock = threading.Lock()


def _attach_ring_buffer(
    name: str, allow_pickle: bool, timeout: float | None
) -> SharedMemoryRingBuffer:
    """Unpickling hook: attach to an existing ring buffer (cached per process)."""
    with _cores_lock:
        core = _cores.get(name)
        if core is None or core.released:
            try:
                fd, mm = _attach_segment(name)
            except FileNotFoundError:
                raise BufferClosedError(
                    f"SharedMemoryRingBuffer {name!r} no longer exists (its creator closed "
                    "it or exited)"
                ) from None
            mapping = _Mapping(name, fd, mm, owner_pid=-1, closed_flag_offset=_RH_CLOSED)
            try:
                core = _RingCore(mapping, owner=False)
            except BaseException:
                mapping.release()
                raise
            weakref.finalize(core, mapping.release).atexit = False
            _cores[name] = core
    return SharedMemoryRingBuffer._from_core(core, allow_pickle, timeout)


class SharedMemoryRingBuffer:
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
    idempotent; the buffer is a context manager.

    Args:
        size: capacity in bytes (rounded up to a multiple of 64). Each object
            needs a little framing (64 bytes plus 16 per array, plus alignment).
        allow_pickle: allow arbitrary picklable objects (see above).
        timeout: maximum number of seconds ``write`` waits for free space.

    Examples:
        >>> import numpy as np
        >>> with SharedMemoryRingBuffer(1 << 20) as rb:
        ...     ref = rb.write({"x": np.arange(6).reshape(2, 3), "tag": "a"})
        ...     out = rb.read(ref)
        >>> int(out["x"].sum()), out["tag"]
        (15, 'a')
    """

    _core: _RingCore | None
    _creator: bool

    def __init__(self, size: int, allow_pickle: bool = True, timeout: float | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
        self._allow_pickle = bool(allow_pickle)
        self._timeout = timeout
        capacity = _round_up(size, _ALIGN)
        name, fd, mm = _create_segment(_RING_HDR_SIZE + capacity)
        pid = os.getpid()
        mapping = _Mapping(name, fd, mm, owner_pid=pid, closed_flag_offset=_RH_CLOSED)
        try:
            mm[:8] = _RING_MAGIC
            _Q.pack_into(mm, _RH_CAPACITY, capacity)
            _Q.pack_into(mm, _RH_CREATOR_PID, pid)
            _Q.pack_into(mm, _RH_CREATOR_START, _proc_starttime(pid))
            _BLK.pack_into(mm, _RING_HDR_SIZE, capacity, 0, _FREE, 0)
            core = _RingCore(mapping, owner=True)
        except BaseException:
            mapping.release()
            raise
        _register_owner_cleanup(core, mapping.release)
        with _cores_lock:
            _cores[name] = core
        self._core = core
        self._creator = True

    @classmethod
    def _from_core(
        cls, core: _RingCore, allow_pickle: bool, timeout: float | None
    ) -> SharedMemoryRingBuffer:
        self = cls.__new__(cls)
        self._allow_pickle = allow_pickle
        self._timeout = timeout
        self._core = core
        self._creator = False  # unpickled copies never own the segment
        return self

    # ---- properties -------------------------------------------------------------

    def _live_core(self) -> _RingCore:
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
        return core is None or core.released or bool(core.m.mm[_RH_CLOSED])

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
            _check_plain(obj)
        pbs: list[pickle.PickleBuffer] = []
        stream = _dumps(obj, pbs.append)
        raws = [pb.raw() for pb in pbs]
        try:
            nbuf = len(raws)
            stream_off = _BLK_HDR_SIZE + _ENTRY.size * nbuf
            pos = stream_off + len(stream)
            offsets: list[int] = []
            for raw in raws:
                pos = _round_up(pos, _ALIGN)
                offsets.append(pos)
                pos += raw.nbytes
            total = _round_up(pos, _ALIGN)
            if total > core.capacity:
                raise ValueError(
                    f"object of type {type(obj).__name__} needs {total} bytes of buffer "
                    f"space (data plus {total - sum(r.nbytes for r in raws)} bytes of "
                    f"framing) but the SharedMemoryRingBuffer capacity is {core.capacity} "
                    "bytes"
                )
            block_pos, token = core.alloc(total, self._timeout)
            try:
                base = _RING_HDR_SIZE + block_pos
                mm = core.m.mm
                _BLK_PAYLOAD.pack_into(mm, base + 24, len(stream), nbuf)
                for i, (off, raw) in enumerate(zip(offsets, raws, strict=True)):
                    _ENTRY.pack_into(mm, base + _BLK_HDR_SIZE + _ENTRY.size * i, off, raw.nbytes)
                data = np.frombuffer(mm, dtype=np.uint8)
                try:
                    start = base + stream_off
                    data[start : start + len(stream)] = np.frombuffer(stream, dtype=np.uint8)
                    for off, raw in zip(offsets, raws, strict=True):
                        if raw.nbytes:
                            start = base + off
                            data[start : start + raw.nbytes] = np.frombuffer(raw, dtype=np.uint8)
                finally:
                    del data
            except BaseException:
                core.free(block_pos)
                raise
            core.set_state(block_pos, token, _READY)
        finally:
            for raw in raws:
                raw.release()
            for pb in pbs:
                pb.release()
        return RingBufferRef(core.name, block_pos, token, total)

    def _checked_ref(self, ref: object) -> tuple[_RingCore, RingBufferRef]:
        core = self._live_core()
        if not isinstance(ref, RingBufferRef):
            raise TypeError(f"expected a RingBufferRef, got {type(ref).__name__}")
        if ref.buffer != core.name:
            raise ValueError(f"{ref!r} belongs to buffer {ref.buffer!r}, not to {core.name!r}")
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
        core, ref = self._checked_ref(ref)
        core.claim(ref)
        try:
            base = _RING_HDR_SIZE + ref.position
            mm = core.m.mm
            stream_len, nbuf = _BLK_PAYLOAD.unpack_from(mm, base + 24)
            data = np.frombuffer(mm, dtype=np.uint8)
            try:
                buffers: list[npt.NDArray[np.uint8]] = []
                for i in range(nbuf):
                    off, n = _ENTRY.unpack_from(mm, base + _BLK_HDR_SIZE + _ENTRY.size * i)
                    buffers.append(data[base + off : base + off + n].copy())
                start = base + _BLK_HDR_SIZE + _ENTRY.size * nbuf
                return pickle.loads(data[start : start + stream_len].data, buffers=buffers)
            finally:
                del data
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
        core, ref = self._checked_ref(ref)
        core.claim(ref)
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

    def __enter__(self) -> SharedMemoryRingBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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


# --------------------------------------------------------------------------- #
# ShmPool (worker side) and loads / discard (parent side)
# --------------------------------------------------------------------------- #

# Pool segment header (first page).
_POOL_MAGIC: Final = b"TPLPOOL1"
_POOL_HDR_SIZE: Final = 4096
_PH_WRITER_PID: Final = 8
_PH_WRITER_START: Final = 16
_PH_NSLOTS: Final = 24
_PH_CLOSED: Final = 32  # byte: writer closed the pool
_PH_ATTACHED: Final = 33  # byte: the reader attached and unlinked the name
_PH_READER_PID: Final = 40
_PH_READER_START: Final = 48
_SLOTS_OFF: Final = 64
_NSLOTS: Final = _POOL_HDR_SIZE - _SLOTS_OFF  # one state byte per region: 1 used, 0 free
_MIN_SEGMENT: Final = 4 << 20
_REGION_ALIGN: Final = _PAGE

# Message: header, segment names (u8 length + ascii), descriptors, pickle stream.
_MSG_MAGIC: Final = b"TPL5"
_MSG_HEAD: Final = struct.Struct("<4sBBHI")  # magic, version, flags, nseg, ndesc
_MSG_DESC: Final = struct.Struct("<HHIQQ")  # segment index, pad, slot, offset, nbytes
_MSG_VERSION: Final = 1


class _Region:
    __slots__ = ("offset", "size", "slot")

    def __init__(self, offset: int, size: int, slot: int) -> None:
        self.offset = offset
        self.size = size
        self.slot = slot


class _WSeg:
    """Writer-side view of one pool segment; region bookkeeping is writer-private."""

    __slots__ = ("data", "free_slots", "mm", "name", "referenced", "regions", "size", "top")

    def __init__(self, name: str, mm: mmap.mmap) -> None:
        self.name = name
        self.mm = mm
        self.size = len(mm)
        self.data = np.frombuffer(mm, dtype=np.uint8)
        self.top = _POOL_HDR_SIZE  # start of the never-used tail of the segment
        self.regions: list[_Region] = []  # sorted by offset, contiguous up to top
        self.free_slots = list(range(_NSLOTS - 1, -1, -1))
        self.referenced = False  # some returned message points into this segment

    def states(self) -> bytes:
        return self.mm[_SLOTS_OFF : _SLOTS_OFF + _NSLOTS]


class _PoolState:
    """Everything the pool owns, kept apart from :class:`ShmPool` for its finalizers."""

    def __init__(self, capacity: int, min_buffer: int, max_wait: float, reader_pid: int) -> None:
        self.capacity = capacity
        self.min_buffer = min_buffer
        self.max_wait = max_wait
        self.reader_pid = reader_pid
        self.reader_start = _proc_starttime(reader_pid)
        self.pid = os.getpid()
        self.start = _proc_starttime(self.pid)
        self.segs: list[_WSeg] = []
        self.lock = threading.Lock()
        self.closed = False
        self.inline_fallbacks = 0
        self.grow_failed_at = -1e9

    # ---- allocation -------------------------------------------------------------

    @staticmethod
    def _mark_used(seg: _WSeg, r: _Region) -> None:
        seg.mm[_SLOTS_OFF + r.slot] = 1

    def _find(self, need: int) -> tuple[_WSeg, _Region] | None:
        best: tuple[_WSeg, _Region] | None = None
        for seg in self.segs:
            states = seg.states()
            for r in seg.regions:
                if (
                    states[r.slot] == 0
                    and r.size >= need
                    and (best is None or r.size < best[1].size)
                ):
                    best = (seg, r)
        if best is not None:
            seg, r = best
            rest = r.size - need
            if rest >= max(self.min_buffer, _REGION_ALIGN) and seg.free_slots:
                # Split; the remainder's slot byte is 0 (free) already.
                new = _Region(r.offset + need, rest, seg.free_slots.pop())
                r.size = need
                seg.regions.insert(seg.regions.index(r) + 1, new)
            self._mark_used(seg, r)
            return best
        for seg in self.segs:
            if seg.size - seg.top >= need and seg.free_slots:
                r = _Region(seg.top, need, seg.free_slots.pop())
                seg.top += need
                seg.regions.append(r)
                self._mark_used(seg, r)
                return seg, r
        return None

    def _coalesce(self) -> bool:
        """Merge adjacent free regions (a free slot can only be taken by us, so this is safe)."""
        changed = False
        for seg in self.segs:
            states = seg.states()
            merged: list[_Region] = []
            for r in seg.regions:
                prev = merged[-1] if merged else None
                if prev is not None and states[prev.slot] == 0 and states[r.slot] == 0:
                    prev.size += r.size
                    seg.free_slots.append(r.slot)
                    changed = True
                else:
                    merged.append(r)
            if merged and states[merged[-1].slot] == 0:
                last = merged.pop()
                seg.top = last.offset
                seg.free_slots.append(last.slot)
                changed = True
            seg.regions = merged
        return changed

    def _grow(self, need: int) -> tuple[_WSeg, _Region] | None:
        total = sum(seg.size - _POOL_HDR_SIZE for seg in self.segs)
        left = self.capacity - total
        if need > left or time.monotonic() - self.grow_failed_at < 1.0:
            return None
        size = _round_up(min(left, max(need, total, _MIN_SEGMENT)), _REGION_ALIGN)
        size = max(need, min(size, left - left % _REGION_ALIGN))
        try:
            name, fd, mm = _create_segment(_POOL_HDR_SIZE + size)
        except OSError as exc:
            self.grow_failed_at = time.monotonic()
            logger.warning("ShmPool: cannot create a shared memory segment: %s", exc)
            return None
        os.close(fd)
        mm[:8] = _POOL_MAGIC
        _Q.pack_into(mm, _PH_WRITER_PID, self.pid)
        _Q.pack_into(mm, _PH_WRITER_START, self.start)
        _Q.pack_into(mm, _PH_NSLOTS, _NSLOTS)
        _Q.pack_into(mm, _PH_READER_PID, self.reader_pid)
        _Q.pack_into(mm, _PH_READER_START, self.reader_start)
        seg = _WSeg(name, mm)
        self.segs.append(seg)
        return self._find(need)

    def alloc(self, nbytes: int) -> tuple[_WSeg, _Region] | None:
        need = _round_up(max(nbytes, 1), _REGION_ALIGN)
        if need > self.capacity:
            return None
        got = self._find(need)
        if got is None and self._coalesce():
            got = self._find(need)
        if got is None:
            got = self._grow(need)
        if got is None and self.max_wait > 0:
            backoff = _Backoff(self.max_wait)
            while got is None and not backoff.expired():
                backoff.sleep()
                self._coalesce()
                got = self._find(need)
        return got

    # ---- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        if self.closed or os.getpid() != self.pid:
            return  # a forked child must not touch its parent's pool
        self.closed = True
        reader_alive = _pid_alive(self.reader_pid, self.reader_start)
        for seg in self.segs:
            mm = seg.mm
            try:
                mm[_PH_CLOSED] = 1
                # A name that a sent message refers to, and that the reader has not
                # attached yet, must survive: the reader attaches and unlinks it when
                # it loads (or discards) that message.
                if not seg.referenced or mm[_PH_ATTACHED] or not reader_alive:
                    _unlink(seg.name)
            finally:
                seg.data = np.empty(0, dtype=np.uint8)
                with suppress(BufferError):  # a dumps() still running in a thread
                    mm.close()
        self.segs.clear()


class ShmPool:
    """Single-writer shared-memory pool for zero-copy transport of results to a reader.

    Create one pool per worker process. :meth:`dumps` pickles an object with
    protocol 5; every out-of-band buffer (numpy array data) of at least
    ``min_buffer`` bytes is copied -- one ``memcpy`` -- into a region of the
    pool, smaller ones are kept inline. It returns a compact ``bytes`` message
    to send over a pipe. The reader process (normally the parent) calls
    :func:`loads` on it and gets the object back with its large arrays as
    zero-copy views on the shared memory. When the reader drops the last
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

    Segment names are unlinked as soon as nobody needs them: the reader
    unlinks a name right after attaching it (views stay valid, the mapping
    keeps the pages alive), and :meth:`close` (also run on garbage collection,
    interpreter exit and multiprocessing child exit) unlinks names that no
    message refers to. Only a message that is never loaded nor passed to
    :func:`discard` can leave a segment behind (e.g. when a worker is killed
    with messages in flight); :func:`cleanup_orphans` removes those in the
    reader once the dead worker's pipe was drained or abandoned.

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
        >>> pool = ShmPool(16 << 20)
        >>> message = pool.dumps({"img": np.ones((512, 512)), "id": 7})
        >>> len(message) < 1000          # the array data is not in the message
        True
        >>> out = loads(message)         # normally in another process
        >>> float(out["img"].sum()), out["id"], pool.stats()["regions_in_use"]
        (262144.0, 7, 1)
        >>> del out                      # the region returns to the pool
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
        self._state = _PoolState(
            capacity,
            min_buffer,
            max_wait,
            os.getppid() if reader_pid is None else reader_pid,
        )
        _register_owner_cleanup(self, self._state.close)

    @property
    def capacity(self) -> int:
        """Maximum total bytes of shared memory."""
        return self._state.capacity

    @property
    def min_buffer(self) -> int:
        """Buffers smaller than this many bytes are sent inline."""
        return self._state.min_buffer

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state.closed

    def dumps(self, obj: object) -> bytes:
        """Serialize ``obj`` into a message for :func:`loads`; large buffers go to the pool.

        Examples:
            >>> import numpy as np
            >>> with ShmPool(1 << 20, min_buffer=0) as pool:
            ...     loads(pool.dumps(np.arange(3))).tolist()
            [0, 1, 2]
        """
        st = self._state
        if os.getpid() != st.pid:
            raise RuntimeError("a ShmPool can only be used by the process that created it")
        if st.closed:
            raise ValueError("ShmPool is closed")
        seg_index: dict[str, int] = {}
        names: list[bytes] = []
        descs: list[bytes] = []
        taken: list[tuple[_WSeg, _Region]] = []

        def callback(pb: pickle.PickleBuffer) -> bool:
            with pb.raw() as raw:
                n = raw.nbytes
                if n < st.min_buffer:
                    return True
                got = st.alloc(n)
                if got is None:
                    st.inline_fallbacks += 1
                    return True
                seg, region = got
                taken.append(got)
                if n:
                    seg.data[region.offset : region.offset + n] = np.frombuffer(raw, dtype=np.uint8)
            idx = seg_index.get(seg.name)
            if idx is None:
                idx = seg_index[seg.name] = len(names)
                names.append(seg.name.encode("ascii"))
            descs.append(_MSG_DESC.pack(idx, 0, region.slot, region.offset, n))
            return False

        with st.lock:
            try:
                stream = _dumps(obj, callback)
            except BaseException:
                for seg, region in taken:  # never sent: give the regions back ourselves
                    seg.mm[_SLOTS_OFF + region.slot] = 0
                raise
            for seg, _region in taken:
                seg.referenced = True
        parts = [_MSG_HEAD.pack(_MSG_MAGIC, _MSG_VERSION, 0, len(names), len(descs))]
        for name in names:
            parts.append(bytes((len(name),)))
            parts.append(name)
        parts.extend(descs)
        parts.append(stream)
        return b"".join(parts)

    def stats(self) -> dict[str, int]:
        """Counters for monitoring and tests.

        Keys: ``segments``, ``allocated`` (bytes in segments), ``regions``,
        ``regions_in_use``, ``bytes_in_use`` and ``inline_fallbacks``.

        Examples:
            >>> with ShmPool(1 << 20) as pool:
            ...     pool.stats()["segments"]
            0
        """
        st = self._state
        with st.lock:
            regions = in_use = bytes_in_use = 0
            for seg in st.segs:
                states = seg.states()
                regions += len(seg.regions)
                for r in seg.regions:
                    if states[r.slot]:
                        in_use += 1
                        bytes_in_use += r.size
            return {
                "segments": len(st.segs),
                "allocated": sum(seg.size - _POOL_HDR_SIZE for seg in st.segs),
                "regions": regions,
                "regions_in_use": in_use,
                "bytes_in_use": bytes_in_use,
                "inline_fallbacks": st.inline_fallbacks,
            }

    def close(self) -> None:
        """Unmap the pool and unlink segment names no pending message refers to.

        Idempotent. Views already handed out by :func:`loads` stay valid.

        Examples:
            >>> pool = ShmPool(1 << 20)
            >>> pool.close(); pool.close(); pool.closed
            True
        """
        with self._state.lock:
            self._state.close()

    def __enter__(self) -> ShmPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("ShmPool is not picklable: it belongs to the process that created it")

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<ShmPool capacity={st.capacity} segments={len(st.segs)} "
            f"{'closed' if st.closed else 'open'}>"
        )


class _RSeg:
    """Reader-side mapping of a pool segment (cached per process)."""

    __slots__ = ("mm", "mv", "name", "writer_pid", "writer_start")

    def __init__(self, name: str, mm: mmap.mmap) -> None:
        self.name = name
        self.mm = mm
        self.mv = memoryview(mm)
        self.writer_pid: int = _Q.unpack_from(mm, _PH_WRITER_PID)[0]
        self.writer_start: int = _Q.unpack_from(mm, _PH_WRITER_START)[0]

    def idle(self) -> bool:
        """No region is in use (so no message in flight refers to this segment)."""
        return self.mm.find(b"\x01", _SLOTS_OFF, _SLOTS_OFF + _NSLOTS) < 0

    def finished(self) -> bool:
        """The writer closed the pool or died, and nothing refers to the segment."""
        writer_gone = bool(self.mm[_PH_CLOSED]) or not _pid_alive(
            self.writer_pid, self.writer_start
        )
        return writer_gone and self.idle()


_reader_segs: dict[str, _RSeg] = {}
_reader_lock = threading.Lock()
_last_sweep = 0.0
_SWEEP_INTERVAL: Final = 1.0


def _sweep_locked() -> int:
    global _last_sweep
    _last_sweep = time.monotonic()
    dead = [name for name, seg in _reader_segs.items() if seg.finished()]
    for name in dead:
        # Views still alive keep the mapping (and the pages) alive on their own.
        del _reader_segs[name]
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
    with _reader_lock:
        return _sweep_locked()


def _reader_segment(name: str) -> _RSeg:
    seg = _reader_segs.get(name)
    if seg is not None:
        return seg
    with _reader_lock:
        seg = _reader_segs.get(name)
        if seg is None:
            try:
                fd, mm = _attach_segment(name)
            except FileNotFoundError:
                raise ValueError(
                    f"shared memory segment {name!r} of a ShmPool message does not exist "
                    "(was the message already loaded in another process?)"
                ) from None
            os.close(fd)
            if mm[:8] != _POOL_MAGIC:
                mm.close()
                raise ValueError(f"shared memory segment {name!r} is not a ShmPool segment")
            mm[_PH_ATTACHED] = 1
            _unlink(name)  # the only reader has it mapped now; nobody else needs the name
            seg = _RSeg(name, mm)
            _sweep_locked()
            _reader_segs[name] = seg
        elif time.monotonic() - _last_sweep > _SWEEP_INTERVAL:
            _sweep_locked()
    return seg


def _parse_message(mv: memoryview) -> tuple[list[_RSeg], list[tuple[int, int, int, int]], int]:
    if mv.nbytes < _MSG_HEAD.size:
        raise ValueError("not a ShmPool message (too short)")
    magic, version, _flags, nseg, ndesc = _MSG_HEAD.unpack_from(mv, 0)
    if magic != _MSG_MAGIC or version != _MSG_VERSION:
        raise ValueError("not a ShmPool message (bad magic or version)")
    pos = _MSG_HEAD.size
    names: list[str] = []
    for _ in range(nseg):
        n = mv[pos]
        names.append(bytes(mv[pos + 1 : pos + 1 + n]).decode("ascii"))
        pos += 1 + n
    descs: list[tuple[int, int, int, int]] = []
    for _ in range(ndesc):
        idx, _pad, slot, off, n = _MSG_DESC.unpack_from(mv, pos)
        pos += _MSG_DESC.size
        descs.append((idx, slot, off, n))
    segs = [_reader_segment(name) for name in names]
    for idx, slot, off, n in descs:
        if idx >= len(segs) or slot >= _NSLOTS or off + n > len(segs[idx].mm):
            raise ValueError("corrupt ShmPool message (descriptor out of range)")
    return segs, descs, pos


# Regions of loaded messages whose views are alive in this process: (segment, slot).
_live_regions: set[tuple[str, int]] = set()


def _release_region(mm: mmap.mmap, name: str, slot: int, pid: int) -> None:
    """Finalizer of a region's base array: give the region back to the writer."""
    if os.getpid() != pid:
        return  # a forked child dropping inherited views must not free the parent's regions
    _live_regions.discard((name, slot))
    mm[_SLOTS_OFF + slot] = 0


def _check_unclaimed(seg: _RSeg, slot: int) -> None:
    if (seg.name, slot) in _live_regions or not seg.mm[_SLOTS_OFF + slot]:
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
        >>> pool = ShmPool(1 << 20, min_buffer=1024)
        >>> big, small = loads(pool.dumps([np.zeros(1000), np.zeros(10)]))
        >>> pool.stats()["regions_in_use"]   # only `big` lives in shared memory
        1
        >>> del big
        >>> pool.stats()["regions_in_use"]
        0
        >>> pool.close()
    """
    with memoryview(message) as raw, raw.cast("B") as mv:
        segs, descs, pos = _parse_message(mv)
        for idx, slot, _off, _n in descs:
            _check_unclaimed(segs[idx], slot)
        pid = os.getpid()
        buffers: list[npt.NDArray[np.uint8]] = []
        for idx, slot, off, n in descs:
            seg = segs[idx]
            # frombuffer over a memoryview (not over another ndarray) so that numpy
            # does not collapse the base chain past this object: every array built
            # on the region keeps `region` alive, and its death frees the slot.
            region = np.frombuffer(seg.mv[off : off + n], dtype=np.uint8)
            _live_regions.add((seg.name, slot))
            weakref.finalize(region, _release_region, seg.mm, seg.name, slot, pid).atexit = False
            buffers.append(region)
        return pickle.loads(mv[pos:], buffers=buffers)


def discard(message: bytes | bytearray | memoryview) -> None:
    """Give the pool regions of a message back without loading it.

    Use it for messages that will never be passed to :func:`loads` (for
    example results dropped after a cancellation), so that their memory
    returns to the pool and their segment names get unlinked.

    Examples:
        >>> import numpy as np
        >>> with ShmPool(1 << 20, min_buffer=0) as pool:
        ...     discard(pool.dumps(np.ones(100)))
        ...     pool.stats()["regions_in_use"]
        0
    """
    with memoryview(message) as raw, raw.cast("B") as mv:
        segs, descs, _pos = _parse_message(mv)
        for idx, slot, _off, _n in descs:
            _check_unclaimed(segs[idx], slot)
        for idx, slot, _off, _n in descs:
            segs[idx].mm[_SLOTS_OFF + slot] = 0


def cleanup_orphans(pids: Iterable[int] | None = None) -> list[str]:
    """Unlink shared memory left behind by processes that died (Linux ``/dev/shm``).

    A :class:`ShmPool` segment is an orphan when its writer process is gone
    and either the calling process is its reader or the reader is gone too:
    a message that was never loaded (the worker was killed, or exited while
    the reader dropped its pipe) keeps a segment name alive otherwise. Call
    this in the reader only at a point where no message of those writers is
    still pending -- e.g. after joining a worker and draining (or abandoning)
    its pipe -- since loading such a message afterwards fails. A
    :class:`SharedMemoryRingBuffer` segment is an orphan when its creator died
    without unlinking it (SIGKILL). Segments of live processes are never
    touched. Views and attached handles stay valid: unlinking only removes
    the name.

    Args:
        pids: only consider segments written/created by these process ids
            (recommended: the workers you just joined). ``None``: all.

    Returns:
        The names of the segments that were unlinked.

    Examples:
        >>> cleanup_orphans(pids=[])
        []
    """
    if not os.path.isdir("/dev/shm"):
        return []  # pragma: no cover - other platforms: nothing to scan
    wanted = None if pids is None else set(pids)
    me = os.getpid()
    removed: list[str] = []
    for entry in os.scandir("/dev/shm"):
        if not entry.name.startswith(_NAME_PREFIX):
            continue
        try:
            with open(entry.path, "rb") as f:
                head = f.read(64)
        except OSError:  # vanished, or somebody else's
            continue
        if len(head) < 64:
            continue
        if head[:8] == _POOL_MAGIC:
            owner, owner_start = (
                _Q.unpack_from(head, _PH_WRITER_PID)[0],
                _Q.unpack_from(head, _PH_WRITER_START)[0],
            )
            reader: int = _Q.unpack_from(head, _PH_READER_PID)[0]
            reader_start: int = _Q.unpack_from(head, _PH_READER_START)[0]
            ours = reader == me or not _pid_alive(reader, reader_start)
        elif head[:8] == _RING_MAGIC:
            owner, owner_start = (
                _Q.unpack_from(head, _RH_CREATOR_PID)[0],
                _Q.unpack_from(head, _RH_CREATOR_START)[0],
            )
            ours = True
        else:
            continue  # not initialized yet, or not ours
        if wanted is not None and owner not in wanted:
            continue
        if ours and owner != me and not _pid_alive(owner, owner_start):
            _unlink(entry.name)
            removed.append(entry.name)
            logger.info(
                "removed orphaned shared memory segment %s of dead process %d", entry.name, owner
            )
    return removed


def _after_fork_in_child() -> None:
    global _cores_lock, _reader_lock
    _cores_lock = threading.Lock()
    _reader_lock = threading.Lock()
    for core in list(_cores.values()):
        core.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
