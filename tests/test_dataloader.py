"""``pl.dataloader``: samplers, fetch, ``load`` with every backend, epochs and markers, the
fluent recipe, and the PyTorch bridge (issue #5).

Concurrency is proven with barriers (a barrier of two parties passes only when two loads
run at the same time); sleeps only make loads finish out of order. Tests that need torch
skip only when torch is not installed.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinypl as pl
from tinypl import Marker, Pipe
from tinypl._explain import explain
from tinypl._runtime._stage import node_of

ROOT = Path(__file__).resolve().parent.parent
sampler = pl.dataloader.sampler

# -- datasets -----------------------------------------------------------------------------


class Numbers:
    """Sample ``i`` is ``i``; loads take a random, short time, so workers finish out of
    order. Module level, so worker processes can unpickle it."""

    def __init__(self, n: int, jitter: float = 0.002) -> None:
        self.n = n
        self.jitter = jitter

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if self.jitter:
            time.sleep(random.uniform(0, self.jitter))
        return index


class Growing:
    """A dataset whose length grows by one at every ``len()``."""

    def __init__(self) -> None:
        self.n = 2

    def __len__(self) -> int:
        self.n += 1
        return self.n - 1

    def __getitem__(self, index: int) -> int:
        return index


class Failing(Numbers):
    def __getitem__(self, index: int) -> int:
        if index == 5:
            raise KeyError(f"sample {index} is corrupt")
        return index


class Rendezvous:
    """The first two loads wait for each other at a barrier: the run gets past them only
    when two loads run at the same time. Later loads pass freely, since which of them
    overlap depends on scheduling (one batch's loads run one after the other). Records
    the threads that ran the loads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.barrier = threading.Barrier(2, timeout=10)
        self.threads: set[int] = set()
        self._lock = threading.Lock()
        self._waiting = 2

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        self.threads.add(threading.get_ident())
        with self._lock:
            meet = self._waiting > 0
            self._waiting -= meet
        if meet:
            self.barrier.wait()
        return index


def pid_of(samples: list[int]) -> int:
    import os

    return os.getpid()


def batches_of(indices: Iterable[int], size: int) -> list[list[int]]:
    items = list(indices)
    return [items[i : i + size] for i in range(0, len(items), size)]


THREADS = functools.partial(pl.thread.map, workers=3)
PROCESSES = functools.partial(pl.process.map, workers=2)


def custom_runner(stage: Any, fn: Callable[[Any], Any]) -> Any:
    """A ``map`` that is not one of tinypl's functions: load falls back on
    pl.order.save/load around it."""
    return pl.thread.map(stage, fn, workers=3, maxsize=2)


# -- samplers -----------------------------------------------------------------------------


def test_sequential_yields_one_range_per_epoch() -> None:
    assert list(sampler.sequential("abc", epochs=2)) == [range(3), range(3)]
    assert list(sampler.sequential("abc", epochs=0)) == []
    forever = sampler.sequential([1, 2])
    assert list(islice(forever, 5)) == [range(2)] * 5


def test_sequential_reads_the_length_at_every_epoch() -> None:
    assert list(sampler.sequential(Growing(), epochs=3)) == [range(2), range(3), range(4)]


def test_samplers_are_reiterable() -> None:
    epochs = sampler.sequential("ab", epochs=2)
    assert list(epochs) == list(epochs) == [range(2), range(2)]
    seeded = sampler.shuffle(range(20), rng=3, epochs=3)
    assert list(seeded) == list(seeded)


def test_shuffle_permutes_every_epoch() -> None:
    epochs = list(sampler.shuffle(range(50), rng=random.Random(0), epochs=4))
    assert len(epochs) == 4
    for indices in epochs:
        assert sorted(indices) == list(range(50))
    assert len({tuple(indices) for indices in epochs}) == 4  # a new order every epoch
    assert epochs[0] != list(range(50))


def test_shuffle_with_a_seeded_random_is_reproducible() -> None:
    first = list(sampler.shuffle(range(30), rng=random.Random(42), epochs=3))
    again = list(sampler.shuffle(range(30), rng=random.Random(42), epochs=3))
    other = list(sampler.shuffle(range(30), rng=random.Random(43), epochs=3))
    assert first == again
    assert first != other


def test_shuffle_with_a_shared_random_continues_its_sequence() -> None:
    epochs = sampler.shuffle(range(30), rng=random.Random(42), epochs=1)
    assert list(epochs) != list(epochs)


def test_shuffle_accepts_the_random_module_and_numpy_generators() -> None:
    for rng in (random, np.random.default_rng(0), np.int64(5)):
        (indices,) = list(sampler.shuffle(range(10), rng=rng, epochs=1))
        assert sorted(indices) == list(range(10))
    numpy_a = list(sampler.shuffle(range(10), rng=np.random.default_rng(1), epochs=2))
    numpy_b = list(sampler.shuffle(range(10), rng=np.random.default_rng(1), epochs=2))
    assert numpy_a == numpy_b


def test_sampler_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match=r"sampler\.sequential: dataset must have __len__"):
        sampler.sequential(5)
    with pytest.raises(ValueError, match=r"sampler\.shuffle: epochs must be >= 0"):
        sampler.shuffle(range(3), epochs=-1)
    with pytest.raises(TypeError, match=r"rng must be an int seed or have a shuffle method"):
        sampler.shuffle(range(3), rng="seed")
    with pytest.raises(TypeError, match=r"rng must be an int seed"):
        sampler.shuffle(range(3), rng=True)
    with pytest.raises(TypeError, match="namespace"):
        sampler()


