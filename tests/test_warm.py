"""Warm worker reuse (``tinypl._runtime._warm``): a finished process stage leaves its
forkserver/spawn workers idle for the next stage with the same settings.

The rest of the suite runs with reuse off (conftest): here it is on, and every test
ends with no idle worker, no tinypl thread and no new shared memory left behind.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shm_helpers import leftover_segments, shm_listing
from threadwatch import tinypl_threads

import tinypl as pl
from tinypl import Pipe
from tinypl._runtime import _warm

METHODS = ("forkserver", "spawn")
REPO = Path(pl.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def warm() -> Iterator[None]:
    """Reuse on for the test; afterwards no idle worker, thread or segment is left."""
    threads, shm = tinypl_threads(), shm_listing()
    previous = pl.process.keep_warm(30)
    try:
        yield
    finally:
        pl.process.keep_warm(previous)  # 0 in this suite: stops the idle workers
        pl.process.shutdown()
        gc.collect()
    children = multiprocessing.active_children()
    for process in children:
        process.kill()
        process.join(5)
    assert not children, f"left behind: {children}"
    assert not tinypl_threads() - threads
    assert not _ours(shm_listing() - shm)


def _ours(names: set[str]) -> set[str]:
    """Segments this process or its workers created or read (other runs share /dev/shm)."""
    pids = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    return {name for name in leftover_segments(set(), pids) if name in names}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return not stat or stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def who(x: int) -> tuple[int, int, int, int]:
    info = pl.worker_info()
    assert info is not None
    return os.getpid(), info.id, info.count, info.seed


def pids_of(results: list[tuple[int, ...]]) -> set[int]:
    return {r[0] for r in results}


def run_once(method: str = "forkserver", **kwargs: Any) -> list[tuple[int, int, int, int]]:
    return list(Pipe(range(40)).map(who).process(2, start_method=method, chunksize=1, **kwargs))


# -- reuse ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_second_run_with_the_same_settings_reuses_the_workers(method: str) -> None:
    first = run_once(method, seed=100)
    assert len(_warm.idle_pids()) == 2
    second = run_once(method, seed=200)
    assert pids_of(first) == pids_of(second) == set(_warm.idle_pids())
    # worker_info and the seeds are those of each run, not of the one that started them
    assert {r[1:] for r in first} <= {(0, 2, 100), (1, 2, 101)}
    assert {r[1:] for r in second} <= {(0, 2, 200), (1, 2, 201)}


@pytest.mark.timeout(60)
def test_other_settings_get_other_workers() -> None:
    two = run_once()
    one = list(Pipe(range(10)).map(who).process(1))
    limited = list(Pipe(range(10)).map(who).process(2, limit_threads=False))
    assert not pids_of(two) & pids_of(one)
    assert not pids_of(two) & pids_of(limited)
    assert len(_warm.idle_pids()) == 5


@pytest.mark.timeout(60)
def test_fork_workers_are_never_kept() -> None:
    first = run_once("fork")
    assert _warm.idle_pids() == []
    assert not pids_of(first) & pids_of(run_once("fork"))


@pytest.mark.timeout(60)
def test_keep_warm_zero_turns_reuse_off_and_stops_the_idle_workers() -> None:
    first = run_once()
    pids = _warm.idle_pids()
    assert pl.process.keep_warm(0) == 30
    assert _warm.idle_pids() == [] and all(map(_gone, pids))  # stopped at once
    assert not pids_of(first) & pids_of(run_once())
    assert _warm.idle_pids() == []


@pytest.mark.timeout(60)
def test_keep_warm_rejects_bad_values() -> None:
    for bad in (-1, "5", True, float("nan")):
        with pytest.raises(ValueError, match="keep_warm: seconds must be a number >= 0"):
            pl.process.keep_warm(bad)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_shutdown_stops_every_idle_worker() -> None:
    run_once()
    pids = _warm.idle_pids()
    assert len(pids) == 2
    assert pl.process.shutdown() == 2
    assert all(map(_gone, pids))  # shutdown waited for them
    assert multiprocessing.active_children() == []
    assert pl.process.shutdown() == 0


@pytest.mark.timeout(60)
def test_a_set_idle_past_the_timeout_is_not_handed_out_and_its_workers_leave() -> None:
    pl.process.keep_warm(0.2)
    first = run_once()
    processes = [p for p in multiprocessing.active_children() if p.pid in pids_of(first)]
    # Workers wait 2 x 0.2 + 1 s for a next run, then exit on their own.
    sentinels = {p.sentinel for p in processes}
    while sentinels:
        ready = wait(list(sentinels), 10)
        assert ready, "an idle worker did not leave after its idle timeout"
        sentinels -= set(ready)
    assert not pids_of(first) & pids_of(run_once())


# -- what reuse keeps ----------------------------------------------------------------------


INITS: list[str] = []


def record_init(token: str) -> None:
    INITS.append(token)  # the module of the worker: by reference, it outlives a run


def _note_init(token: str) -> Callable[[], None]:
    def init() -> None:
        record_init(token)

    return init


def inits_seen(x: int) -> tuple[int, tuple[str, ...]]:
    return os.getpid(), tuple(INITS)


@pytest.mark.timeout(60)
def test_init_runs_again_in_every_run_of_reused_workers() -> None:
    def run(token: str) -> list[tuple[int, tuple[str, ...]]]:
        pipe = Pipe(range(20)).map(inits_seen).process(2, init=_note_init(token))
        return list(pipe)

    first, second = run("a"), run("b")
    assert pids_of(first) == pids_of(second)  # type: ignore[arg-type]
    assert {r[1] for r in first} == {("a",)}
    assert {r[1] for r in second} == {("a", "b")}  # module state of a worker lives on


def closes_early(x: int) -> int:
    return x


@pytest.mark.timeout(60)
def test_closing_a_run_early_leaves_nothing_of_it_for_the_next() -> None:
    stage = iter(Pipe(range(10**9)).map(who).process(2, chunksize=4))
    taken = [next(stage) for _ in range(50)]
    stage.close()
    pids = set(_warm.idle_pids())
    assert len(pids) == 2 and pids_of(taken) <= pids  # stopped and kept, not killed
    # No chunk or result of the closed run reaches the next one.
    after = run_once(seed=300)
    assert pids_of(after) == pids
    assert len(after) == 40 and {r[3] for r in after} <= {300, 301}


def big(x: int) -> Any:
    return np.full(1 << 17, float(x))  # 1 MiB: travels through shared memory


@pytest.mark.timeout(60)
def test_shared_memory_of_a_run_is_freed_while_its_workers_stay() -> None:
    before = shm_listing()
    stage = iter(Pipe(range(10**6)).map(big).process(2))
    arrays = [next(stage) for _ in range(8)]
    assert [float(a[0]) for a in arrays] == [float(a[-1]) for a in arrays]
    stage.close()
    del arrays
    gc.collect()
    assert len(_warm.idle_pids()) == 2
    pl.process.cleanup()  # unmaps the segments whose arrays are gone
    assert not _ours(shm_listing() - before)


def fails_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(x)
    return x


@pytest.mark.timeout(60)
def test_a_worker_error_reaches_the_consumer_and_the_workers_stay_usable() -> None:
    with pytest.raises(KeyError):
        list(Pipe(range(20)).map(fails_on_three).process(2))
    pids = set(_warm.idle_pids())
    assert len(pids) == 2
    assert pids_of(run_once()) == pids


@pytest.mark.timeout(60)
def test_a_worker_that_dies_in_a_run_is_still_an_error_and_its_set_is_dropped() -> None:
    first = run_once()
    stage = iter(Pipe(range(10**9)).map(who).process(2, chunksize=1))
    next(stage)
    os.kill(next(iter(pids_of(first))), signal.SIGKILL)
    with pytest.raises(pl.WorkerDied, match="was killed by signal SIGKILL"):
        for _ in stage:
            pass
    stage.close()
    assert _warm.idle_pids() == []


@pytest.mark.timeout(60)
def test_an_idle_worker_that_died_is_not_handed_out() -> None:
    first = run_once()
    victim = next(p for p in multiprocessing.active_children() if p.pid in pids_of(first))
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
    assert wait([victim.sentinel], 10)
    second = run_once()
    assert not pids_of(first) & pids_of(second)


def paced(x: int) -> tuple[int, int, int]:
    time.sleep(0.002)
    return x, os.getpid(), pl.worker_info().id  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_restart_replaces_a_dead_reused_worker_with_the_right_identity() -> None:
    def restarting() -> Iterator[tuple[int, int, int]]:
        return iter(Pipe(range(300)).map(paced).process(2, restart=True, chunksize=4))

    # restart= watches the workers: its sets are kept apart from those of plain stages
    pids = {r[1] for r in restarting()}
    stage = restarting()
    out = [next(stage) for _ in range(20)]
    assert {r[1] for r in out} <= pids  # reused workers
    os.kill(min(pids), signal.SIGKILL)
    out += list(stage)
    assert sorted(r[0] for r in out) == list(range(300))  # nothing lost or doubled
    kept = set(_warm.idle_pids())
    assert len(kept) == 2 and min(pids) not in kept  # the replacement joined the set
    killed_id = {r[2] for r in out if r[1] == min(pids)}
    assert {r[2] for r in out if r[1] not in pids} == killed_id  # it took the dead one's id
    after = list(Pipe(range(40)).map(who).process(2, restart=True, seed=9, chunksize=1))
    assert pids_of(after) == kept
    assert {r[1:] for r in after} <= {(0, 2, 9), (1, 2, 10)}


# -- the process -----------------------------------------------------------------------------

EXITING = """
import json, os, sys
import tinypl as pl

