"""OS plumbing shared by the ring buffer and the pool: segments, names, process liveness.

A segment is a POSIX shared memory object. On Linux it is simply a file in
``/dev/shm``, opened with :func:`os.open` and mapped with :mod:`mmap` (exactly what
``shm_open(3)`` does, at the same cost); the ``multiprocessing`` resource tracker is
never involved, since it would unlink segments, or warn about "leaked
shared_memory", when an *attaching* process exits.

Every name says who created the segment (see :func:`segment_name`), so that a sweep
can tell, from a directory listing alone, which segments belong to dead processes.

Examples:
    >>> name = segment_name("r", (1234, 99))
    >>> parse_segment_name(name)[:3]
    ('r', (1234, 99), None)
"""

from __future__ import annotations

import errno
import mmap
import multiprocessing.util as mp_util
import os
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Final, NamedTuple, TypeVar

__all__ = [
    "ALIGN",
    "NAME_PREFIX",
    "SHM_DIR",
    "Backoff",
    "ClosingContext",
    "Creator",
    "SegmentName",
    "attach_segment",
    "create_segment",
    "current_process",
    "open_segment_fd",
    "own_namespace",
    "parse_segment_name",
    "pid_alive",
    "process_identity",
    "register_owner_cleanup",
    "round_up",
    "segment_name",
    "unlink_segment",
]

SHM_DIR: Final = "/dev/shm"
"""Where POSIX shared memory objects live on Linux."""
NAME_PREFIX: Final = "tinypl_"
"""Every tinypl segment name starts with this."""
ALIGN: Final = 64
"""Alignment of everything placed in a segment (a cache line, >= any dtype)."""

# Waiting: without SemLock (which cannot be pickled outside of process spawning) or
# platform specific futexes there is no cheap cross-process wake-up, so waiters poll
# with exponential backoff from 50 us to 5 ms and check the peer's liveness every 0.1 s.
MIN_SLEEP: Final = 50e-6
MAX_SLEEP: Final = 5e-3
CHECK_INTERVAL: Final = 0.1

Creator = tuple[int, int]
"""A process identity: (pid, start time in clock ticks since boot; 0 if unknown)."""


def round_up(n: int, align: int) -> int:
    """``n`` rounded up to a multiple of ``align``.

    Examples:
        >>> round_up(65, 64), round_up(64, 64)
        (128, 64)
    """
    return (n + align - 1) // align * align


# --------------------------------------------------------------------------- processes


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


def _start_time(pid: int) -> int:
    try:
        fields = _proc_stat(pid)
    except OSError:
        return 0
    return int(fields[19]) if fields is not None and len(fields) > 19 else 0


_identity: dict[int, Creator] = {}
os.register_at_fork(after_in_child=_identity.clear)  # a child is another process


def process_identity(pid: int) -> Creator:
    """(pid, start time) of a process; the start time tells a recycled pid apart.

    Examples:
        >>> process_identity(os.getpid())[0] == os.getpid()
        True
    """
    known = _identity.get(pid)
    if known is None:
        known = (pid, _start_time(pid))
        if pid == os.getpid():  # our own start time never changes: read /proc once
            _identity[pid] = known
    return known


def current_process() -> Creator:
    """(pid, start time) of the calling process.

    Examples:
        >>> current_process() == process_identity(os.getpid())
        True
    """
    return process_identity(os.getpid())


def pid_alive(pid: int, start_time: int = 0) -> bool:
    """Whether process ``pid`` runs (zombies count as dead; ``start_time`` guards pid reuse).

    Errs on the side of "alive" when procfs cannot be read.

    Examples:
        >>> pid_alive(os.getpid()), pid_alive(0)
        (True, False)
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
    return not (start_time and len(fields) > 19 and int(fields[19]) != start_time)


def _pid_namespace() -> int:
    # Pids only mean something inside their namespace: a /dev/shm shared between
    # containers must not make one container sweep another one's live segments.
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


# --------------------------------------------------------------------------- names


class SegmentName(NamedTuple):
    """What a segment name says: its kind, its creator and (pools) its reader."""

    kind: str
    """``"r"`` for a ring buffer, ``"p"`` for a pool segment."""
    creator: Creator
    """Who created the segment."""
    reader: Creator | None
    """Who reads a pool segment (None for a ring buffer)."""
    namespace: int
    """Inode of the creator's pid namespace (0 if unknown)."""


def segment_name(kind: str, creator: Creator, reader: Creator | None = None) -> str:
    """A fresh, unique segment name that encodes its kind, creator and reader.

    Examples:
        >>> name = segment_name("p", (10, 20), (30, 40))
        >>> name.startswith(NAME_PREFIX + "p_")
        True
        >>> parse_segment_name(name).reader
        (30, 40)
    """
    people = [*creator, *(reader or ())]
    fields = [kind, f"{_pid_namespace():x}", *(f"{n:x}" for n in people), os.urandom(6).hex()]
    return NAME_PREFIX + "_".join(fields)


def parse_segment_name(name: str) -> SegmentName | None:
    """The fields of a name made by :func:`segment_name`; None for any other name.

    Examples:
        >>> parse_segment_name("tinypl_0123456789abcdef") is None
        True
    """
    if not name.startswith(NAME_PREFIX):
        return None
    kind, *fields = name[len(NAME_PREFIX) :].split("_")
    expected = {"r": 4, "p": 6}.get(kind)
    if expected is None or len(fields) != expected:
        return None
    try:
        ns, *numbers = (int(field, 16) for field in fields[:-1])
    except ValueError:
        return None
    reader = (numbers[2], numbers[3]) if kind == "p" else None
    return SegmentName(kind, (numbers[0], numbers[1]), reader, ns)