# -- fetch --------------------------------------------------------------------------------


def test_fetch_loads_and_collates() -> None:
    assert pl.dataloader.fetch("abcdef")([1, 3]) == ["b", "d"]
    assert pl.dataloader.fetch("abcdef", "".join)([5, 0]) == "fa"
    stacked = pl.dataloader.fetch(np.arange(10) * 2, np.stack)(np.array([1, 2]))
    assert stacked.tolist() == [2, 4]


def test_fetch_is_picklable_and_readable() -> None:
    load_batch = pl.dataloader.fetch(Numbers(10, jitter=0), sum)
    assert pickle.loads(pickle.dumps(load_batch))([1, 2, 3]) == 6
    assert repr(load_batch) == "fetch(Numbers, sum)"
    assert "fetch(Numbers, sum)" in repr(Pipe([[1]]).map(load_batch))


def test_fetch_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="fetch: dataset must have __len__ and __getitem__"):
        pl.dataloader.fetch(iter([1]))
    with pytest.raises(TypeError, match="fetch: collate_fn must be callable"):
        pl.dataloader.fetch([1], collate_fn=3)


# -- load: epochs -------------------------------------------------------------------------


def take(stage: pl.Stage[Any], n: int) -> list[Any]:
    with stage:
        return list(islice(stage, n))


def test_the_three_epoch_end_modes() -> None:
    ds = list(range(10))
    assert take(pl.dataloader.load(ds, 4), 5) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 0, 1],
        [2, 3, 4, 5],
        [6, 7, 8, 9],
    ]
    assert take(pl.dataloader.load(ds, 4, epoch_end_mode="keep_last"), 5) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]
    assert take(pl.dataloader.load(ds, 4, epoch_end_mode="drop_last"), 5) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [0, 1, 2, 3],
    ]


def test_the_default_sampler_is_sequential_and_endless() -> None:
    batches = take(pl.dataloader.load(list(range(3)), 2), 30)
    assert [x for batch in batches for x in batch] == [0, 1, 2] * 20


def test_a_finite_sampler_ends_the_loader() -> None:
    ds = list(range(5))
    with pl.dataloader.load(ds, 2, sampler=sampler.sequential(ds, epochs=2)) as loader:
        assert list(loader) == [[0, 1], [2, 3], [4, 0], [1, 2], [3, 4]]
    epochs = [[4, 3], [], [0]]
    with pl.dataloader.load(ds, 2, sampler=epochs, epoch_end_mode="keep_last") as loader:
        assert list(loader) == [[4, 3], [0]]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["ignore", "keep_last", "drop_last"])