def pid(x):
    return os.getpid()

if __name__ == "__main__":
    pids = sorted(set(pl.Pipe(range(20)).map(pid).process(2)))
    print(json.dumps(pids), flush=True)
"""


def _run_script(script: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Runs ``text`` as a fresh interpreter's main module, with this checkout's tinypl."""
    script.write_text(textwrap.dedent(text))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.timeout(60)
def test_idle_workers_do_not_outlive_the_interpreter(tmp_path: Path) -> None:
    done = _run_script(tmp_path / "exiting.py", EXITING)
    pids = [int(p) for p in done.stdout.strip().strip("[]").split(",")]
    assert len(pids) == 2
    assert all(_gone(pid) for pid in pids)  # the exit waited for them


LAZY_NUMPY = """
import json, sys
import tinypl as pl

def draw(x):
    loaded = "numpy" in sys.modules
    import numpy as np
    return loaded, float(np.random.rand())

if __name__ == "__main__":
    for _ in range(2):  # the second run reuses the worker, numpy loaded already
        print(json.dumps(list(pl.Pipe(range(2)).map(draw).process(1, seed=7))), flush=True)
"""


@pytest.mark.timeout(60)
def test_numpy_is_seeded_when_a_worker_first_imports_it(tmp_path: Path) -> None:
    done = _run_script(tmp_path / "lazy.py", LAZY_NUMPY)
    import json

    first, second = (json.loads(line) for line in done.stdout.splitlines())
    legacy = np.random.RandomState(7)
    expected = [legacy.rand(), legacy.rand()]
    assert first == [[False, expected[0]], [True, expected[1]]]  # not loaded by tinypl
    legacy = np.random.RandomState(7)
    assert [r[1] for r in second] == [legacy.rand(), legacy.rand()]


def failing_init() -> None:
    raise OSError("no database")


@pytest.mark.timeout(60)
def test_an_init_that_fails_in_reused_workers_is_raised_at_the_first_pull() -> None:
    pids = pids_of(run_once(seed=1))
    stage = iter(Pipe(range(10)).map(who).process(2, init=failing_init))
    with pytest.raises(OSError, match="no database") as caught:
        next(stage)
    stage.close()
    assert any("raised by init of process(map), worker" in n for n in caught.value.__notes__)
    assert pids_of(run_once(seed=2)) == pids  # the workers are still good
