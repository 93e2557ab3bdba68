"""Process stages: where stages run, markers, start methods, chunking, faults, shutdown
(issue #4).

Worker functions prove where they ran by returning ``os.getpid()``. Timing bounds that are
the point of a test (death noticed within 1 s, shutdown within 2 s) are measured exactly;
every other bound is generous because the machine is small and shared.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import inspect
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadwatch import tinypl_threads

import tinypl as pl
from tinypl import Marker, Pipe
from tinypl._errors import RemoteTraceback
from tinypl._runtime._workerset import default_start_method

START_METHODS = ("fork", "forkserver", "spawn")
BIG = 32_768  # float64 elements: 256 KiB, above the size that goes through shared memory
SHM = Path("/dev/shm")
REPO = Path(pl.__file__).resolve().parents[1]

# -- observation helpers ------------------------------------------------------------------


def pid_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: it does not exist, or it is a zombie that is not
    our child (an orphan whose new parent does not reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _ours(pid: int) -> bool:
    """Whether ``pid`` is this process or one of its descendants."""
    me = os.getpid()
    for _ in range(16):
        if pid == me:
            return True
        if pid <= 1:
            return False
        pid = _parent_of(pid)
    return False


def _segment_owner(name: str) -> int:
    """The pid recorded in a tinypl shared-memory segment header, or 0 if unknown."""
    try:
        with open(SHM / name, "rb") as file:
            head = file.read(64)
    except OSError:
        return 0
    if head[:8] == b"TPLRING1":
        return int.from_bytes(head[40:48], "little")
    if head[:8] == b"TPLPOOL1":
        return int.from_bytes(head[8:16], "little")
    return 0


def shm_listing() -> set[str]:
    return set(os.listdir(SHM))


def _holders(name: str) -> set[int]:
    """The live processes that have ``/dev/shm/<name>`` mapped (POSIX semaphores and
    shared memory are mapped by every process that opened them)."""
    path = str(SHM / name)
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            maps = Path(f"/proc/{entry}/maps").read_text()
        except OSError:
            continue
        if path in maps:
            pids.add(int(entry))
    return pids


def _owners(name: str) -> set[int]:
    owner = _segment_owner(name)
    if not owner:
        return _holders(name)
    return set() if pid_gone(owner) else {owner}


def new_shm(before: set[str]) -> set[str]:
    """Entries created since ``before`` that still exist, except those that belong to
    live processes that are not ours (other test runs share /dev/shm)."""
    out = set()
    for name in shm_listing() - before:
        owners = _owners(name)
        if owners and not any(_ours(pid) for pid in owners):
            continue  # someone else's
        out.add(name)
    return out


def children_pids() -> list[int]:
    return [p.pid for p in multiprocessing.active_children() if p.pid is not None]


def wait_until(condition: Callable[[], bool], limit: float) -> bool:
    """Poll ``condition`` (an observation, not a synchronisation) for up to ``limit`` s."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def all_stopped(pids: list[int], threads_before: set[threading.Thread]) -> Callable[[], bool]:
    def check() -> bool:
        return (
            not multiprocessing.active_children()
            and not (tinypl_threads() - threads_before)
            and all(pid_gone(pid) for pid in pids)
        )

    return check


