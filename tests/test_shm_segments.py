"""Tests for tinypl._shm._segments (and _pickling): names, segments, liveness."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shm_helpers import REPO_ROOT, leftover_segments, shm_listing

SPAWN_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
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
    assert result.stderr == ""
    assert not leftover_segments(before)

