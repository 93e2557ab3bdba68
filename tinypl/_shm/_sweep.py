"""Sweeping shared memory that dead processes left in ``/dev/shm`` (after SIGKILL).

Segment names say who created them (see :mod:`tinypl._shm._segments`), so a sweep
lists the directory and checks each distinct creator once; it opens no segment
unless its name predates that scheme.

Examples:
    >>> cleanup_orphans(pids=[])
    []
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ._layout import U64, PoolHeader, RingHeader
from ._segments import (
    NAME_PREFIX,
    SHM_DIR,
    Creator,
    SegmentName,
    own_namespace,
    parse_segment_name,
    pid_alive,
    unlink_segment,
)

__all__ = ["cleanup", "cleanup_orphans"]


def _from_header(path: str) -> SegmentName | None:
    """Kind, creator and reader of a segment whose name does not say (older tinypl)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:  # vanished, or somebody else's
        return None
    if len(head) < 64:
        return None

    def who(pid_at: int, start_at: int) -> Creator:
        return U64.unpack_from(head, pid_at)[0], U64.unpack_from(head, start_at)[0]

    if head[:8] == PoolHeader.MAGIC:
        writer = who(PoolHeader.WRITER_PID, PoolHeader.WRITER_START)
        return SegmentName("p", writer, who(PoolHeader.READER_PID, PoolHeader.READER_START), 0)
    if head[:8] == RingHeader.MAGIC:
        return SegmentName("r", who(RingHeader.CREATOR_PID, RingHeader.CREATOR_START), None, 0)
    return None  # not initialized yet, or not ours


class _Liveness:
    """Memoized :func:`pid_alive`: a sweep asks about each process once."""

    def __init__(self) -> None:
        self.known: dict[Creator, bool] = {}

    def __call__(self, who: Creator) -> bool:
        alive = self.known.get(who)
        if alive is None:
            alive = self.known[who] = pid_alive(*who)
        return alive


def _orphaned(segment: SegmentName, alive: _Liveness, reader_may_be_me: bool) -> bool:
    me = os.getpid()
    if segment.creator[0] == me or alive(segment.creator):
        return False
    if segment.reader is None:  # a ring buffer: nobody else unlinks it
        return True
    # A dead writer's messages may still wait in a live reader's pipe: only that
    # reader knows when they are gone (it passes the writers' pids).
    reader_pid = segment.reader[0]
    return (reader_may_be_me and reader_pid == me) or (
        reader_pid != me and not alive(segment.reader)
    )


def cleanup_orphans(pids: Iterable[int] | None = None) -> list[str]:
    """Unlink shared memory left behind by processes that died (Linux ``/dev/shm``).

    A :class:`~tinypl._shm.SharedMemoryRingBuffer` segment is an orphan when its
    creator died without unlinking it (SIGKILL). A :class:`~tinypl._shm.ShmPool`
    segment is an orphan when its writer is gone and so is its reader: a message that
    was never loaded keeps a segment name alive otherwise. Segments of live processes
    are never touched, nor those of another pid namespace (a ``/dev/shm`` shared
    between containers). Views and attached handles stay valid: unlinking only
    removes the name. Cost: one directory listing plus one ``/proc`` read per
    distinct dead-looking creator.

    Args:
        pids: only consider segments written/created by these process ids, and
            also sweep pool segments of theirs that the calling process reads: pass
            the workers you just joined, once their pipes were drained or
            abandoned (loading a pending message of theirs fails afterwards).
            ``None``: every dead creator's segments.

    Returns:
        The names of the segments that were unlinked.

    Examples:
        >>> cleanup_orphans(pids=[])
        []
    """
    if not os.path.isdir(SHM_DIR):
        return []  # pragma: no cover - other platforms: nothing to scan
    wanted = None if pids is None else set(pids)
    if wanted is not None and not wanted:
        return []
    namespace, alive = own_namespace(), _Liveness()
    removed: list[str] = []
    with os.scandir(SHM_DIR) as entries:
        for entry in entries:
            if not entry.name.startswith(NAME_PREFIX):
                continue
            segment = parse_segment_name(entry.name) or _from_header(entry.path)
            if segment is None or segment.namespace not in (0, namespace):
                continue
            if wanted is not None and segment.creator[0] not in wanted:
                continue
            if _orphaned(segment, alive, reader_may_be_me=wanted is not None):
                unlink_segment(entry.name)
                removed.append(entry.name)
                import logging  # here: a fork server imports this module, rarely logs

                logging.getLogger("tinypl").info(
                    "removed orphaned shared memory segment %s of dead process %d",
                    entry.name,
                    segment.creator[0],
                )
    return removed


def cleanup() -> list[str]:
    """Remove the shared memory of tinypl processes that were killed (``kill -9``).

    Pool segments of process stages and ring buffers normally disappear with the
    processes that use them; a process killed with SIGKILL cannot clean up, so its
    segments stay in ``/dev/shm`` until a sweep. Every process stage sweeps when it
    starts; call this to sweep on demand (e.g. after killing a training job). It
    never touches shared memory of live processes.

    Returns:
        The names of the segments that were removed.

    Examples:
        >>> isinstance(cleanup(), list)
        True
    """
    return cleanup_orphans()