def assert_reaped(pids: list[int]) -> None:
    """No zombie: every former worker is gone and none is left for us to wait for."""
    assert multiprocessing.active_children() == []
    for pid in pids:
        assert pid_gone(pid), f"worker {pid} still exists"
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def run_script(path: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        return subprocess.run(
            [sys.executable, str(path), *args],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
            cwd=path.parent,
            env=env,
        )
    except subprocess.TimeoutExpired as error:  # pragma: no cover - only on a hang
        pytest.fail(f"the script hung for {timeout} s:\n{error.stdout}\n{error.stderr}")


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """After each test: no worker process, no new tinypl thread, no new /dev/shm entry."""
    threads = tinypl_threads()
    shm = shm_listing()
    yield
    gc.collect()
    stopped = wait_until(
        lambda: not multiprocessing.active_children() and not (tinypl_threads() - threads),
        3.0,
    )
    children = multiprocessing.active_children()
    leaked_threads = sorted(t.name for t in tinypl_threads() - threads)
    for process in children:  # do not let one failure cascade into the next tests
        process.kill()
        process.join(5)
    leaked_shm: set[str] = set()
    deadline = time.monotonic() + 2.0
    while (leaked_shm := new_shm(shm)) and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    assert stopped, f"left behind: processes {children}, threads {leaked_threads}"
    assert not leaked_shm, f"left behind in /dev/shm: {sorted(leaked_shm)}"


# -- worker functions (module level: importable by every start method) --------------------


def whoami(x: Any) -> tuple[Any, int]:
    return x, os.getpid()


def parent_and_pid(x: Any) -> tuple[int, int]:
    return os.getppid(), os.getpid()


def is_fork_child(x: Any) -> bool:
    """True in a child forked from this process: it still has the probe module."""
    return "_tinypl_fork_probe" in sys.modules


def never_a_marker(x: Any) -> Any:
    assert not isinstance(x, Marker), f"a marker entered a worker: {x!r}"
    return x


class PidIterable:
    """An item whose elements are the pid of the process that iterates it (flatten)."""

    def __iter__(self) -> Iterator[int]:
        yield os.getpid()


class CustomError(Exception):
    pass


class LockError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class HoldsLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def explode_on_seven(x: int) -> int:
    if x == 7:
        raise CustomError(f"boom at {x}")
    return x


def raise_lock_error(x: int) -> int:
    if x == 3:
        raise LockError("holds a lock")
    return x


def return_a_lock(x: int) -> Any:
    return threading.Lock() if x == 2 else x


def _refuse_to_load() -> None:
    raise RuntimeError("this result cannot be rebuilt")


class LoadsBadly:
    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


def return_loads_badly(x: int) -> Any:
    return LoadsBadly() if x == 2 else x


def pool_info(x: Any) -> tuple[str | None, list[tuple[str, int]]]:
    import numpy  # noqa: F401  (loads the BLAS pool under spawn and forkserver)
    from threadpoolctl import threadpool_info

    pools = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
    return os.environ.get("OMP_NUM_THREADS"), pools


class PickleCounter:
    """A callable that appends ``p`` to a file whenever it is pickled, ``u`` whenever it
    is unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, x: int) -> int:
        return x + 1

    def __reduce__(self) -> Any:
        with open(self.path, "a") as file:
            file.write("p")
        return (_rebuild_counter, (self.path,))


def _rebuild_counter(path: str) -> PickleCounter:
    with open(path, "a") as file:
        file.write("u")
    return PickleCounter(path)


def dying(how: str, trigger: int, record: str) -> Callable[[int], Any]:
    def fn(x: int) -> Any:
        if x == trigger:
            Path(record).write_text(f"{os.getpid()} {time.monotonic()!r}")
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif how == "segfault":
                ctypes.string_at(0)
            else:
                os._exit(3)
        time.sleep(0.001)
        return np.full(BIG, x)  # results in shared memory: the dead worker's must go too

    return fn


# -- where stages run ----------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_chain_runs_in_worker_processes(method: str) -> None:
    parent = os.getpid()

    def not_in_parent(x: Any) -> bool:
        assert os.getpid() != parent, "a shipped stage ran in the parent"
        return True

    pipe = (
        Pipe(range(40))
        .map(lambda x: time.sleep(0.002) or x)
        .filter(not_in_parent)
        .each(not_in_parent)
        .map(lambda x: PidIterable())
        .flatten()
        .map(lambda pid: (pid, os.getpid()))
        .process(2, start_method=method)
    )
    out = list(pipe)
    assert len(out) == 40
    assert all(flattened == mapped for flattened, mapped in out)  # same process
    pids = {pid for pid, _ in out}
    assert parent not in pids
    assert len(pids) == 2  # both workers got chunks


@pytest.mark.timeout(20)
def test_source_and_other_stages_stay_in_parent() -> None:
    parent = os.getpid()
    mark = Marker("m")
    source_pids: list[int] = []
    before_pids: list[int] = []
    on_pids: list[int] = []
    after_pids: list[int] = []

    def generate() -> Iterator[int]:  # a generator cannot even be pickled
        for i in range(30):
            source_pids.append(os.getpid())
            yield i

    def before(x: int) -> int:
        before_pids.append(os.getpid())
        return x

    pipe = (
        Pipe(generate())
        .map(before)
        .insert_marker(mark, every=5)
        .on(mark, lambda: on_pids.append(os.getpid()))
        .map(whoami)  # only this stage stands directly before process()
        .process(2)
        .on(mark, lambda: on_pids.append(os.getpid()))
        .map(lambda item: after_pids.append(os.getpid()) or item)
        .order()
    )
    out = list(pipe)
    assert [x for x, _ in out] == list(range(30))
    assert parent not in {pid for _, pid in out}
    assert set(source_pids) == set(before_pids) == set(on_pids) == set(after_pids) == {parent}
    assert len(source_pids) == len(before_pids) == len(after_pids) == 30
    assert len(on_pids) == 2 * 6


@pytest.mark.timeout(20)
def test_thread_stage_above_stays_in_parent_threads() -> None:
    parent = os.getpid()
    pipe = (
        Pipe(range(50))
        .map(lambda x: (x, os.getpid(), threading.current_thread().name))
        .thread(2)
        .map(lambda item: (*item, os.getpid()))
        .process(2)
        .order()
    )
    out = list(pipe)
    assert [x for x, *_ in out] == list(range(50))
    assert {pid for _, pid, _, _ in out} == {parent}
    assert all(name.startswith("tinypl-") for _, _, name, _ in out)
    assert parent not in {worker for *_, worker in out}


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "build",
    [
        lambda: Pipe(range(3)).process(2),
        lambda: Pipe(range(3)).map(abs).thread(2).process(2),
        lambda: Pipe(range(3)).map(abs).process(1).process(1),
        lambda: Pipe(range(3)).partition(2).process(1),
        lambda: Pipe(range(3)).insert_marker(Marker("m")).process(1),
        lambda: Pipe(range(3)).map(abs).on(None, print).process(1),
        lambda: Pipe(range(3)).map(abs).ratelimit(10, 1.0).process(1),
        lambda: Pipe(range(3)).map(abs).order().process(1),
    ],
    ids=["source", "thread", "process", "partition", "insert_marker", "on", "ratelimit", "order"],
)
def test_process_without_per_item_stage_above_fails_at_build(build: Callable[[], Any]) -> None:
    threads = threading.active_count()
    with pytest.raises(ValueError, match="process"):
        build()
    assert multiprocessing.active_children() == []
    assert threading.active_count() == threads


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", START_METHODS)
def test_chain_is_shipped_once_per_worker(method: str, tmp_path: Path) -> None:
    counts = tmp_path / "pickles"
    counts.write_text("")
    workers = 2
    fn = PickleCounter(str(counts))
    out = list(
        Pipe(range(1000)).map(fn).filter(lambda x: True).process(workers, start_method=method)
    )
    assert sorted(out) == list(range(1, 1001))
    record = counts.read_text()
    assert 1 <= record.count("p") <= workers + 1, record
    assert 1 <= record.count("u") <= workers, record


# -- markers -------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("ordered", [False, True])
def test_markers_never_enter_a_worker_and_pass_once(ordered: bool) -> None:
    mark = Marker("m")
    calls: list[int] = []
    pipe = (
        Pipe(range(100))
        .insert_marker(mark, every=7)
        .map(never_a_marker)
        .filter(lambda x: x % 3)
        .map(lambda x: [x, x])
        .flatten()
        .process(2)
    )
    if ordered:
        pipe = pipe.order()
    out = list(pipe.on(mark, lambda: calls.append(1)))
    sync_calls: list[int] = []
    sync = list(
        Pipe(range(100))
        .insert_marker(mark, every=7)
        .filter(lambda x: x % 3)
        .map(lambda x: [x, x])
        .flatten()
        .on(mark, lambda: sync_calls.append(1))
    )
    assert len(calls) == len(sync_calls) == 14
    if ordered:
        assert out == sync
    else:
        assert Counter(out) == Counter(sync)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_markers_keep_their_exact_position_with_order(method: str) -> None:
    mark, other = Marker("m"), Marker("other")

    def stream(workers: int | None) -> list[Any]:
        events: list[Any] = []
        pipe = (
            Pipe(range(300))
            .insert_marker(mark, every=13)
            .insert_marker(other, every=40, after=False)
            .map(lambda x: time.sleep(0.0002 * (x % 7)) or x)
            .filter(lambda x: x % 5)
            .map(lambda x: range(x % 3))
            .flatten()
        )
        if workers is not None:
            pipe = pipe.process(workers, start_method=method).order()
        pipe = pipe.on(mark, lambda: events.append("M")).on(other, lambda: events.append("O"))
        for x in pipe:
            events.append(x)
        return events

    expected = stream(None)
    assert expected.count("M") == 23 and expected.count("O") == 8
    assert stream(2) == expected
    assert stream(1) == expected


@pytest.mark.timeout(20)
def test_until_cuts_the_same_segments_as_the_sync_run() -> None:
    def segments(concurrent: bool) -> list[list[int]]:
        stage, marker = pl.marker.insert_periodic(range(47), n=5)
        if concurrent:
            order = pl.order.save(stage, maxsize=16)
            stage = pl.process.map(order, lambda x: time.sleep(0.001 * (x % 3)) or x * x, workers=2)
            stage = pl.order.load(stage, order)
        else:
            stage = pl.map(stage, lambda x: x * x)
        with stage:
            out = []
            while segment := list(pl.marker.until(stage, marker)):
                out.append(segment)
        return out

    expected = segments(False)
    assert len(expected) == 10 and expected[0] == [0, 1, 4, 9, 16]
    assert segments(True) == expected


# -- start methods -------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_lambdas_and_closures_work_under_every_start_method(method: str) -> None:
    offset = 1000
    table = {i: i * i for i in range(10)}

    class Local:  # defined in a function: travels by value
        def __init__(self, value: int) -> None:
            self.value = value

    def helper(x: int) -> int:
        return table[x % 10] + offset

    def make_adder(k: int) -> Callable[[int], int]:
        return lambda x: x + k

    pipe = (
        Pipe(range(100))
        .map(helper)
        .filter(lambda x: x % 2 == 0)
        .map(make_adder(7))
        .map(Local)
        .map(lambda obj: obj.value)
        .process(2, start_method=method)
        .order()
    )
    expected = [table[x % 10] + offset + 7 for x in range(100) if (table[x % 10] + offset) % 2 == 0]
    assert list(pipe) == expected


@pytest.mark.timeout(20)
def test_default_start_method_is_forkserver_and_safe_with_threads() -> None:
    assert default_start_method() == "forkserver"
    running = iter(Pipe(itertools.count()).map(lambda x: x).thread(2))
    try:
        assert next(running) >= 0
        assert tinypl_threads(), "a thread stage should be running in the parent"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = list(Pipe(range(20)).map(parent_and_pid).process(2))
    finally:
        running.close()
    forks = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert forks == [], [str(w.message) for w in forks]
    # Workers were forked from the fork server, not from this multi-threaded process.
    assert {ppid for ppid, _ in out} != {os.getpid()}
    assert os.getpid() not in {ppid for ppid, _ in out}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ("fork", "fork"),
        ("spawn", "spawn"),
        ("forkserver", "forkserver"),
        (multiprocessing.get_context("spawn"), "spawn"),
        (multiprocessing.get_context("fork"), "fork"),
    ],
    ids=["fork", "spawn", "forkserver", "spawn-context", "fork-context"],
)
def test_multiprocessing_context_chooses_the_start_method(
    context: Any, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "_tinypl_fork_probe", type(sys)("_tinypl_fork_probe"))
    out = list(
        pl.process.map(range(10), parent_and_pid, workers=2, multiprocessing_context=context)
    )
    forked = list(pl.process.map(range(4), is_fork_child, multiprocessing_context=context))
    parents = {ppid for ppid, _ in out}
    if expected == "forkserver":
        assert os.getpid() not in parents
    else:
        assert parents == {os.getpid()}
    assert set(forked) == {expected == "fork"}


# -- chunking ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_small_items_are_chunked() -> None:
    n = 100_000
    start = time.monotonic()
    out = list(Pipe(range(n)).map(whoami).process(2))
    elapsed = time.monotonic() - start
    assert sorted(x for x, _ in out) == list(range(n))
    pids = [pid for _, pid in out]
    assert os.getpid() not in pids
    # Results of one chunk arrive together: few switches from one worker to the other.
    switches = sum(a != b for a, b in itertools.pairwise(pids))
    assert switches < n / 50, switches
    # One round trip per item takes tens of microseconds at least: chunks make it fast.
    assert elapsed < 5.0, elapsed


@pytest.mark.timeout(30)
def test_order_is_restored_across_chunks() -> None:
    def build(pipe: Pipe[int]) -> Pipe[int]:
        return (
            pipe.map(lambda x: x * 3 + x % 5)
            .filter(lambda x: x % 7 != 1)
            .map(lambda x: [x] * (x % 3))
            .flatten()
            .map(lambda x: x + 1)
        )

    n = 50_000
    expected = list(build(Pipe(range(n))))
    assert len(expected) > n / 2
    out = list(build(Pipe(range(n))).process(2).order())
    assert out == expected


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", START_METHODS)
def test_large_array_results_arrive_intact_and_are_released(method: str) -> None:
    shm = shm_listing()
    pipe = Pipe(range(40)).map(lambda i: (i, np.arange(BIG) * i)).process(2, start_method=method)
    results = sorted(pipe, key=lambda item: item[0])
    assert [i for i, _ in results] == list(range(40))
    for i, array in results:
        assert array.shape == (BIG,)
        np.testing.assert_array_equal(array, np.arange(BIG) * i)
    del results, array
    gc.collect()
    assert wait_until(lambda: not new_shm(shm), 2.0), sorted(new_shm(shm))


@pytest.mark.timeout(30)
def test_items_are_not_held_back_while_the_source_waits() -> None:
    """A source that waits (a socket, a queue) must not keep items it already yielded
    from the consumer: the feeder sends the chunk it holds before it waits again."""
    release = threading.Event()

    def source() -> Iterator[int]:
        yield from range(10)
        release.wait(8.0)  # the producer waits until the consumer has seen everything
        yield from range(10, 20)

    stage = iter(Pipe(source()).map(lambda x: x * 10).process(2))
    try:
        start = time.monotonic()
        first = [next(stage) for _ in range(10)]
        elapsed = time.monotonic() - start
        release.set()
        rest = list(stage)
    finally:
        release.set()
        stage.close()
    assert sorted(first) == [x * 10 for x in range(10)]
    assert sorted(rest) == [x * 10 for x in range(10, 20)]
    assert elapsed < 4.0, f"items yielded by the source reached the consumer after {elapsed:.1f} s"


# -- thread pools --------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", START_METHODS)
def test_workers_limit_thread_pools_by_default(method: str) -> None:
    results = list(pl.Pipe(range(4)).map(pool_info).process(2, start_method=method))
    for env, pools in results:
        assert env == "1"
        assert pools, "numpy should have loaded a BLAS pool"
        assert {n for _, n in pools} == {1}, pools


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", START_METHODS)
def test_limit_threads_false_leaves_thread_pools_alone(method: str) -> None:
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    parent_env = os.environ.get("OMP_NUM_THREADS")
    parent_pools = {p["internal_api"]: p["num_threads"] for p in threadpool_info()}
    stages = [
        Pipe(range(2)).map(pool_info).process(1, start_method=method, limit_threads=False),
        pl.process.map(range(2), pool_info, start_method=method, force_single_thread=False),
    ]
    for stage in stages:
        for env, pools in stage:
            assert env == parent_env
            for api, threads in pools:
                if api in parent_pools:
                    assert threads == parent_pools[api], (api, threads, parent_pools)


# -- the module-level API ------------------------------------------------------------------


@pytest.mark.timeout(5)
def test_module_level_signatures() -> None:
    parameters = inspect.signature(pl.process.map).parameters
    assert list(parameters)[:4] == ["pipe", "fn", "workers", "maxsize"]
    defaults = {name: p.default for name, p in parameters.items()}
    assert defaults["workers"] == 1
    assert defaults["maxsize"] is None
    assert defaults["start_method"] is None
    assert defaults["multiprocessing_context"] is None
    assert defaults["on_worker_error"] == "raise"
    assert list(inspect.signature(pl.process.each).parameters)[:4] == list(parameters)[:4]
    assert issubclass(pl.process.WorkerException, pl.WorkerError)
    assert issubclass(pl.WorkerDied, pl.WorkerError)


@pytest.mark.timeout(20)
def test_module_level_map_each_and_worker_exception() -> None:
    assert sorted(pl.process.map(range(10), lambda x: x * x, workers=2, maxsize=3)) == [
        x * x for x in range(10)
    ]
    parent = os.getpid()

    def check(x: int) -> int:
        assert os.getpid() != parent
        return -1  # ignored: each passes the item on

    assert sorted(pl.process.each(range(10), check, workers=2)) == list(range(10))
    with pytest.raises(pl.process.WorkerException) as info:
        list(pl.process.map(range(10), explode_on_seven, on_worker_error="forward"))
    assert isinstance(info.value, pl.WorkerError)
    assert isinstance(info.value.__cause__, CustomError)
    with pytest.raises(TypeError):
        pl.process.map(range(3), abs, start_method="spawn", multiprocessing_context="fork")


@pytest.mark.timeout(30)
def test_seed_readme_mixing_threads_and_processes() -> None:
    pipe = range(100)
    pipe = pl.thread.map(pipe, lambda x: 1 + x, workers=4, maxsize=8)
    pipe = pl.process.map(pipe, lambda x: 2 * x, workers=4, maxsize=8)
    assert sorted(pipe) == [2 * (1 + x) for x in range(100)]

    pipe = range(100)
    pipe = pl.map(pipe, lambda x: 2 * x)
    pipe = pl.process.map(pipe, lambda x: 2 * x, workers=4, maxsize=8)
    assert sorted(pipe) == [4 * x for x in range(100)]


# -- faults: exceptions --------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_worker_exception_keeps_its_type_and_remote_traceback(method: str) -> None:
    with pytest.raises(CustomError, match="boom at 7") as info:
        list(Pipe(range(20)).map(explode_on_seven).process(2, start_method=method))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "explode_on_seven" in cause.text
    assert "CustomError" in cause.text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_failed_stage_stops_at_once_and_is_freed_when_dropped(method: str) -> None:
    """The usual ``stage = iter(pipe); try: for x in stage ...`` keeps the stage in a
    frame of the error's traceback. Once the caller drops stage and error, both must be
    freed (and with them, under forkserver and spawn, named semaphores in /dev/shm)."""
    shm = shm_listing()
    running: list[list[int]] = []

    def consume() -> weakref.ref[Any]:
        stage = iter(Pipe(range(20)).map(explode_on_seven).process(2, start_method=method))
        try:
            for _ in stage:
                pass
        except CustomError:
            running.append(children_pids())  # the error stopped the workers already
        return weakref.ref(stage)

    ref = consume()
    gc.collect()
    assert running == [[]]
    assert ref() is None, "the failed stage is never freed"
    assert not new_shm(shm)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_unpicklable_exception_becomes_worker_error(method: str) -> None:
    with pytest.raises(pl.WorkerError) as info:
        list(Pipe(range(10)).map(raise_lock_error).process(1, start_method=method))
    error = info.value
    assert not isinstance(error, LockError)
    text = str(error)
    assert "LockError" in text
    assert "holds a lock" in text
    assert "raise_lock_error" in text  # the traceback text
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "raise_lock_error" in error.__cause__.text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_exception_of_a_local_class_keeps_its_type(method: str) -> None:
    """A class the worker only knows by value (cloudpickle) comes back as the very class
    the consumer catches."""

    class LocalError(Exception):
        pass

    def fail(x: int) -> int:
        raise LocalError("only the worker knows this class")

    with pytest.raises(LocalError, match="only the worker knows this class") as info:
        list(Pipe(range(3)).map(fail).process(1, start_method=method))
    assert type(info.value) is LocalError


def test_exception_that_cannot_travel_becomes_worker_error() -> None:
    class Unpicklable(Exception):
        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

    def fail(x: int) -> int:
        raise Unpicklable("stays in the worker")

    with pytest.raises(pl.WorkerError, match="Unpicklable") as info:
        list(Pipe(range(3)).map(fail).process(1, start_method="spawn"))
    assert "stays in the worker" in str(info.value)


# -- faults: dying workers -----------------------------------------------------------------

DEATHS = {
    "sigkill": (-signal.SIGKILL, "SIGKILL"),
    "segfault": (-signal.SIGSEGV, "SIGSEGV"),
    "exit": (3, "code 3"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("how", list(DEATHS))
def test_killed_worker_raises_worker_died_within_a_second(
    how: str, method: str, tmp_path: Path
) -> None:
    record = tmp_path / "death"
    with pytest.raises(pl.WorkerDied) as info:
        for _ in Pipe(range(200)).map(dying(how, 50, str(record))).process(2, start_method=method):
            pass
    raised = time.monotonic()
    pid_text, died_text = record.read_text().split()
    pid, died = int(pid_text), float(died_text)
    assert raised - died < 1.0, f"the death was noticed after {raised - died:.3f} s"
    exitcode, words = DEATHS[how]
    error = info.value
    assert isinstance(error, pl.WorkerError)
    assert error.pid == pid
    assert error.exitcode == exitcode
    assert str(pid) in str(error)
    assert words in str(error)


# -- faults: what cannot be pickled --------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_unpicklable_item_is_a_clear_type_error(method: str) -> None:
    items = [1, 2, HoldsLock(), 4]
    with pytest.raises(TypeError) as info:
        list(Pipe(items).map(lambda x: x).process(2, start_method=method))
    text = str(info.value)
    assert "process(map)" in text
    assert "HoldsLock" in text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_unpicklable_result_is_a_clear_type_error(method: str) -> None:
    with pytest.raises(TypeError) as info:
        list(Pipe(range(5)).map(return_a_lock).process(2, start_method=method))
    text = str(info.value)
    assert "process(map)" in text
    assert "lock" in text


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_item_that_cannot_be_unpickled_in_a_worker_is_a_clear_error(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items of a class from a module that only the parent has: they pickle (by
    reference), but a worker cannot rebuild them. The consumer must learn why."""
    module = type(sys)("only_in_the_parent")
    exec("class Point:\n    def __init__(self, x):\n        self.x = x\n", module.__dict__)
    module.Point.__module__ = "only_in_the_parent"
    monkeypatch.setitem(sys.modules, "only_in_the_parent", module)
    items = [module.Point(1), module.Point(2)]
    with pytest.raises(Exception) as info:
        list(Pipe(items).map(lambda p: p.x).process(1, start_method=method))
    text = str(info.value)
    assert "process(map)" in text
    assert "only_in_the_parent" in text, (
        f"the cause is missing: {type(info.value).__name__}: {text}"
    )


@pytest.mark.timeout(20)
def test_result_that_cannot_be_rebuilt_fails_cleanly() -> None:
    """A result that pickles in the worker but cannot be unpickled in the parent."""
    stage = iter(Pipe(range(5)).map(return_loads_badly).process(1, start_method="fork"))
    try:
        with pytest.raises(Exception, match="cannot be rebuilt") as info:
            list(stage)
        assert "process(map)" in str(info.value), "the error does not name the stage"
        # The error stops the stage: nothing is left running while the stage lives ...
        assert wait_until(lambda: not multiprocessing.active_children(), 2.0)
        # ... and pulling again fails or ends at once, it does not wait forever.
        outcome: list[str] = []

        def pull_again() -> None:
            try:
                outcome.append(f"item {next(stage)}")
            except StopIteration:
                outcome.append("end")
            except Exception as error:
                outcome.append(type(error).__name__)

        puller = threading.Thread(target=pull_again, name="test-second-pull", daemon=True)
        puller.start()
        puller.join(3.0)
        assert outcome, "the second pull hangs"
    finally:
        stage.close()


# -- shutdown ------------------------------------------------------------------------------


def busy_pipe(method: str, stuck: bool) -> Pipe[Any]:
    """Workers that are always busy; their results are large enough to travel through
    shared memory, so some are in flight in /dev/shm whenever the stage is stopped."""

    def work(x: int) -> Any:
        time.sleep(60 if stuck else 0.005)
        return os.getpid(), np.full(BIG, x)

    return Pipe(itertools.count()).map(work).process(2, start_method=method)


def _both_workers() -> list[int]:
    """The pids of the two workers, once both run."""
    assert wait_until(lambda: len(multiprocessing.active_children()) == 2, 10.0)
    return children_pids()


def _assert_stopped_within(start: float, pids: list[int], threads: set[threading.Thread]) -> None:
    stopped = wait_until(all_stopped(pids, threads), 5.0)
    elapsed = time.monotonic() - start
    assert stopped, "workers or feeder still running 5 s after the stop"
    # The bound is the point: GRACE_PERIOD (1 s) for a busy worker, then terminate.
    assert elapsed < 2.0, f"stopping took {elapsed:.3f} s"
    assert_reaped(pids)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_break_stops_everything(method: str) -> None:
    threads = tinypl_threads()
    pids: list[int] = []
    for i, _ in enumerate(busy_pipe(method, stuck=False)):
        if i == 0:
            pids = _both_workers()
        if i == 20:
            start = time.monotonic()
            break
    _assert_stopped_within(start, pids, threads)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("stuck", [False, True], ids=["flowing", "stuck"])
@pytest.mark.parametrize("method", START_METHODS)
def test_close_stops_everything(method: str, stuck: bool) -> None:
    threads = tinypl_threads()
    stage = iter(busy_pipe(method, stuck))
    if stuck:  # a reader waits for a result that never comes
        puller = threading.Thread(target=lambda: list(stage), name="test-puller")
        puller.start()
    else:
        next(stage)
    pids = _both_workers()
    start = time.monotonic()
    stage.close()
    if stuck:
        puller.join(5)
        assert not puller.is_alive()
    _assert_stopped_within(start, pids, threads)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", START_METHODS)
def test_del_and_gc_stop_everything(method: str) -> None:
    threads = tinypl_threads()
    stage = iter(busy_pipe(method, stuck=False))
    next(stage)
    pids = _both_workers()
    start = time.monotonic()
    del stage
    gc.collect()
    _assert_stopped_within(start, pids, threads)


def _blocked_waiting(thread_id: int) -> bool:
    """Whether the thread is blocked waiting for results (not running test code)."""
    frame = sys._current_frames().get(thread_id)
    return frame is not None and frame.f_code.co_name in ("select", "poll", "wait", "_step")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("stuck", [False, True], ids=["flowing", "stuck"])
@pytest.mark.parametrize("method", START_METHODS)
def test_keyboard_interrupt_in_consumer_stops_everything(method: str, stuck: bool) -> None:
    threads = tinypl_threads()
    main = threading.get_ident()
    pids: list[int] = []
    sent: list[float] = []

    def interrupt() -> None:
        if not wait_until(lambda: len(multiprocessing.active_children()) == 2, 10.0):
            return
        pids.extend(children_pids())
        time.sleep(0.05)
        wait_until(lambda: _blocked_waiting(main), 5.0)
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    def work(x: int) -> Any:
        time.sleep(60 if stuck else 0.02)
        return np.full(BIG, x)

    stage = iter(Pipe(itertools.count()).map(work).process(2, start_method=method))
    helper = threading.Thread(target=interrupt, name="test-interrupter")
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in stage:
                pass
    finally:
        helper.join(15)
    assert sent, "the interrupt was never sent"
    assert len(pids) == 2
    _assert_stopped_within(sent[0], pids, threads)


PARENT_DIES = """
import itertools, json, multiprocessing, os, signal, sys, time
import numpy as np
import tinypl as pl

def work(x):
    time.sleep(0.01)
    return os.getpid(), np.full(32_768, x)  # through shared memory

if __name__ == "__main__":
    method = sys.argv[1]
    stage = iter(pl.Pipe(itertools.count()).map(work).process(2, start_method=method))
    seen = set()
    for pid, _ in stage:
        seen.add(pid)
        if len(seen) == 2:
            break
    pids = [p.pid for p in multiprocessing.active_children()]
    server = None
    if method == "forkserver":
        from multiprocessing import forkserver
        server = forkserver._forkserver._forkserver_pid
    print(json.dumps({"workers": pids, "server": server}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def start_script(path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start a script in its own session (so that everything it starts can be found and
    killed as one group); its output goes to files, which orphans cannot hold open."""
    out, err = path.with_suffix(".out"), path.with_suffix(".err")
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(path), *args],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            cwd=path.parent,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    return process, out, err


