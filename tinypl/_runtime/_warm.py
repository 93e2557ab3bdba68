"""Warm worker processes: the workers of a finished process stage stay, idle, for the
next process stage with the same settings.

Starting workers is most of a short run: a forkserver or spawn worker imports tinypl
and then the user's modules (torch: seconds), and each run paid it again. So when a
run ends cleanly, its worker set is not stopped but *released*: every worker drops its
queued chunks, answers ``IDLE`` and waits for the spec of a next run on its task pipe.
A later stage with the same start method, worker count, thread limits and watch mode
(timeout/restart) *checks out* the set and hands it its own spec (functions, ``init``,
seed, ``sys.path``); workers run ``init`` and are seeded again for every run. A worker
keeps its shared-memory pool too (trimmed to ``_worker.IDLE_POOL_BYTES`` while idle),
and this process keeps its mappings of it: a fresh page of shared memory costs a fault
and a zeroed page, so a short run of large results paid for its pool again and again.
Stopping an idle set (:func:`shutdown`, expiry, eviction) unmaps what its pools left.

What keeps this safe:

- Only forkserver and spawn workers are kept: they never shared the parent's memory,
  so a reused worker sees what a new one would. A fork worker is a snapshot of the
  parent at its start, which a later run must not see.
- A set is kept only when every worker acknowledged the end of the run within the
  grace period: a stuck, dead or killed worker sends the set down the usual path
  (terminate, kill, ``WorkerDied``).
- At most ``MAX_IDLE_SETS`` sets wait; one idle longer than the idle timeout is never
  handed out (its workers exit on their own a little later, so no thread is needed),
  and :func:`shutdown` (also at interpreter exit) stops them all at once.
- A forked child forgets its parent's sets without touching them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from multiprocessing.connection import wait
from typing import Any

from ._feeder import Feeder
from ._worker import IDLE, STOP
from ._workerset import WorkerSet

__all__ = ["checkin", "checkout", "keep_warm", "release", "reusable", "shutdown", "worker_idle"]

#: Seconds an idle set may wait for its next run (``pl.process.keep_warm``).
IDLE_TIMEOUT = 30.0
#: Idle sets kept at most (the oldest is stopped to make room).
MAX_IDLE_SETS = 4
#: Start methods whose workers may be reused (see the module docstring).
METHODS = ("forkserver", "spawn")

Key = tuple[str, int, bool, bool]

_lock = threading.Lock()
_idle: list[tuple[Key, WorkerSet, float]] = []  # oldest first
_timeout = [IDLE_TIMEOUT]


def keep_warm(seconds: float) -> float:
    """Set the idle timeout of warm workers (0 turns reuse off and stops the idle ones);
    returns the previous value."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"keep_warm: seconds must be a number >= 0, got {seconds!r}")
    with _lock:
        previous, _timeout[0] = _timeout[0], float(seconds)
    if seconds == 0:
        shutdown()
    return previous


def reusable(method: str) -> bool:
    """Whether workers of this start method may be kept for later runs (now)."""
    return method in METHODS and _timeout[0] > 0


def worker_idle(method: str) -> float:
    """Seconds a worker of a new run waits, idle after it, for a next run (0: none).

    Longer than the parent's timeout, so the parent never hands out a set whose workers
    are about to leave on their own."""
    return 2 * _timeout[0] + 1.0 if reusable(method) else 0.0


def checkout(key: Key) -> WorkerSet | None:
    """An idle set for ``key`` whose workers are all alive, or None."""
    now = time.monotonic()
    found: WorkerSet | None = None
    stale: list[WorkerSet] = []
    with _lock:
        for entry in list(_idle):
            entry_key, pool, since = entry
            if now - since > _timeout[0] or not _alive(pool):
                _idle.remove(entry)
                stale.append(pool)
            elif found is None and entry_key == key:
                _idle.remove(entry)
                found = pool
    for pool in stale:
        _stop(pool)
    return found