def test_until_the_epoch_marker_iterates_one_epoch(mode: str) -> None:
    epoch = Marker("epoch")
    ds = list(range(10))
    with pl.dataloader.load(ds, 4, map=THREADS, epoch_end_mode=mode, epoch_marker=epoch) as loader:
        epochs = [list(pl.marker.until(loader, epoch)) for _ in range(3)]
    if mode == "ignore":
        assert epochs == [
            [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]],
            [[2, 3, 4, 5], [6, 7, 8, 9]],
            [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]],
        ]
    elif mode == "keep_last":
        assert epochs == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]] * 3
    else:
        assert epochs == [[[0, 1, 2, 3], [4, 5, 6, 7]]] * 3


def test_without_an_epoch_marker_until_any_marker_finds_the_epochs() -> None:
    ds = list(range(5))
    with pl.dataloader.load(ds, 2, epoch_end_mode="keep_last") as loader:
        assert list(pl.marker.until(loader)) == [[0, 1], [2, 3], [4]]
        assert list(Pipe(loader).until(None)) == [[0, 1], [2, 3], [4]]


def test_marker_on_counts_epochs() -> None:
    epoch, ends = Marker("epoch"), []
    ds = list(range(6))
    loader = pl.dataloader.load(ds, 4, sampler=sampler.sequential(ds, epochs=3), epoch_marker=epoch)
    batches = list(pl.marker.on(loader, lambda: ends.append(len(ends)), marker=epoch))
    assert ends == [0, 1, 2]
    assert [x for batch in batches for x in batch] == list(range(6)) * 3


def test_shuffled_epochs_hold_every_sample_once() -> None:
    epoch = Marker("epoch")
    ds = list(range(23))
    shuffled = sampler.shuffle(ds, rng=random.Random(7))
    with pl.dataloader.load(
        ds, 5, sampler=shuffled, epoch_end_mode="keep_last", epoch_marker=epoch
    ) as loader:
        seen = []
        for _ in range(4):
            samples = [x for batch in pl.marker.until(loader, epoch) for x in batch]
            assert sorted(samples) == ds
            seen.append(samples)
    assert len({tuple(s) for s in seen}) == 4


# -- load: backends -----------------------------------------------------------------------

