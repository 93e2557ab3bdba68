"""Control (issue 13): worker init, worker info and seeds; skipping bad items with a
failure budget; per-item timeouts; replacing dead workers.

Fault tests run under every start method. Every test leaves no worker thread behind
(conftest) and no worker process (``no_children`` below).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tinypl as pl
from tinypl import Pipe
from tinypl._errors import RemoteTraceback

START_METHODS = ("fork", "forkserver", "spawn")


@pytest.fixture(autouse=True)
def no_children() -> Iterator[None]:
    """Every worker process of a test is gone (joined) once the test's runs are closed."""
    yield
    for child in multiprocessing.active_children():
        child.join(5.0)
    assert multiprocessing.active_children() == []


# -- builder checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"init": 3}, TypeError, "init must be callable"),
        ({"timeout": "1"}, TypeError, "timeout must be a number"),
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
    ],
)
def test_thread_options_are_checked_when_built(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        Pipe(range(3)).thread(2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"init": "f"}, TypeError, "init must be callable"),
        ({"timeout": -1.0}, ValueError, "timeout must be > 0"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"restart": 1}, TypeError, "restart must be a bool"),
    ],
)
def test_process_options_are_checked_when_built(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        Pipe(range(3)).map(abs).process(2, **kwargs)


# -- worker info and init: threads ---------------------------------------------------------


def test_worker_info_is_none_outside_a_worker() -> None:
    assert pl.worker_info() is None
    assert list(Pipe(range(2)).map(lambda _: pl.worker_info())) == [None, None]


@pytest.mark.timeout(30)
def test_thread_init_runs_once_per_worker_before_any_item() -> None:
    inits: list[pl.WorkerInfo | None] = []
    lock = threading.Lock()

    def init() -> None:
        with lock:
            inits.append(pl.worker_info())

    def tag(x: int) -> tuple[int, pl.WorkerInfo | None]:
        with lock:
            assert len(inits) == 4  # every worker ran its init before any item
        return x, pl.worker_info()

    out = list(Pipe(range(50)).map(tag).thread(4, init=init))
    assert sorted(x for x, _ in out) == list(range(50))
    assert sorted(i.id for i in inits if i is not None) == [0, 1, 2, 3]
    assert {i.kind for i in inits if i is not None} == {"thread"}
    assert {i.count for i in inits if i is not None} == {4}
    assert {info for _, info in out} <= set(inits)
    seeds = [i.seed for i in inits if i is not None]
    assert sorted(seeds) == [min(seeds) + k for k in range(4)]


def test_thread_seeds_differ_across_runs() -> None:
    pipe = Pipe(range(1)).map(lambda _: pl.worker_info()).thread(1)
    first = next(iter(pipe))
    second = next(iter(pipe))
    assert first is not None and second is not None
    assert first.seed != second.seed
    assert first.id == second.id == 0


@pytest.mark.timeout(30)
def test_thread_init_error_reaches_the_first_pull_with_its_traceback() -> None:
    started = threading.Event()

    def init() -> None:
        if pl.worker_info().id == 1:  # type: ignore[union-attr]
            raise ConnectionError("no database")
        started.set()

    stage = iter(Pipe(range(100)).map(abs).thread(2, init=init))
    with pytest.raises(ConnectionError, match="no database") as caught:
        next(stage)  # no item comes before the error, though worker 0 could serve one
    assert started.is_set()
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "init" in frames
    assert caught.value.__notes__ == [
        f"tinypl: raised by init of thread(2) {stage._pool.name}, worker 1 of 2"
    ]
    assert stage.closed or stage._pool._stopping


def test_module_level_thread_functions_take_init() -> None:
    calls: list[int] = []
    stage = pl.thread.map(range(5), abs, workers=2, init=lambda: calls.append(1))
    assert sorted(stage) == [0, 1, 2, 3, 4]
    assert calls == [1, 1]
    assert sorted(pl.thread.queue(range(3), 1, init=lambda: None)) == [0, 1, 2]


# -- worker info, init and seeds: processes ------------------------------------------------


def _append_info(path: str) -> None:
    info = pl.worker_info()
    assert info is not None
    with open(path, "a") as file:
        file.write(f"{os.getpid()} {info.id} {info.count} {info.kind} {info.seed}\n")


def _draws(x: int) -> tuple[int, int, float, float]:
    info = pl.worker_info()
    assert info is not None
    return info.id, info.seed, random.random(), float(np.random.rand())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_init_runs_once_per_worker(method: str, tmp_path: Path) -> None:
    path = str(tmp_path / "inits")

    def init() -> None:
        _append_info(path)

    pipe = Pipe(range(40)).map(_draws).process(3, start_method=method, init=init, seed=100)
    out = list(pipe)
    assert len(out) == 40
    lines = [line.split() for line in Path(path).read_text().splitlines()]
    assert len(lines) == 3
    assert len({pid for pid, *_ in lines}) == 3
    assert sorted(int(i) for _, i, *_ in lines) == [0, 1, 2]
    assert {(count, kind) for _, _, count, kind, _ in lines} == {("3", "process")}
    assert sorted(int(seed) for *_, seed in lines) == [100, 101, 102]
    assert {(i, seed) for i, seed, _, _ in out} <= {(0, 100), (1, 101), (2, 102)}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_seeds_differ_across_workers_and_runs(method: str) -> None:
    def draws(seed: int | None) -> set[tuple[int, float, float]]:
        pipe = Pipe(range(8)).map(_draws).process(2, start_method=method, seed=seed)
        return {(i, r, n) for i, _, r, n in pipe}

    fixed = draws(7)
    # The same base seed: each worker draws from the sequence seeded with 7 + its id.
    for i, r, n in fixed:
        rng, legacy = random.Random(7 + i), np.random.RandomState(7 + i)
        assert r in [rng.random() for _ in range(8)]
        assert n in [legacy.rand() for _ in range(8)]
    assert {i for i, _, _ in fixed} == {0, 1}
    values = [r for _, r, _ in fixed]
    assert len(set(values)) == len(values)  # no two workers (or items) draw alike
    assert {r for _, r, _ in draws(None)}.isdisjoint({r for _, r, _ in draws(None)})


def _first_draw_of_worker(x: int) -> tuple[int, float, float]:
    info = pl.worker_info()
    assert info is not None
    return info.id, random.random(), float(np.random.rand())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_worker_i_is_seeded_with_seed_plus_i(method: str) -> None:
    pipe = Pipe(range(6)).map(_first_draw_of_worker).process(
        2, start_method=method, seed=41, chunksize=1, init=_hold
    )
    by_worker: dict[int, list[tuple[float, float]]] = {}
    for i, r, n in pipe:  # a worker's results come back in the order it drew them
        by_worker.setdefault(i, []).append((r, n))
    for i, draws in by_worker.items():
        rng, legacy = random.Random(41 + i), np.random.RandomState(41 + i)
        assert draws == [(rng.random(), legacy.rand()) for _ in draws]


def _hold() -> None:
    """An init: gives both workers their start before the first chunk is sent."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_init_error_reaches_the_first_pull(method: str) -> None:
    def init() -> None:
        info = pl.worker_info()
        if info is not None and info.id == 1:
            raise ConnectionError(f"no database in worker {info.id}")

    stage = iter(Pipe(range(100)).map(abs).process(2, start_method=method, init=init))
    with pytest.raises(ConnectionError, match="no database in worker 1") as caught:
        next(stage)
    assert caught.value.__notes__ == ["tinypl: raised by init of process(map), worker 1 of 2"]
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in init" in cause.text
    stage.close()


def test_module_level_process_functions_take_the_new_options() -> None:
    stage = pl.process.map(range(4), _first_draw_of_worker, workers=1, seed=3, init=_hold)
    assert [i for i, _, _ in stage] == [0, 0, 0, 0]


# -- ignore_errors ------------------------------------------------------------------------


class Bad(Exception):
    """The error of a failing item."""


def _fail_on_multiples_of_3(x: int) -> int:
    if x % 3 == 0:
        raise Bad(f"bad item {x}")
    return x


GOOD = [x for x in range(30) if x % 3]


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), ("1", TypeError), (-1, ValueError), (1.0, ValueError), (0.0, ValueError)],
)
def test_budget_is_checked_when_built(value: object, error: type) -> None:
    with pytest.raises(error, match="max_failures"):
        Pipe(range(3)).ignore_errors(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="log must be a bool"):
        Pipe(range(3)).ignore_errors(log=1)  # type: ignore[arg-type]


def _backends() -> list[tuple[str, object]]:
    return [
        ("sync", lambda p: p),
        ("thread", lambda p: p.thread(3)),
        ("process", lambda p: p.process(2)),
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sync", "thread", "process"])
@pytest.mark.parametrize("ordered", [False, True])
def test_failing_items_are_dropped_where_they_fail(backend: str, ordered: bool) -> None:
    pipe = Pipe(range(30)).map(_fail_on_multiples_of_3)
    if backend == "thread":
        pipe = pipe.thread(3)
    elif backend == "process":
        pipe = pipe.process(2)
    pipe = pipe.ignore_errors(log=False)
    if ordered:
        assert list(pipe.order()) == GOOD
    else:
        assert sorted(pipe) == GOOD


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_worker_processes_drop_items_and_report_them(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = Pipe(range(30)).map(_fail_on_multiples_of_3).process(2, start_method=method)
    with caplog.at_level("WARNING", logger="tinypl"):
        assert list(pipe.ignore_errors().order()) == GOOD
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 10
    messages = sorted(r.getMessage() for r in dropped)
    assert (
        "tinypl: ignore_errors dropped item 3 (3) in map(_fail_on_multiples_of_3):"
        " Bad: bad item 3"
    ) in messages
    assert {r.levelname for r in dropped} == {"WARNING"}


def test_each_drop_is_logged_with_stage_position_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = Pipe(["1", "2", "x", "4", "y"]).map(int).ignore_errors()
    with caplog.at_level("WARNING", logger="tinypl"):
        assert list(pipe) == [1, 2, 4]
    assert [r.getMessage() for r in caplog.records] == [
        "tinypl: ignore_errors dropped item 2 ('x') in map(int): ValueError: invalid literal"
        " for int() with base 10: 'x'",
        "tinypl: ignore_errors dropped item 4 ('y') in map(int): ValueError: invalid literal"
        " for int() with base 10: 'y'",
    ]
    assert all(r.name == "tinypl" for r in caplog.records)


def test_log_false_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="tinypl"):
        assert list(Pipe(["x", "1"]).map(int).ignore_errors(log=False)) == [1]
    assert caplog.records == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sync", "thread", "process"])
def test_count_budget_raises_too_many_errors(backend: str) -> None:
    pipe = Pipe(range(30)).map(_fail_on_multiples_of_3)
    if backend == "thread":
        pipe = pipe.thread(2)
    elif backend == "process":
        pipe = pipe.process(2)
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe.ignore_errors(max_failures=3, log=False).order())
    error = caught.value
    assert error.failures == 4
    assert "4 items failed" in str(error)
    assert "max_failures=3" in str(error)
    assert "the first error: Bad: bad item" in str(error)
    assert isinstance(error.__cause__, Bad)


def test_too_many_errors_names_the_first_error_and_chains_the_last() -> None:
    pipe = Pipe(range(10)).map(_fail_on_multiples_of_3).ignore_errors(1, log=False)
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe)
    assert str(caught.value) == (
        "ignore_errors: 2 items failed out of 4 seen, more than max_failures=1 allows;"
        " the first error: Bad: bad item 0"
    )
    assert str(caught.value.__cause__) == "bad item 3"
    assert caught.value.seen == 4


def test_a_zero_budget_raises_at_the_first_failure() -> None:
    stage = iter(Pipe([1, 2, "x", 4]).map(int).ignore_errors(0, log=False))
    assert [next(stage), next(stage)] == [1, 2]
    with pytest.raises(pl.TooManyErrors, match="1 items failed out of 3 seen"):
        next(stage)


def test_share_budget_is_checked_from_100_items_seen() -> None:
    def fail_early(x: int) -> int:
        if x < 50:
            raise Bad(x)
        return x

    # 50 failures in the first 50 items, none later: never checked past 100 items.
    assert list(Pipe(range(200)).map(fail_early).ignore_errors(0.1, log=False)) == list(
        range(50, 200)
    )

    def fail_late(x: int) -> int:
        if x >= 100 and x % 2:
            raise Bad(x)
        return x

    # Failing at 101, 103, ...: at item 131 (132 seen) 16 failures > 0.12 * 132 = 15.84.
    with pytest.raises(pl.TooManyErrors) as caught:
        list(Pipe(range(300)).map(fail_late).ignore_errors(0.12, log=False))
    assert (caught.value.failures, caught.value.seen) == (16, 132)
    assert str(caught.value.__cause__) == "131"


def test_source_errors_still_raise() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise Bad("source broke")

    with pytest.raises(Bad, match="source broke"):
        list(Pipe(source()).map(abs).ignore_errors())


def test_stateful_stage_errors_still_raise() -> None:
    pipe = Pipe(range(4)).insert_marker(pl.Marker("m")).partition(2).map(len)
    with pytest.raises(pl.MarkerNotAllowedError):
        list(pipe.ignore_errors())


def test_errors_below_ignore_errors_still_raise() -> None:
    pipe = Pipe(range(5)).map(abs).ignore_errors().map(_fail_on_multiples_of_3)
    with pytest.raises(Bad, match="bad item 0"):
        list(pipe)


def test_scopes_end_at_the_previous_ignore_errors() -> None:
    budgets = Pipe(range(30)).map(_fail_on_multiples_of_3).ignore_errors(100, log=False)
    doubled = budgets.map(lambda x: x if x % 5 else 1 / 0).ignore_errors(1, log=False)
    # Only map(lambda) is in the second scope: 5, 10, 20, 25 fail there (and 15 failed
    # earlier), so its budget of 1 breaks at its second failure, item 10.
    with pytest.raises(pl.TooManyErrors) as caught:
        list(doubled)
    assert caught.value.failures == 2
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", ["sync", "thread"])
def test_keyboard_interrupt_is_never_swallowed(backend: str) -> None:
    def interrupt(x: int) -> int:
        if x == 3:
            raise KeyboardInterrupt
        return x

    pipe = Pipe(range(10)).map(interrupt)
    if backend == "thread":
        pipe = pipe.thread(2)
    with pytest.raises(KeyboardInterrupt):
        list(pipe.ignore_errors(log=False))


def test_system_exit_is_never_swallowed() -> None:
    def leave(x: int) -> int:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        list(Pipe(range(3)).map(leave).ignore_errors(log=False))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sync", "thread", "process"])
def test_markers_keep_their_places_around_dropped_items(backend: str) -> None:
    marker = pl.Marker("m")
    pipe = Pipe(range(12)).insert_marker(marker, every=4).map(_fail_on_multiples_of_3)
    if backend == "thread":
        pipe = pipe.thread(3)
    elif backend == "process":
        pipe = pipe.process(2)
    pipe = pipe.ignore_errors(log=False).order()
    batches = pipe.partition(10, markers="after", split_on_marker=True)
    assert list(batches) == [[1, 2], [4, 5, 7], [8, 10, 11]]


def test_several_per_item_stages_in_a_scope_drop_where_each_fails() -> None:
    pipe = (
        Pipe(range(20))
        .map(_fail_on_multiples_of_3)
        .thread(2)
        .filter(lambda x: 1 / (x % 5))
        .ignore_errors(log=False)
        .order()
    )
    assert list(pipe) == [x for x in range(20) if x % 3 and x % 5]


def test_module_level_ignore_errors() -> None:
    pipe = Pipe(range(9)).map(_fail_on_multiples_of_3)
    assert list(pl.ignore_errors(pipe, 5, log=False)) == [1, 2, 4, 5, 7, 8]
    with pytest.raises(pl.TooManyErrors):
        list(pl.ignore_errors(pipe, 2, log=False))
    # A live stage runs in its own form already: its errors still raise (documented).
    with pytest.raises(Bad):
        list(pl.ignore_errors(pl.map(range(9), _fail_on_multiples_of_3), log=False))
    assert "ignore_errors" in repr(Pipe(range(1)).ignore_errors())


# -- process timeouts ----------------------------------------------------------------------


def _stuck_on(stuck: int, path: str) -> Callable[[int], int]:
    def run(x: int) -> int:
        if x == stuck:
            Path(path).write_text(repr(time.monotonic()))
            time.sleep(60)  # killed long before
        return x

    return run


def _slow_items(x: int) -> int:
    time.sleep(0.3)
    return x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_a_stuck_item_raises_timeout_error_within_timeout_plus_one_second(
    method: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    run = _stuck_on(5, str(started))
    stage = iter(Pipe(range(20)).map(run).process(2, start_method=method, timeout=1.0))
    with pytest.raises(TimeoutError) as caught:
        list(stage)
    waited = time.monotonic() - float(started.read_text())
    assert 1.0 <= waited <= 2.0
    assert "process(map): an item took more than 1 s" in str(caught.value)
    assert "was killed" in str(caught.value)
    # Numbered for a checkpoint, the unordered stage knows the item's source position.
    assert caught.value.__notes__ == ["tinypl: raised by process(map) on item 5 of the source: 5"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_with_ignore_errors_below_a_timed_out_item_is_dropped_and_the_run_goes_on(
    method: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _stuck_on(5, str(tmp_path / "started"))
    # Chunks of 4: the killed worker held other items, which are sent again.
    pipe = Pipe(range(24)).map(run).process(2, start_method=method, timeout=1.0, chunksize=4)
    with caplog.at_level("WARNING", logger="tinypl"):
        assert list(pipe.ignore_errors().order()) == [x for x in range(24) if x != 5]
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "dropped item 5 (5) in process(map): TimeoutError" in record.getMessage()


@pytest.mark.timeout(60)
def test_a_timed_out_item_counts_against_the_budget(tmp_path: Path) -> None:
    run = _stuck_on(3, str(tmp_path / "started"))
    pipe = Pipe(range(10)).map(run).process(2, timeout=0.5).ignore_errors(0, log=False)
    with pytest.raises(pl.TooManyErrors) as caught:
        list(pipe)
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.timeout(60)
def test_the_timeout_is_per_item_not_per_chunk() -> None:
    pipe = Pipe(range(8)).map(_slow_items).process(1, timeout=0.9, chunksize=4)
    assert list(pipe) == list(range(8))  # each chunk takes 1.2 s, each item 0.3 s


# -- restart ---------------------------------------------------------------------------------


def _kill_once(path: str) -> Callable[[int], int]:
    def run(x: int) -> int:
        if x == 7 and not os.path.exists(path):
            Path(path).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    return run


def _always_kill(x: int) -> int:
    if x == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def _paced(x: int) -> int:
    time.sleep(0.005)
    return x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_restart_replaces_a_worker_killed_mid_stream(method: str) -> None:
    pipe = Pipe(range(300)).map(_paced).process(
        2, start_method=method, restart=True, chunksize=8
    )
    stage = iter(pipe)
    out = [next(stage) for _ in range(20)]
    victim = multiprocessing.active_children()[0]
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
    out += list(stage)
    counts = Counter(out)
    assert sorted(counts) == list(range(300))  # nothing lost
    assert set(counts.values()) == {1}  # nothing doubled


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_restart_sends_the_item_of_a_dead_worker_again(method: str, tmp_path: Path) -> None:
    run = _kill_once(str(tmp_path / "killed"))
    pipe = Pipe(range(40)).map(run).process(2, start_method=method, restart=True, chunksize=4)
    assert list(pipe.order()) == list(range(40))
    assert (tmp_path / "killed").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_an_item_that_kills_two_workers_raises_worker_died_naming_it(method: str) -> None:
    pipe = Pipe(range(40)).map(_always_kill).process(2, start_method=method, restart=True)
    with pytest.raises(pl.WorkerDied) as caught:
        list(pipe)
    message = str(caught.value)
    assert "was killed by signal SIGKILL" in message
    assert message.endswith("had killed a worker before (so it is not sent again): 7")
    assert caught.value.exitcode == -signal.SIGKILL


@pytest.mark.timeout(60)
def test_without_restart_a_dead_worker_still_fails_the_run(tmp_path: Path) -> None:
    run = _kill_once(str(tmp_path / "killed"))
    with pytest.raises(pl.WorkerDied, match="was killed by signal SIGKILL"):
        list(Pipe(range(40)).map(run).process(2))


@pytest.mark.timeout(60)
def test_a_replacement_runs_init_and_keeps_the_worker_id(tmp_path: Path) -> None:
    inits = tmp_path / "inits"
    run = _kill_once(str(tmp_path / "killed"))

    def init() -> None:
        _append_info(str(inits))

    pipe = Pipe(range(40)).map(run).process(2, restart=True, init=init, seed=0, chunksize=4)
    assert sorted(pipe) == list(range(40))
    ids = sorted(int(line.split()[1]) for line in inits.read_text().splitlines())
    assert len(ids) == 3 and set(ids) == {0, 1}  # one replacement, with a former id


# -- thread timeouts -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_stuck_thread_item_raises_timeout_error_and_its_thread_is_abandoned() -> None:
    release, entered = threading.Event(), threading.Event()
    started: list[float] = []

    def run(x: int) -> int:
        if x == 5:
            started.append(time.monotonic())
            entered.set()
            release.wait(20)
        return x

    stage = iter(Pipe(range(20)).map(run).thread(2, timeout=0.5))
    try:
        with pytest.raises(TimeoutError) as caught:
            list(stage)
        assert entered.is_set()
        assert time.monotonic() - started[0] <= 1.5
        message = str(caught.value)
        assert message.startswith("thread(2) tinypl-thread-")
        assert "an item took more than 0.5 s" in message
        assert caught.value.__notes__[0].endswith("on item: 5")
        (stuck,) = [t for t in threading.enumerate() if t.name.endswith("-abandoned")]
        assert stuck.daemon
        began = time.monotonic()
        stage.close()  # does not wait for the abandoned thread
        assert time.monotonic() - began < 0.5
        assert stuck.is_alive()
    finally:
        release.set()


@pytest.mark.timeout(30)
def test_a_thread_timeout_lets_items_under_it_pass() -> None:
    pipe = Pipe(range(40)).map(_paced).thread(3, timeout=0.5).order()
    assert list(pipe) == list(range(40))
    with pl.thread.map(range(3), abs, workers=1, timeout=5.0) as stage:
        assert list(stage) == [0, 1, 2]


def _big_results_stuck_on_9(x: int) -> str:
    if x == 9:
        time.sleep(60)  # killed long before
    return str(x) * 50_000  # larger than a pipe's buffer: results wait to be read


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_replacement_while_large_results_are_in_flight_completes(method: str) -> None:
    pipe = Pipe(range(40)).map(_big_results_stuck_on_9).process(
        2, start_method=method, timeout=1.0, chunksize=4, maxsize=8
    )
    out = list(pipe.ignore_errors(log=False).order())
    assert [len(x) for x in out] == [len(str(x)) * 50_000 for x in range(40) if x != 9]
    assert [x[:2] for x in out] == [(str(x) * 2)[:2] for x in range(40) if x != 9]
