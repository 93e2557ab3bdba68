"""Control (issue 13): worker init, worker info and seeds; skipping bad items with a
failure budget; per-item timeouts; replacing dead workers.

Fault tests run under every start method. Every test leaves no worker thread behind
(conftest) and no worker process (``no_children`` below).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import traceback
from collections.abc import Iterator
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
    # One item per worker: each item is its worker's first draw.
    pipe = Pipe(range(2)).map(_first_draw_of_worker).process(
        2, start_method=method, seed=41, chunksize=1, init=_hold
    )
    out = list(pipe)
    for i, r, n in out:
        rng = random.Random(41 + i)
        assert r == rng.random()
        assert n == np.random.RandomState(41 + i).rand()


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