MAPS = {
    "pl.map": pl.map,
    "threads": THREADS,
    "processes": PROCESSES,
    "nested partial": functools.partial(functools.partial(pl.thread.map), workers=2),
    "custom": custom_runner,
}
COLLATE_MAPS = {
    "None": None,
    "pl.map": pl.map,
    "threads": functools.partial(pl.thread.map, workers=2, maxsize=3),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("collate_map", list(COLLATE_MAPS))
@pytest.mark.parametrize("map_", list(MAPS))
@pytest.mark.parametrize("mode", ["ignore", "keep_last", "drop_last"])
def test_every_backend_yields_the_batches_in_sampler_order(
    map_: str, collate_map: str, mode: str
) -> None:
    ds = Numbers(13)
    epochs = list(sampler.shuffle(ds, rng=random.Random(map_ + collate_map + mode), epochs=3))
    epoch = Marker("epoch")
    expected = take_epochs(
        pl.dataloader.load(ds, 4, tuple, sampler=epochs, epoch_end_mode=mode, epoch_marker=epoch),
        epoch,
    )
    with pl.dataloader.load(
        ds,
        4,
        tuple,
        map=MAPS[map_],
        collate_map=COLLATE_MAPS[collate_map],
        sampler=epochs,
        epoch_end_mode=mode,
        epoch_marker=epoch,
    ) as loader:
        assert take_epochs(loader, epoch) == expected
    flat = [x for batches in expected for batch in batches for x in batch]
    if mode != "drop_last":
        assert flat == [i for indices in epochs for i in indices]
    for batches in expected:
        assert all(type(batch) is tuple for batch in batches)


def take_epochs(loader: pl.Stage[Any], epoch: Marker) -> list[list[Any]]:
    """The batches of each epoch, then whatever follows the last marker."""
    with loader:
        epochs = [list(pl.marker.until(loader, epoch)) for _ in range(3)]
        return [*epochs, list(loader)]


@pytest.mark.timeout(30)
def test_process_workers_load_the_batches() -> None:
    import os

    ds = list(range(8))
    with pl.dataloader.load(
        ds, 2, pid_of, map=PROCESSES, sampler=sampler.sequential(ds, epochs=1)
    ) as loader:
        pids = list(loader)
    assert len(pids) == 4
    assert os.getpid() not in pids


@pytest.mark.timeout(30)
def test_threads_load_batches_concurrently() -> None:
    ds = Rendezvous(8)
    loader = pl.dataloader.load(ds, 2, map=THREADS, sampler=sampler.sequential(ds, epochs=1))
    with loader:
        assert list(loader) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert len(ds.threads) >= 2


@pytest.mark.timeout(30)
def test_threads_load_single_samples_concurrently_with_a_collate_map() -> None:
    # One batch of 2: only per-sample loading can pass the barrier.
    ds = Rendezvous(2)
    loader = pl.dataloader.load(
        ds, 2, sum, map=THREADS, collate_map=pl.map, sampler=sampler.sequential(ds, epochs=2)
    )
    with loader:
        assert list(loader) == [1, 1]
    assert len(ds.threads) >= 2


@pytest.mark.timeout(30)
def test_collate_map_runs_collate_in_its_own_workers() -> None:
    threads: set[str] = set()

    def collate(batch: list[int]) -> int:
        threads.add(threading.current_thread().name)
        return sum(batch)

    ds = list(range(12))
    loader = pl.dataloader.load(
        ds,
        3,
        collate,
        map=pl.map,
        collate_map=functools.partial(pl.thread.map, workers=2),
        sampler=sampler.sequential(ds, epochs=1),
    )
    with loader:
        assert list(loader) == [3, 12, 21, 30]
    assert threads and all(name.startswith("tinypl-") for name in threads)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("map_", ["pl.map", "threads", "processes"])
def test_a_failing_sample_raises_at_the_consumer(map_: str) -> None:
    ds = Failing(10, jitter=0)
    received: list[list[int]] = []
    with (
        pl.dataloader.load(ds, 2, map=MAPS[map_]) as loader,
        pytest.raises(KeyError, match="sample 5 is corrupt"),
    ):
        # The loader is endless: only the error ends this loop.
        for batch in loader:
            received.append(batch)
    if map_ == "pl.map":
        assert received == [[0, 1], [2, 3]]
    else:
        # Workers may fail before the consumer gets the batches ahead of the failed one,
        # but no batch after it comes out.
        assert received == [[0, 1], [2, 3]][: len(received)]


@pytest.mark.timeout(30)
def test_closing_the_loader_stops_its_workers() -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("tinypl-")}
    loader = pl.dataloader.load(Numbers(100), 4, map=THREADS)
    assert next(loader) == [0, 1, 2, 3]
    assert {t for t in threading.enumerate() if t.name.startswith("tinypl-")} - before
    loader.close()
    assert loader.closed
    assert not {t for t in threading.enumerate() if t.name.startswith("tinypl-")} - before


# -- load: arguments ----------------------------------------------------------------------


def test_load_checks_its_arguments() -> None:
    ds = list(range(4))
    with pytest.raises(TypeError, match=r"dataloader\.load: dataset must have __len__"):
        pl.dataloader.load(iter(ds), 2)
    with pytest.raises(ValueError, match=r"dataloader\.load: batchsize must be >= 1"):
        pl.dataloader.load(ds, 0)
    with pytest.raises(TypeError, match=r"dataloader\.load: batchsize must be an int"):
        pl.dataloader.load(ds, 2.0)
    with pytest.raises(TypeError, match=r"dataloader\.load: collate_fn must be callable"):
        pl.dataloader.load(ds, 2, collate_fn="stack")
    with pytest.raises(TypeError, match=r"dataloader\.load: map must be callable"):
        pl.dataloader.load(ds, 2, map=4)
    with pytest.raises(TypeError, match=r"dataloader\.load: collate_map must be callable"):
        pl.dataloader.load(ds, 2, collate_map=4)
    with pytest.raises(ValueError, match=r"dataloader\.load: epoch_end_mode must be one of"):
        pl.dataloader.load(ds, 2, epoch_end_mode="drop")
    with pytest.raises(TypeError, match=r"dataloader\.load: epoch_marker must be a tinypl\.Marker"):
        pl.dataloader.load(ds, 2, epoch_marker="epoch")
    with pytest.raises(TypeError, match=r"dataloader\.load: cannot call thread_map: .*workers"):
        pl.dataloader.load(ds, 2, map=functools.partial(pl.thread.map))
    with pytest.raises(TypeError, match=r"dataloader\.load: cannot call process_map: .*speed"):
        pl.dataloader.load(ds, 2, map=functools.partial(pl.process.map, speed=2))
    with pytest.raises(ValueError, match="thread: workers must be >= 1"):
        pl.dataloader.load(ds, 2, map=functools.partial(pl.thread.map, workers=0))