def checkin(key: Key, pool: WorkerSet) -> None:
    """Keep the released ``pool`` for a later run with the same ``key``."""
    with _lock:
        _idle.append((key, pool, time.monotonic()))
        evicted = [entry[1] for entry in _idle[:-MAX_IDLE_SETS]]
        del _idle[:-MAX_IDLE_SETS]
    for old in evicted:
        _stop(old)


def shutdown() -> int:
    """Stop every idle worker now; returns how many processes were stopped."""
    with _lock:
        pools = [entry[1] for entry in _idle]
        _idle.clear()
    count = sum(len(pool.processes) for pool in pools)
    for pool in pools:
        _stop(pool)
    return count


def idle_pids() -> list[int]:
    """The process ids of the idle workers (for tests and diagnostics)."""
    with _lock:
        return [p.pid for _, pool, _ in _idle for p in pool.processes]


def _alive(pool: WorkerSet) -> bool:
    return all(p.exitcode is None for p in pool.processes)


def _ignore(data: bytes) -> None:
    """An idle set holds no result (its workers answered every chunk before ``IDLE``)."""


def _stop(pool: WorkerSet) -> None:
    # End-of-file on the task pipes ends an idle worker at once; finish waits for it,
    # then terminates what is left and releases every pipe.
    for connection in pool.tasks:
        connection.close()
    live = [p.sentinel for p in pool.processes if p.exitcode is None]
    if live:
        wait(live, 1.0)
    pool.finish(_ignore)
    from .. import _shm

    _shm.trim_cache()  # this process's mappings of the pools those workers kept idle


def _forget() -> None:
    """In a forked child: the parent's idle sets are the parent's."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget)


# -- releasing a set at the end of a run ---------------------------------------------------


def release(pool: WorkerSet, feeder: Feeder, deadline: float, discard: Any) -> bool:
    """End a run keeping its workers: stop the feeder's sends, tell every worker to drop
    its queued chunks and wait for every ``IDLE``, discarding the results that arrive.
    False (the caller then stops the set the usual way) if anything is amiss before
    ``deadline`` (a ``time.monotonic()``)."""
    pool.signal_stop()
    if not _seal(pool, feeder, deadline, discard):
        return False
    if not _await_idle(pool, deadline, discard):
        return False
    pool.clear_stop()
    return True


def _seal(pool: WorkerSet, feeder: Feeder, deadline: float, discard: Any) -> bool:
    """Send ``STOP`` to every worker while the feeder cannot send (it checks
    ``stopping`` under its send lock, so nothing follows the ``STOP``)."""
    lock = feeder.send_lock
    while not lock.acquire(timeout=0.01):
        # A send in progress waits for a worker blocked on its result pipe: read it.
        if time.monotonic() > deadline:
            return False
        for ready in wait(pool.results, 0):
            with contextlib.suppress(EOFError, OSError):
                discard(_connection(ready).recv_bytes())
    try:
        for connection in pool.tasks:
            try:
                os.set_blocking(connection.fileno(), False)
                connection.send_bytes(STOP)
            except OSError:
                return False  # a full pipe: that worker is busy past its queue
            finally:
                with contextlib.suppress(OSError):
                    os.set_blocking(connection.fileno(), True)
    finally:
        lock.release()
    return True


def _connection(ready: Any) -> Any:
    return ready  # wait() returns the result connections it was given


def _await_idle(pool: WorkerSet, deadline: float, discard: Any) -> bool:
    waiting = set(range(len(pool.processes)))
    sentinels = pool.sentinels()
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for ready in wait([*(pool.results[i] for i in waiting), *sentinels], remaining):
            if ready in sentinels:
                return False  # a dead worker: the set is not kept
            try:
                data = _connection(ready).recv_bytes()
            except (EOFError, OSError):
                return False
            if data == IDLE:
                waiting.discard(pool.results.index(ready))
            else:
                discard(data)
    return True
