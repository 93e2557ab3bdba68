"""Real executors for the executor-stage tests: the standard pools, loky, a Dask
``LocalCluster`` on loopback, and MPI (in a child interpreter with a session of its own).

Every engine is real; nothing is mocked. The fixtures are module-scoped: starting the
Dask cluster takes about 3 s, and a pool is reused by every test of a module that only
needs a working executor; all of them are stopped when the module is done, because the
leak checks of other modules (``multiprocessing.active_children()``) must not see them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from procwatch import REPO

__all__ = [
    "ENGINES",
    "dask_client",
    "engine",
    "forkserver_pool",
    "has",
    "loky_executor",
    "run_mpi_output",
    "restored_environ",
    "run_mpi_script",
]

#: The engines every comparison runs on (MPI runs in its own interpreter, see below).
ENGINES = ("thread", "process", "loky", "dask")


def has(module: str) -> bool:
    """Whether an optional package is installed."""
    return importlib.util.find_spec(module) is not None


def forkserver_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A process pool that is safe to start while other threads run (Dask's, tinypl's)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A ``distributed.Client`` of a two-worker ``LocalCluster`` on 127.0.0.1."""
    if not has("distributed"):
        pytest.skip("distributed is not installed (the `dask` extra)")
    from distributed import Client, LocalCluster

    with restored_environ(), warnings.catch_warnings():
        # The scheduler's HTTP server (on 127.0.0.1) takes another port when 8787 is busy.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


@contextlib.contextmanager
def restored_environ() -> Iterator[None]:
    """Undo what a Dask nanny writes into this process's environment
    (``distributed.nanny.pre-spawn-environ``: ``OMP_NUM_THREADS=1`` …), which later
    tests would otherwise inherit."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def _pools() -> Iterator[dict[str, Executor]]:
    pools: dict[str, Executor] = {"thread": ThreadPoolExecutor(2), "process": forkserver_pool()}
    try:
        yield pools
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def loky_executor() -> Iterator[Callable[[], Any]]:
    """``get_reusable_executor`` (with 2 workers): each call gives the current executor,
    a fresh one after a test broke the last. Shut down when the module is done (loky
    would otherwise keep its workers for minutes)."""
    if not has("loky"):
        pytest.skip("loky is not installed (the `executors` extra)")
    from loky import get_reusable_executor

    def current() -> Any:
        return get_reusable_executor(max_workers=2)

    try:
        yield current
    finally:
        current().shutdown(wait=True)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, _pools: dict[str, Executor]) -> Any:
    """Each engine in turn: what a user passes to ``.executor()``."""
    name = request.param
    if name in _pools:
        return _pools[name]
    if name == "loky":
        return request.getfixturevalue("loky_executor")()
    return request.getfixturevalue("dask_client")


def run_mpi_script(script: str, tmp_path: Path, timeout: float = 120.0) -> list[Any]:
    """Run ``script`` (which starts an ``MPIPoolExecutor``) and return its JSON lines."""
    stdout = run_mpi_output(script, tmp_path, timeout)
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_mpi_output(script: str, tmp_path: Path, timeout: float = 120.0) -> str:
    """Run ``script`` (which starts an ``MPIPoolExecutor``) and return its output.

    The wheel's ``mpiexec`` sits next to this interpreter; a singleton MPI process needs
    it on ``PATH`` to spawn workers. MPICH's process manager kills its whole process
    group when a job dies, so the script runs in a session of its own.
    """
    if not has("mpi4py"):
        pytest.skip("mpi4py is not installed (the `mpi` extra)")
    bin_dir = str(Path(sys.executable).parent)
    if shutil.which("mpiexec", path=os.pathsep.join([bin_dir, os.environ.get("PATH", "")])) is None:
        pytest.skip("no mpiexec next to the interpreter or on PATH (the `mpich` wheel)")
    path = tmp_path / "mpi_script.py"
    path.write_text(script)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        check=False,
    )
    if "PMII_singinit" in result.stderr or "execv failed" in result.stderr:
        pytest.skip(f"MPI cannot start on this machine: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    return result.stdout