def test_load_accepts_the_options_of_the_module_level_functions() -> None:
    ds = list(range(6))
    loader = pl.dataloader.load(
        ds,
        3,
        map=functools.partial(pl.thread.map, workers=2, maxsize=1, on_worker_error="forward"),
        sampler=sampler.sequential(ds, epochs=1),
    )
    with loader:
        assert list(loader) == [[0, 1, 2], [3, 4, 5]]
    loader = pl.dataloader.load(
        ds,
        3,
        map=functools.partial(
            pl.process.map, workers=1, multiprocessing_context="spawn", force_single_thread=False
        ),
        sampler=sampler.sequential(ds, epochs=1),
    )
    with loader:
        assert list(loader) == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(
    ("function", "method", "aliases"),
    [
        (pl.thread.map, Pipe.thread, ()),
        (pl.process.map, Pipe.process, ("multiprocessing_context", "force_single_thread")),
    ],
)
def test_every_option_of_the_module_level_function_reaches_the_pipe_method(
    function: Callable[..., Any], method: Callable[..., Any], aliases: tuple[str, ...]
) -> None:
    # load passes the options of pl.thread.map / pl.process.map on by name.
    options = list(inspect.signature(function).parameters)[2:]
    accepted = set(inspect.signature(method).parameters) - {"self"}
    assert set(options) - set(aliases) == accepted


@pytest.mark.timeout(30)
def test_process_options_pass_through_load(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    original = Pipe.process

    def process(self: Pipe[Any], *args: Any, **kwargs: Any) -> Pipe[Any]:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipe, "process", process)
    ds = list(range(40))
    loader = pl.dataloader.load(
        ds,
        4,
        sum,
        map=functools.partial(
            pl.process.map, workers=2, maxsize=2, chunksize=3, multiprocessing_context="spawn"
        ),
        sampler=sampler.sequential(ds, epochs=1),
    )
    with loader:
        assert list(loader) == [sum(range(i, i + 4)) for i in range(0, 40, 4)]
    assert calls == [
        {
            "workers": 2,
            "maxsize": 2,
            "on_worker_error": "raise",
            "start_method": "spawn",
            "limit_threads": True,
            "chunksize": 3,
            # Control options (issue 13), passed through at their defaults.
            "timeout": None,
            "init": None,
            "seed": None,
            "restart": False,
        }
    ]


# -- the fluent recipe --------------------------------------------------------------------


def recipe(ds: Any, epochs: Any, epoch: Marker, backend: Callable[[Pipe[Any]], Pipe[Any]]) -> Any:
    return backend(
        Pipe(epochs)
        .insert_marker(epoch)
        .flatten()
        .partition(4, markers="after", split_on_marker=True)
        .map(pl.dataloader.fetch(ds, tuple))
    ).order()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_load_builds_the_stages_of_the_recipe(backend: str) -> None:
    ds = Numbers(10)
    epochs = sampler.sequential(ds, epochs=2)
    epoch = Marker("epoch")
    workers = {"threads": 3, "processes": 2}[backend]
    pipe = recipe(
        ds,
        epochs,
        epoch,
        (lambda p: p.thread(workers)) if backend == "threads" else (lambda p: p.process(workers)),
    )
    runner = THREADS if backend == "threads" else PROCESSES
    loader = pl.dataloader.load(
        ds, 4, tuple, map=runner, sampler=epochs, epoch_end_mode="keep_last", epoch_marker=epoch
    )
    with loader, iter(pipe) as stage:
        # The same physical plan, stage for stage ...
        built, expected = node_of(loader), node_of(stage)
        assert built is not None and expected is not None
        assert explain(built, optimized=False) == explain(expected, optimized=False)
        # ... and the same batches, in the same places relative to the epoch markers.
        assert take_epochs(loader, epoch) == take_epochs(stage, epoch)