def own_namespace() -> int:
    """Inode of this process's pid namespace (0 if unknown).

    Examples:
        >>> own_namespace() == parse_segment_name(segment_name("r", (1, 2))).namespace
        True
    """
    return _pid_namespace()


# --------------------------------------------------------------------------- segments


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def open_segment_fd(name: str, flags: int = os.O_RDWR) -> int:
    """Open segment ``name`` (like ``shm_open(3)``); the fd is not inherited.

    Examples:
        >>> open_segment_fd("tinypl_does_not_exist")
        Traceback (most recent call last):
        FileNotFoundError: ...
    """
    if os.path.isdir(SHM_DIR):
        return os.open(_path(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    import _posixshmem  # pragma: no cover - platforms without /dev/shm (macOS)

    fd: int = _posixshmem.shm_open("/" + name, flags, 0o600)  # pragma: no cover
    return fd  # pragma: no cover


def unlink_segment(name: str) -> None:
    """Remove segment ``name`` (mappings stay valid); a missing name is fine.

    Examples:
        >>> unlink_segment("tinypl_does_not_exist")
    """
    with suppress(FileNotFoundError):
        if os.path.isdir(SHM_DIR):
            os.unlink(_path(name))
        else:  # pragma: no cover - platforms without /dev/shm
            import _posixshmem

            _posixshmem.shm_unlink("/" + name)


def _reserve(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    if not hasattr(os, "posix_fallocate"):
        return  # pragma: no cover
    # Reserve the pages now: on a full /dev/shm (64 MB in default Docker containers!)
    # we get a clean error here instead of SIGBUS later.
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise OSError(
                exc.errno,
                f"cannot allocate {size} bytes of shared memory in {SHM_DIR} "
                f"({exc.strerror}); free space there or increase its "
                "size (e.g. docker run --shm-size=1g)",
            ) from exc


def create_segment(
    size: int, kind: str, reader: Creator | None = None
) -> tuple[str, int, mmap.mmap]:
    """Create a fresh 0600 segment of ``size`` bytes; return (name, fd, mapping).

    Examples:
        >>> name, fd, mm = create_segment(4096, "r")
        >>> len(mm), os.path.exists(os.path.join(SHM_DIR, name))
        (4096, True)
        >>> mm.close(); os.close(fd); unlink_segment(name)
    """
    creator = current_process()
    for _ in range(64):
        name = segment_name(kind, creator, reader)
        try:
            fd = open_segment_fd(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        break
    else:  # pragma: no cover
        raise FileExistsError("could not find an unused shared memory name")
    try:
        _reserve(fd, size)
        mm = mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        unlink_segment(name)
        raise
    return name, fd, mm


def attach_segment(name: str, missing: Exception | None = None) -> tuple[int, mmap.mmap]:
    """Open and map an existing segment; return (fd, mapping).

    ``missing`` is raised instead of :class:`FileNotFoundError` if there is no such
    segment.

    Examples:
        >>> name, fd, mm = create_segment(4096, "r")
        >>> fd2, mm2 = attach_segment(name)
        >>> mm[0] = 7; mm2[0]
        7
        >>> for m in (mm, mm2): m.close()
        >>> os.close(fd); os.close(fd2); unlink_segment(name)
    """
    try:
        fd = open_segment_fd(name)
    except FileNotFoundError:
        if missing is None:
            raise
        raise missing from None
    try:
        mm = mmap.mmap(fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise
    return fd, mm


def register_owner_cleanup(obj: object, cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` when ``obj`` is collected, at interpreter exit, and at the exit
    of a multiprocessing child (which leaves via ``os._exit`` and skips atexit).

    ``cleanup`` may run more than once, so it must be idempotent.

    Examples:
        >>> class Owner: pass
        >>> owner, done = Owner(), []
        >>> register_owner_cleanup(owner, lambda: done.append(1))
        >>> del owner; done
        [1, 1]
    """
    weakref.finalize(obj, cleanup)
    mp_util.Finalize(obj, cleanup, exitpriority=0)


Closing = TypeVar("Closing", bound="ClosingContext")


class ClosingContext:
    """A context manager that calls :meth:`close` on exit.

    Examples:
        >>> class Thing(ClosingContext):
        ...     def close(self) -> None: print("closed")
        >>> with Thing(): pass
        closed
    """

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: Closing) -> Closing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Backoff:
    """Polling schedule of a waiter: exponential sleeps, a deadline, periodic checks.

    Examples:
        >>> backoff = Backoff(timeout=0)
        >>> backoff.expired()
        True
    """

    __slots__ = ("deadline", "delay", "next_check")

    def __init__(self, timeout: float | None) -> None:
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.delay = MIN_SLEEP
        self.next_check = now + CHECK_INTERVAL

    def expired(self) -> bool:
        """Whether the deadline passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def check_due(self) -> bool:
        """True once every :data:`CHECK_INTERVAL` seconds: time to check the peer."""
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + CHECK_INTERVAL
            return True
        return False

    def sleep(self) -> None:
        """Sleep for the next delay (never past the deadline)."""
        delay = self.delay
        if self.deadline is not None:
            delay = max(0.0, min(delay, self.deadline - time.monotonic()))
        time.sleep(delay)
        self.delay = min(self.delay * 2, MAX_SLEEP)
