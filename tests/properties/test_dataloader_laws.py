"""Laws of ``pl.dataloader.load`` over random samplers, batch sizes and backends (issue #5).

The *model* is a few lines of plain Python that say which batches each epoch end mode
makes and where the epoch markers go. Every loader (any ``map``/``collate_map`` backend,
and the fluent recipe) must yield the model's batches, split by its epoch markers into
the model's epochs.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinypl as pl
from tinypl import Marker, Pipe

MODES = ("ignore", "keep_last", "drop_last")
END = "END"  # an epoch marker in the model's stream


class Jittery:
    """Sample ``i`` is ``i``; some loads sleep briefly, so workers finish out of order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if index % 3 == 0:
            time.sleep(random.uniform(0, 0.001))
        return index


def model(epochs: list[list[int]], size: int, mode: str) -> list[Any]:
    """Batches (tuples) and epoch markers (``END``), in the order a loader yields them."""
    out: list[Any] = []
    if mode != "ignore":
        for indices in epochs:
            chunks = [tuple(indices[i : i + size]) for i in range(0, len(indices), size)]
            out += [c for c in chunks if mode == "keep_last" or len(c) == size]
            out.append(END)
        return out
    # Batches run across epochs; an epoch's marker waits for the batch that holds its
    # last index (partition(markers="after")).
    batch: list[int] = []
    held = 0
    for indices in epochs:
        for index in indices:
            batch.append(index)
            if len(batch) == size:
                out.append(tuple(batch))
                out += [END] * held
                batch, held = [], 0
        if batch:
            held += 1
        else:
            out.append(END)
    if batch:
        out.append(tuple(batch))
    return out + [END] * held


def split(stream: list[Any]) -> list[list[Any]]:
    """The model's stream as the lists that successive ``until(marker)`` calls yield,
    followed by what comes after the last marker."""
    parts: list[list[Any]] = [[]]
    for item in stream:
        if item == END:
            parts.append([])
        else:
            parts[-1].append(item)
    return parts


def pull_epochs(loader: pl.Stage[Any], epoch: Marker, count: int) -> list[list[Any]]:
    with loader:
        parts = [list(pl.marker.until(loader, epoch)) for _ in range(count)]
        return [*parts, list(loader)]


@st.composite
def samplers(draw: st.DrawFn) -> tuple[int, list[list[int]]]:
    n = draw(st.integers(1, 12))
    epochs = draw(st.lists(st.lists(st.integers(0, n - 1), max_size=14), max_size=4))
    return n, epochs


def thread_map(workers: int, maxsize: int | None) -> Callable[..., Any]:
    return functools.partial(pl.thread.map, workers=workers, maxsize=maxsize)


thread_maps = st.builds(thread_map, st.integers(1, 4), st.one_of(st.none(), st.integers(1, 4)))


# -- the model ----------------------------------------------------------------------------


def test_the_model_matches_the_issue() -> None:
    epochs = [list(range(10))] * 2
    assert model(epochs, 4, "ignore")[:4] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 0, 1), END]
    assert model(epochs, 4, "keep_last")[:4] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9), END]
    assert model(epochs, 4, "drop_last")[:3] == [(0, 1, 2, 3), (4, 5, 6, 7), END]


# -- laws ---------------------------------------------------------------------------------


@given(samplers(), st.integers(1, 6), st.sampled_from(MODES))
def test_the_synchronous_loader_follows_the_model(
    data: tuple[int, list[list[int]]], size: int, mode: str
) -> None:
    n, epochs = data
    epoch = Marker("epoch")
    loader = pl.dataloader.load(
        list(range(n)), size, tuple, sampler=epochs, epoch_end_mode=mode, epoch_marker=epoch
    )
    assert pull_epochs(loader, epoch, len(epochs)) == split(model(epochs, size, mode))


@st.composite
def thread_backends(draw: st.DrawFn) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """``(map, collate_map)``: batches or samples loaded in threads, collated here, in
    the same threads or in threads of their own; or loaded here, collated in threads."""
    loader = draw(thread_maps)
    kind = draw(
        st.sampled_from(["batches", "samples", "samples, collate in threads", "collate in threads"])
    )
    if kind == "batches":
        return loader, None
    if kind == "samples":
        return loader, pl.map
    if kind == "samples, collate in threads":
        return loader, draw(thread_maps)
    return pl.map, loader