@pytest.mark.timeout(30)
def test_the_recipe_restarts_at_every_iteration() -> None:
    ds = Numbers(10)
    epoch = Marker("epoch")
    pipe = recipe(ds, sampler.shuffle(ds, rng=5, epochs=2), epoch, lambda p: p.thread(2))
    first, second = list(pipe), list(pipe)
    assert first == second
    assert len(first) == 6


# -- PyTorch ------------------------------------------------------------------------------


def test_importing_tinypl_does_not_import_torch() -> None:
    code = (
        "import sys, tinypl, tinypl.dataloader\n"
        "tinypl.dataloader.load([1, 2], 1).close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(60)
def test_default_collate_makes_tensors_in_threads_and_processes() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate

    ds = [{"x": np.full(3, i, dtype=np.float32), "y": i} for i in range(10)]
    for runner in (THREADS, PROCESSES):
        loader = pl.dataloader.load(
            ds,
            4,
            default_collate,
            map=runner,
            sampler=sampler.sequential(ds, epochs=1),
            epoch_end_mode="keep_last",
        )
        with loader:
            batches = list(loader)
        assert [batch["y"].tolist() for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert isinstance(batches[0]["x"], torch.Tensor)
        assert batches[0]["x"].dtype == torch.float32
        assert batches[2]["x"].shape == (2, 3)
        assert batches[1]["x"][:, 0].tolist() == [4.0, 5.0, 6.0, 7.0]


@pytest.mark.timeout(60)
def test_a_pipe_is_an_iterable_dataset_for_a_torch_dataloader() -> None:
    torch = pytest.importorskip("torch")

    ds = Numbers(10)
    pipe = recipe(ds, sampler.shuffle(ds, rng=1, epochs=1), Marker(), lambda p: p.thread(2))
    dataset = pl.dataloader.as_torch_dataset(pipe.map(torch.tensor))
    assert isinstance(dataset, torch.utils.data.IterableDataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    first = [batch.tolist() for batch in loader]
    second = [batch.tolist() for batch in loader]
    assert first == second  # every epoch of the DataLoader runs the Pipe afresh
    assert sorted(x for batch in first for x in batch) == list(range(10))
    assert [len(batch) for batch in first] == [4, 4, 2]
    assert "as_torch_dataset(Pipe(" in repr(dataset)


@pytest.mark.timeout(60)
def test_a_live_loader_is_shared_by_the_torch_dataset() -> None:
    pytest.importorskip("torch")
    import torch.utils.data

    epoch = Marker("epoch")
    ds = list(range(6))
    with pl.dataloader.load(ds, 3, epoch_end_mode="keep_last", epoch_marker=epoch) as loader:
        dataset = pl.dataloader.as_torch_dataset(pl.Pipe(loader).until(epoch))
        torch_loader = torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=list)
        assert list(torch_loader) == [[0, 1, 2], [3, 4, 5]]
        assert list(torch_loader) == [[0, 1, 2], [3, 4, 5]]  # the next epoch of the loader
        assert next(loader) == [0, 1, 2]


@pytest.mark.timeout(60)
def test_the_torch_dataset_refuses_dataloader_workers() -> None:
    pytest.importorskip("torch")
    import torch.utils.data

    dataset = pl.dataloader.as_torch_dataset(Pipe(range(4)))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=1, multiprocessing_context="fork"
    )
    with pytest.raises(RuntimeError, match="runs its own workers"):
        list(loader)


# -- documentation ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_example_runs_and_prints_its_throughput() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dataloader.py"), "--images", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "samples/s" in result.stdout
