"""The executor stage on Dask (issue 15): what only a ``distributed`` cluster does.

A worker killed mid-run (Dask gives up, or retries), both ways of passing Dask (a
``Client``, its ``get_executor()``), large stage functions, impure tasks, and what
importing ``distributed`` changes in this process (tblib's traceback pickling). The
comparisons every engine runs are in ``test_executor.py``.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from executors import has, restored_environ
from test_executor import bad_at_7, pipeline, run_sync

import tinypl as pl
from tinypl import Pipe


@pytest.mark.timeout(60)
def test_dask_executor_and_client_both_work(dask_client: Any) -> None:
    expected = run_sync()
    assert list(pipeline(range(60)).executor(dask_client.get_executor()).order()) == expected
    assert list(pipeline(range(60)).executor(dask_client, chunksize=7).order()) == expected
    assert dask_client.submit(abs, -1).result() == 1  # the client is still the user's


def _kill_once(flag: str) -> Any:
    def work(x: int) -> int:
        if x == 30 and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.002)
        return x

    return work


def _kill_always(x: int) -> int:
    if x == 30:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.fixture
def fragile_cluster() -> Iterator[Any]:
    """A cluster of its own (its workers get killed), that gives up on the first death."""
    if not has("distributed"):
        pytest.skip("distributed is not installed (the `dask` extra)")
    import dask
    from distributed import Client, LocalCluster

    # Its HTTP server cannot take the session cluster's port; the other one will do.
    quiet = warnings.catch_warnings()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), quiet, restored_environ():
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


@pytest.mark.timeout(90)
def test_a_killed_dask_worker_never_hangs(fragile_cluster: Any, tmp_path: Path) -> None:
    # A death Dask gives up on: a WorkerError naming the stage, KilledWorker its cause.
    with pytest.raises(pl.WorkerError) as info:
        list(Pipe(range(100)).map(_kill_always).executor(fragile_cluster, chunksize=5))
    assert "executor(map(_kill_always))" in str(info.value)
    assert type(info.value.__cause__).__name__ == "KilledWorker"


@pytest.mark.timeout(90)
def test_a_dask_worker_killed_once_is_retried(dask_client: Any, tmp_path: Path) -> None:
    # The session cluster allows retries: Dask reruns the chunk, nothing is lost.
    work = _kill_once(str(tmp_path / "killed"))
    got = list(Pipe(range(100)).map(work).executor(dask_client, chunksize=5).order())
    assert got == list(range(100))
    assert (tmp_path / "killed").exists()


@pytest.mark.timeout(60)
def test_large_stage_functions_on_dask(dask_client: Any) -> None:
    from tinypl._runtime._executor import INLINE_BYTES

    table = bytes(range(256)) * (INLINE_BYTES // 64)

    def look_up(x: int) -> int:
        return table[x] * 2

    got = list(Pipe(range(300)).map(look_up).executor(dask_client).order())
    assert got == [table[x] * 2 for x in range(300)]


@pytest.mark.timeout(60)
def test_a_failed_process_stage_is_freed_once_dask_is_imported(dask_client: Any) -> None:
    # Importing distributed installs tblib's traceback pickling, so errors from worker
    # processes arrive with rebuilt tracebacks whose frames chain back to the reader.
    import copyreg
    import types

    assert types.TracebackType in copyreg.dispatch_table  # tblib is installed

    def consume() -> weakref.ref[Any]:
        stage = iter(Pipe(range(20)).map(bad_at_7).process(2, start_method="fork"))
        try:
            for _ in stage:
                pass
        except KeyError:
            pass
        return weakref.ref(stage)

    ref = consume()
    gc.collect()
    assert ref() is None, "the failed stage is never freed"


def draw(x: int) -> float:
    import random

    return random.random()


@pytest.mark.timeout(60)
def test_equal_chunks_are_not_merged_by_dask(dask_client: Any) -> None:
    # Dask gives equal pure tasks one key and runs them once; a stage function may
    # have effects, or draw random numbers, as this one does.
    got = list(Pipe([0] * 30).map(draw).executor(dask_client, chunksize=1))
    assert len(got) == 30
    assert len(set(got)) == 30