@pytest.mark.timeout(120)
@given(samplers(), st.integers(1, 6), st.sampled_from(MODES), thread_backends())
def test_thread_loaders_follow_the_model(
    data: tuple[int, list[list[int]]],
    size: int,
    mode: str,
    backends: tuple[Callable[..., Any], Callable[..., Any] | None],
) -> None:
    n, epochs = data
    epoch = Marker("epoch")
    map_, collate_map = backends
    loader = pl.dataloader.load(
        Jittery(n),
        size,
        tuple,
        map=map_,
        collate_map=collate_map,
        sampler=epochs,
        epoch_end_mode=mode,
        epoch_marker=epoch,
    )
    assert pull_epochs(loader, epoch, len(epochs)) == split(model(epochs, size, mode))


@pytest.mark.timeout(180)
@settings(max_examples=6)
@given(samplers(), st.integers(1, 6), st.sampled_from(MODES), st.booleans())
def test_process_loaders_follow_the_model(
    data: tuple[int, list[list[int]]], size: int, mode: str, per_sample: bool
) -> None:
    n, epochs = data
    epoch = Marker("epoch")
    loader = pl.dataloader.load(
        list(range(n)),
        size,
        tuple,
        map=functools.partial(pl.process.map, workers=2),
        collate_map=pl.map if per_sample else None,
        sampler=epochs,
        epoch_end_mode=mode,
        epoch_marker=epoch,
    )
    assert pull_epochs(loader, epoch, len(epochs)) == split(model(epochs, size, mode))


@pytest.mark.timeout(120)
@given(samplers(), st.integers(1, 6), st.sampled_from(MODES), st.integers(1, 4))
def test_the_fluent_recipe_follows_the_model(
    data: tuple[int, list[list[int]]], size: int, mode: str, workers: int
) -> None:
    n, epochs = data
    epoch = Marker("epoch")
    pipe = (
        Pipe(epochs)
        .insert_marker(epoch)
        .flatten()
        .partition(size, markers="after", split_on_marker=mode != "ignore")
    )
    if mode == "drop_last":
        pipe = pipe.filter(lambda batch: len(batch) == size)
    pipe = pipe.map(pl.dataloader.fetch(Jittery(n), tuple)).thread(workers).order()
    expected = split(model(epochs, size, mode))
    assert pull_epochs(iter(pipe), epoch, len(epochs)) == expected
    assert pull_epochs(iter(pipe), epoch, len(epochs)) == expected  # every run afresh


@given(st.integers(0, 30), st.integers(0, 2**32), st.integers(0, 4))
def test_shuffled_epochs_are_permutations_and_seeds_repeat(n: int, seed: int, count: int) -> None:
    dataset = list(range(n))
    epochs = list(pl.dataloader.sampler.shuffle(dataset, rng=random.Random(seed), epochs=count))
    assert len(epochs) == count
    assert all(sorted(indices) == dataset for indices in epochs)
    assert epochs == list(
        pl.dataloader.sampler.shuffle(dataset, rng=random.Random(seed), epochs=count)
    )
    by_seed = pl.dataloader.sampler.shuffle(dataset, rng=seed, epochs=count)
    assert list(by_seed) == list(by_seed) == epochs


@pytest.mark.timeout(120)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 3), st.integers(0, 2**16))
def test_an_endless_shuffled_loader_yields_every_sample_once_per_epoch(
    n: int, size: int, epochs: int, seed: int
) -> None:
    epoch = Marker("epoch")
    dataset = Jittery(n)
    loader = pl.dataloader.load(
        dataset,
        size,
        map=thread_map(3, None),
        sampler=pl.dataloader.sampler.shuffle(dataset, rng=seed),
        epoch_end_mode="keep_last",
        epoch_marker=epoch,
    )
    with loader:
        for _ in range(epochs):
            batches = list(pl.marker.until(loader, epoch))
            assert sorted(x for batch in batches for x in batch) == list(range(n))
            assert all(len(batch) == size for batch in batches[:-1])
