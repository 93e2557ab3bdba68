"""Tests for tinypl._shm._segments (and _pickling): names, segments, liveness."""

from __future__ import annotations

import errno
import os
import pickle
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shm_helpers import REPO_ROOT, leftover_segments, shm_listing

from tinypl._shm._pickling import check_plain, dumps_out_of_band
from tinypl._shm._segments import (
    SHM_DIR,
    SegmentName,
    attach_segment,
    create_segment,
    own_namespace,
    parse_segment_name,
    pid_alive,
    process_identity,
    segment_name,
    unlink_segment,
)

SPAWN_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import os
    import numpy as np
    from tinypl._shm import SharedMemoryRingBuffer, ShmPool, loads

    def child(buffer, conn):
        conn.send(buffer.write(np.arange(10.0)))
        pool = ShmPool(8 << 20)
        conn.send_bytes(pool.dumps(np.ones(100_000)))
        conn.recv()  # wait until the parent loaded it, then exit without close()

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        buffer = SharedMemoryRingBuffer(1 << 20)
        a, b = ctx.Pipe()
        p = ctx.Process(target=child, args=(buffer, b))
        p.start()
        assert buffer.read(a.recv()).sum() == 45
        x = loads(a.recv_bytes())
        a.send("bye")
        p.join()
        assert p.exitcode == 0
        assert x.sum() == 100_000
        del x
        buffer.close()
        print(os.getpid())
    """
)


@pytest.mark.timeout(60)
def test_no_resource_tracker_warnings_and_no_leaks(tmp_path: Path) -> None:
    script = tmp_path / "spawn_script.py"
    script.write_text(SPAWN_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    before = shm_listing()
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    script_pid = int(result.stdout)
    assert result.stderr == ""
    assert not leftover_segments(before, [script_pid])



def test_names_say_who_created_the_segment() -> None:
    me = process_identity(os.getpid())
    ring = parse_segment_name(segment_name("r", me))
    assert ring == SegmentName("r", me, None, own_namespace())
    pool = parse_segment_name(segment_name("p", me, (7, 8)))
    assert pool is not None and (pool.creator, pool.reader) == (me, (7, 8))
    assert segment_name("r", me) != segment_name("r", me)  # a random part
    for foreign in ("tinypl_0123456789abcdef", "tinypl_r_zz_1_2_3", "sem.mp-x", "tinypl_q_1_2"):
        assert parse_segment_name(foreign) is None


def test_segments_are_private_files_in_dev_shm() -> None:
    name, fd, mm = create_segment(8192, "r")
    try:
        path = Path(SHM_DIR) / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.stat().st_size == 8192
        assert parse_segment_name(name).creator == process_identity(os.getpid())  # type: ignore[union-attr]
        fd2, mm2 = attach_segment(name)
        mm[100] = 42
        assert mm2[100] == 42
        mm2.close()
        os.close(fd2)
        assert not os.get_inheritable(fd)
    finally:
        mm.close()
        os.close(fd)
        unlink_segment(name)
    assert not (Path(SHM_DIR) / name).exists()
    unlink_segment(name)  # a second unlink is harmless
    with pytest.raises(FileNotFoundError):
        attach_segment(name)


def test_full_dev_shm_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    before = shm_listing()
    with pytest.raises(OSError, match="shm-size") as info:
        create_segment(1 << 20, "p", (1, 1))
    assert info.value.errno == errno.ENOSPC
    assert not leftover_segments(before)


@pytest.mark.timeout(30)
def test_pid_alive_zombies_and_start_times() -> None:
    me, start = process_identity(os.getpid())
    assert pid_alive(me) and pid_alive(me, start)
    assert not pid_alive(me, start + 1)  # a recycled pid is another process
    assert not pid_alive(0) and not pid_alive(-1)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], 20)  # readable once it exited
        assert ready
        assert not pid_alive(pid)  # a zombie until reaped
    finally:
        os.close(pidfd)
        os.waitpid(pid, 0)


def test_importing_the_package_needs_no_numpy_and_no_posixshmem() -> None:
    code = (
        "import sys, tinypl._shm as s; from tinypl._shm import _segments, _sweep; "
        "s.cleanup(); print(sorted(m for m in ('numpy', '_posixshmem') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_out_of_band_pickling_without_numpy_objects() -> None:
    buffers: list[pickle.PickleBuffer] = []
    stream = dumps_out_of_band({"a": bytearray(b"xyz"), "b": [1, "2"]}, buffers.append)
    assert pickle.loads(stream, buffers=buffers) == {"a": bytearray(b"xyz"), "b": [1, "2"]}


def test_check_plain_names_the_type() -> None:
    check_plain([1, (2.0, {"k": None}), b"x", "s", 1j])
    with pytest.raises(TypeError, match=r"builtins\.set"):
        check_plain([{1}])