def first_line(process: subprocess.Popen[bytes], out: Path, err: Path, limit: float) -> Any:
    if not wait_until(lambda: out.read_text().endswith("\n") or process.poll() is not None, limit):
        pytest.fail(f"the script printed nothing in {limit} s:\n{err.read_text()}")
    text = out.read_text()
    assert text, err.read_text()
    return json.loads(text.splitlines()[0])


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a script started by ``start_script`` (its own group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("method", START_METHODS)
def test_workers_exit_when_the_parent_dies(method: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_DIES)
    shm = shm_listing()
    process, out, err = start_script(script, method)
    try:
        info = first_line(process, out, err, 20.0)
        assert process.wait(10) == -signal.SIGKILL, err.read_text()
        pids = info["workers"]
        assert len(pids) == 2, info
        if info["server"] is not None:
            pids.append(info["server"])
        exited = wait_until(lambda: all(pid_gone(pid) for pid in pids), 5.0)
        alive = [pid for pid in pids if not pid_gone(pid)]
        assert exited, f"processes {alive} outlived their parent by 5 s"
        # Results in flight to the dead parent must not stay in /dev/shm.
        assert wait_until(lambda: not new_shm(shm), 2.0), sorted(new_shm(shm))
    finally:
        kill_group(process)


INTERRUPTED_GROUP = """
import itertools, json, multiprocessing, os, sys, time
import tinypl as pl

def work(x):
    time.sleep(0.005)
    return os.getpid()

if __name__ == "__main__":
    stage = iter(pl.Pipe(itertools.count()).map(work).process(2, start_method=sys.argv[1]))
    next(stage)
    while len(multiprocessing.active_children()) < 2:
        time.sleep(0.01)
    pids = [p.pid for p in multiprocessing.active_children()]
    try:
        # Printed inside the try: a Ctrl-C sent as soon as it is read lands in it.
        print(json.dumps(pids), flush=True)
        for _ in stage:
            pass
    except KeyboardInterrupt:
        interrupted = time.monotonic()
        while multiprocessing.active_children():
            time.sleep(0.005)
        print(json.dumps({"stopped_after": time.monotonic() - interrupted}), flush=True)
"""


@pytest.mark.timeout(40)
@pytest.mark.parametrize("method", START_METHODS)
def test_ctrl_c_to_the_process_group(method: str, tmp_path: Path) -> None:
    """A real Ctrl-C reaches every process of the group: workers ignore it, the consumer
    gets KeyboardInterrupt and stops them."""
    script = tmp_path / "group.py"
    script.write_text(INTERRUPTED_GROUP)
    process, out, err = start_script(script, method)
    try:
        pids = first_line(process, out, err, 20.0)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(20) == 0, err.read_text()
    finally:
        kill_group(process)
    stopped = json.loads(out.read_text().splitlines()[-1])["stopped_after"]
    assert stopped < 2.0, stopped
    assert all(pid_gone(pid) for pid in pids)


# -- unguarded scripts ---------------------------------------------------------------------

UNGUARDED = """
import sys
import tinypl as pl

with open(sys.argv[1], "a") as log:
    log.write("ran\\n")

print(sorted(pl.process.map(range(20), lambda x: x * 2, workers=2, start_method=sys.argv[2])))
print(sorted(pl.Pipe(range(5)).map(lambda x: -x).process(2, start_method=sys.argv[2])))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_unguarded_script_runs_once(method: str, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    log = tmp_path / "log.txt"
    result = run_script(script, str(log), method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str([2 * x for x in range(20)]),
        str(sorted(-x for x in range(5))),
    ]
    assert log.read_text().splitlines() == ["ran"]
