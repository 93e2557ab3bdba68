"""Tests for tinypl._shm._sweep: what killed processes leave in /dev/shm gets removed."""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shm_helpers import (
    REPO_ROOT,
    assert_same,
    leftover_segments,
    pool_worker,
    segment_exists,
    shm_listing,
)

from tinypl._shm import (
    SharedMemoryRingBuffer,
    ShmPool,
    _segments,
    cleanup,
    cleanup_orphans,
    discard,
    loads,
)
from tinypl._shm._segments import (
    SHM_DIR,
    parse_segment_name,
    process_identity,
    segment_name,
    unlink_segment,
)


@pytest.mark.timeout(60)
def test_cleanup_orphans_after_killed_worker() -> None:
    ctx: Any = mp.get_context("fork")
    before = shm_listing()
    recv, send = ctx.Pipe()
    proc = ctx.Process(target=pool_worker, args=(send, 3, "hold"))
    proc.start()
    messages = [recv.recv_bytes() for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    orphans = leftover_segments(before)
    assert orphans  # never loaded: nobody attached (and unlinked) the names yet
    with ShmPool(16 << 20, min_buffer=0, reader_pid=os.getpid()) as live:
        pending = live.dumps(np.ones(100_000))
        live_segments = leftover_segments(before) - orphans
        assert len(live_segments) == 1
        assert cleanup_orphans(pids=[os.getpid()]) == []  # live writer: untouched
        # our pipe may still hold its messages: only the pids= form sweeps those
        assert not orphans & set(cleanup())
        assert sorted(cleanup_orphans(pids=[proc.pid])) == sorted(orphans)
        assert leftover_segments(before) == live_segments
        with pytest.raises(ValueError, match="does not exist"):
            loads(messages[0])  # documented: too late for pending messages
        assert_same(np.ones(100_000), loads(pending))
    assert not leftover_segments(before)


SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import numpy as np
    from tinypl._shm import SharedMemoryRingBuffer, ShmPool

    def worker(conn):
        pool = ShmPool(8 << 20, min_buffer=0)
        conn.send_bytes(pool.dumps(np.ones(100_000)))  # never loaded
        conn.recv()  # until killed

    if __name__ == "__main__":
        ring = SharedMemoryRingBuffer(1 << 20)
        ring.write(np.arange(10))  # never read
        a, b = mp.get_context("fork").Pipe()
        child = mp.get_context("fork").Process(target=worker, args=(b,))
        child.start()
        a.recv_bytes()
        print(os.getpid(), child.pid, ring.name, flush=True)
        sys.stdin.read()  # until killed
    """
)


def wait_dead(pidfds: list[int], timeout: float) -> bool:
    """Whether every process behind ``pidfds`` exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending = list(pidfds)
    while pending and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(pending, [], [], left)
        pending = [fd for fd in pending if fd not in ready]
    return not pending


@pytest.mark.timeout(60)
def test_sweep_after_sigkill_of_whole_process_group(tmp_path: Path) -> None:
    """Issue #10.5: kill -9 of a group leaves a pool segment and a ring buffer; a
    later sweep (with no arguments, from an unrelated process) removes them."""
    script = tmp_path / "killed.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    before = shm_listing()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
        text=True,
    )
    try:
        assert proc.stdout is not None
        parent, child, ring_name = proc.stdout.readline().split()
        pids = {int(parent), int(child)}
        pidfds = [os.pidfd_open(pid) for pid in pids]  # before the kill: no pid reuse
        os.killpg(proc.pid, signal.SIGKILL)
        assert wait_dead(pidfds, 20)
    finally:
        proc.kill()
        proc.wait(20)
        for fd in pidfds:
            os.close(fd)
    orphans = leftover_segments(before, pids)
    assert ring_name in orphans
    assert any(parse_segment_name(name).kind == "p" for name in orphans), orphans
    removed = cleanup()
    assert orphans <= set(removed)
    assert not any(segment_exists(name) for name in orphans)


def creator_pid(name: str) -> int:
    fields = parse_segment_name(name)
    return 0 if fields is None else fields.creator[0]


def test_live_creators_are_never_swept() -> None:
    reader = os.getppid()  # alive, and not us
    with (
        SharedMemoryRingBuffer(1 << 16) as ring,
        ShmPool(8 << 20, min_buffer=0, reader_pid=reader) as pool,
    ):
        message = pool.dumps(np.ones(1000))
        pool_segment = next(
            n for n in shm_listing() if creator_pid(n) == os.getpid() and "_p_" in n
        )
        removed = set(cleanup()) | set(cleanup_orphans(pids=[os.getpid()]))
        assert ring.name not in removed and pool_segment not in removed
        assert segment_exists(ring.name) and segment_exists(pool_segment)
        discard(message)


def fake_segment(name: str) -> str:
    """An empty file named like a segment (the sweep decides by its name alone)."""
    fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    return name


def test_recycled_pid_is_not_the_creator() -> None:
    """A live process with the creator's pid but another start time is not the creator."""
    pid, start = process_identity(os.getppid())
    assert start, "needs /proc"
    alive = fake_segment(segment_name("r", (pid, start)))
    recycled = fake_segment(segment_name("r", (pid, start + 1)))
    try:
        removed = cleanup()
        assert recycled in removed and not segment_exists(recycled)
        assert alive not in removed and segment_exists(alive)
    finally:
        unlink_segment(alive)
        unlink_segment(recycled)


def test_pool_segment_of_dead_writer_waits_for_its_reader() -> None:
    """A dead writer's segment stays while its live reader may still load messages."""
    dead = (2**22 + 12345, 1)  # above pid_max's default: never a live process
    reader = process_identity(os.getppid())
    waiting = fake_segment(segment_name("p", dead, reader))
    mine = fake_segment(segment_name("p", dead, process_identity(os.getpid())))
    abandoned = fake_segment(segment_name("p", dead, (dead[0] + 1, 1)))
    try:
        removed = cleanup()
        assert abandoned in removed
        assert waiting not in removed and mine not in removed
        # The reader itself says when the dead writer's messages are gone.
        assert cleanup_orphans(pids=[dead[0]]) == [mine]
        assert segment_exists(waiting)
    finally:
        for name in (waiting, mine, abandoned):
            unlink_segment(name)


def test_other_pid_namespace_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = (2**22 + 54321, 1)
    monkeypatch.setattr(_segments, "_pid_namespace", lambda: 1)
    foreign = fake_segment(segment_name("r", dead))
    monkeypatch.undo()
    try:
        assert foreign not in cleanup()
        assert segment_exists(foreign)
    finally:
        unlink_segment(foreign)
