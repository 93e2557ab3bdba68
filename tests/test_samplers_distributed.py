"""Samplers for data-parallel training: ``rank=`` / ``world_size=`` / ``drop_last=`` of
``pl.dataloader.sampler.sequential`` and ``.shuffle`` (issue #11).

Each rank gets the strided share of the epoch that torch's ``DistributedSampler`` gives
it (the index lists are compared with torch's where its order is deterministic), the
shares of the ranks are disjoint and of equal length, and the shuffle is the same
permutation on every rank, also when the ranks are separate processes. Tests that need
torch skip only when torch is not installed.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from itertools import chain, islice
from typing import Any

import numpy as np
import pytest

import tinypl as pl
from tinypl import Marker, Pipe

sampler = pl.dataloader.sampler


class Growing:
    """A dataset whose length grows by one at every ``len()``."""

    def __init__(self) -> None:
        self.n = 2

    def __len__(self) -> int:
        self.n += 1
        return self.n - 1

    def __getitem__(self, index: int) -> int:
        return index


class Huge:
    """A dataset far too long to list its indices."""

    def __len__(self) -> int:
        return 10**12

    def __getitem__(self, index: int) -> int:
        return index


def shares(make: Any, world_size: int, **options: Any) -> list[list[int]]:
    """The first epoch of every rank's sampler, ``make(rank=r, world_size=...)``."""
    return [
        list(next(iter(make(rank=rank, world_size=world_size, **options))))
        for rank in range(world_size)
    ]


def flat(parts: list[list[int]]) -> list[int]:
    return list(chain.from_iterable(parts))


def interleave(parts: list[list[int]]) -> list[int]:
    """The epoch the strided shares were cut from: ``parts[r][k]`` is position
    ``k * len(parts) + r``."""
    return [part[k] for k in range(len(parts[0])) for part in parts]


# -- torch's DistributedSampler ----------------------------------------------------------

SIZES = [0, 1, 2, 3, 7, 10, 16, 17, 31]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("n", SIZES)
def test_sequential_shares_are_those_of_torchs_distributed_sampler(
    n: int, world_size: int, drop_last: bool
) -> None:
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler

    for rank in range(world_size):
        expected = list(
            DistributedSampler(
                range(n), num_replicas=world_size, rank=rank, shuffle=False, drop_last=drop_last
            )
        )
        ours = sampler.sequential(
            range(n), epochs=2, rank=rank, world_size=world_size, drop_last=drop_last
        )
        assert [list(epoch) for epoch in ours] == [expected, expected]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("n", "world_size"), [(10, 3), (17, 4), (2, 5), (16, 4), (0, 2)])
def test_shuffled_shares_have_the_length_and_coverage_of_torchs(
    n: int, world_size: int, drop_last: bool
) -> None:
    # torch draws another permutation (its own generator), so the index *lists* differ;
    # what each rank holds, how long it is and what the ranks cover together agree.
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler

    def torch_share(rank: int) -> list[int]:
        torch_sampler = DistributedSampler(
            range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=0, drop_last=drop_last
        )
        return list(torch_sampler)

    ours = shares(
        lambda **ranks: sampler.shuffle(range(n), rng=0, drop_last=drop_last, **ranks), world_size
    )
    theirs = [torch_share(rank) for rank in range(world_size)]
    assert [len(share) for share in ours] == [len(share) for share in theirs]
    ours_count, theirs_count = Counter(flat(ours)), Counter(flat(theirs))
    assert sum(ours_count.values()) == sum(theirs_count.values())
    assert sorted(ours_count.values(), reverse=True) == sorted(theirs_count.values(), reverse=True)
    if not drop_last:
        assert set(ours_count) == set(theirs_count) == set(range(n))


# -- sequential --------------------------------------------------------------------------


def test_sequential_pads_from_the_start_and_strides() -> None:
    assert shares(lambda **ranks: sampler.sequential(range(10), **ranks), 4) == [
        [0, 4, 8],
        [1, 5, 9],
        [2, 6, 0],
        [3, 7, 1],
    ]
    # Fewer indices than ranks: the indices repeat more than once.
    assert shares(lambda **ranks: sampler.sequential(range(2), **ranks), 5) == [
        [0],
        [1],
        [0],
        [1],
        [0],
    ]


def test_drop_last_drops_the_tail() -> None:
    parts = shares(lambda **ranks: sampler.sequential(range(10), drop_last=True, **ranks), 4)
    assert parts == [[0, 4], [1, 5], [2, 6], [3, 7]]
    empty = shares(lambda **ranks: sampler.sequential(range(3), drop_last=True, **ranks), 4)
    assert empty == [[], [], [], []]


def test_a_share_without_padding_is_a_lazy_range() -> None:
    (share,) = islice(sampler.sequential(Huge(), rank=3, world_size=8), 1)
    assert share == range(3, 10**12, 8)
    padded = next(iter(sampler.sequential(range(5), rank=1, world_size=2)))
    assert padded == [1, 3, 0]


def test_the_length_is_read_at_every_epoch() -> None:
    epochs = sampler.sequential(Growing(), epochs=3, rank=1, world_size=2)
    assert [list(epoch) for epoch in epochs] == [[1], [1, 0], [1, 3]]


def test_a_single_rank_yields_what_it_did_without_ranks() -> None:
    assert list(sampler.sequential("abc", epochs=2, rank=0, world_size=1)) == [range(3)] * 2
    alone = list(sampler.shuffle(range(20), rng=5, epochs=3, rank=0, world_size=1))
    assert alone == list(sampler.shuffle(range(20), rng=5, epochs=3))


# -- shuffle -----------------------------------------------------------------------------


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_rank_cuts_the_same_permutation(drop_last: bool) -> None:
    n, world = 23, 4
    whole = list(sampler.shuffle(range(n), rng=11, epochs=3))
    per_rank = [
        list(
            sampler.shuffle(
                range(n), rng=11, epochs=3, rank=r, world_size=world, drop_last=drop_last
            )
        )
        for r in range(world)
    ]
    for epoch, permutation in enumerate(whole):
        padded = permutation[: n - n % world] if drop_last else permutation + permutation[:1]
        assert interleave([epochs[epoch] for epochs in per_rank]) == padded
    assert len({tuple(p) for p in whole}) == 3  # each epoch its own order


def test_the_shares_of_an_epoch_are_disjoint_and_cover_it() -> None:
    parts = shares(lambda **ranks: sampler.shuffle(range(100), rng=3, **ranks), 7)
    assert {len(part) for part in parts} == {15}
    counts = Counter(flat(parts))
    assert set(counts) == set(range(100))
    assert sum(counts.values()) == 105  # 5 indices repeated as padding
    assert sorted(counts.values()) == [1] * 95 + [2] * 5


def test_an_int_seed_repeats_the_epochs_at_every_iteration() -> None:
    rank1 = sampler.shuffle(range(30), rng=8, epochs=3, rank=1, world_size=3)
    assert list(rank1) == list(rank1)
    other_seed = sampler.shuffle(range(30), rng=9, epochs=3, rank=1, world_size=3)
    assert list(rank1) != list(other_seed)


def test_generators_seeded_alike_agree_on_every_rank() -> None:
    for make in (random.Random, np.random.default_rng):
        parts = shares(
            lambda make=make, **ranks: sampler.shuffle(range(12), rng=make(4), **ranks), 3
        )
        assert sorted(flat(parts)) == list(range(12))


def _rank_epochs(rank: int) -> list[list[int]]:
    """One rank's first two epochs, computed in a worker process of its own."""
    import tinypl as pl

    epochs = pl.dataloader.sampler.shuffle(range(50), rng=2024, epochs=2, rank=rank, world_size=4)
    return [list(epoch) for epoch in epochs]


@pytest.mark.timeout(60)
def test_ranks_in_separate_processes_partition_every_epoch() -> None:
    context = multiprocessing.get_context("spawn")  # nothing inherited from this process
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        per_rank = list(pool.map(_rank_epochs, range(4)))
    here = list(sampler.shuffle(range(50), rng=2024, epochs=2))  # one rank, this process
    for epoch in range(2):
        parts = [epochs[epoch] for epochs in per_rank]
        assert {len(part) for part in parts} == {13}
        padded = interleave(parts)
        assert padded == here[epoch] + here[epoch][:2]
    assert here[0] != here[1]


# -- with the loader ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_every_rank_loads_as_many_batches_and_together_every_sample() -> None:
    samples = list(range(100, 123))  # 23 samples on 4 ranks: 6 each, 1 repeated
    epoch = Marker("epoch")
    per_rank = []
    for rank in range(4):
        ranked = sampler.shuffle(samples, rng=0, epochs=2, rank=rank, world_size=4)
        with pl.dataloader.load(
            samples, 4, sampler=ranked, epoch_end_mode="keep_last", epoch_marker=epoch
        ) as loader:
            per_rank.append([list(pl.marker.until(loader, epoch)) for _ in range(2)])
    for e in range(2):
        batches = [epochs[e] for epochs in per_rank]
        assert [[len(batch) for batch in rank] for rank in batches] == [[4, 2]] * 4
        assert set().union(*(flat(rank) for rank in batches)) == set(samples)


def test_a_rank_share_feeds_the_fluent_recipe() -> None:
    dataset = "abcdefghij"
    fetch = pl.dataloader.fetch(dataset, "".join)
    batches = [
        list(
            Pipe(sampler.sequential(dataset, epochs=1, rank=rank, world_size=3, drop_last=True))
            .flatten()
            .partition(2)
            .map(fetch)
            .thread(2)
            .order()
        )
        for rank in range(3)
    ]
    assert batches == [["ad", "g"], ["be", "h"], ["cf", "i"]]


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [sampler.sequential, sampler.shuffle], ids=["sequential", "shuffle"]
)
def test_the_distributed_arguments_are_checked_at_once(make: Any) -> None:
    name = make.__name__
    rng = {"rng": 0} if name == "shuffle" else {}
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"rank": 2, "world_size": 2}, ValueError, r"rank must be < world_size \(2\), got 2"),
        ({"rank": -1, "world_size": 2}, ValueError, "rank must be >= 0, got -1"),
        ({"rank": 0, "world_size": 0}, ValueError, "world_size must be >= 1, got 0"),
        ({"rank": 1.0, "world_size": 2}, TypeError, "rank must be an int, got float"),
        ({"rank": True, "world_size": 2}, TypeError, "rank must be an int, got bool"),
        ({"rank": 0, "world_size": "2"}, TypeError, "world_size must be an int, got str"),
        ({"rank": 0, "world_size": 2, "drop_last": 1}, TypeError, "drop_last must be a bool"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=rf"sampler\.{name}: {message}"):
            make(range(4), **rng, **options)
    assert list(make(range(4), epochs=1, rank=np.int64(1), world_size=np.int64(2), **rng))


def test_the_random_module_is_refused_for_several_ranks() -> None:
    with pytest.raises(ValueError, match=r"sampler\.shuffle: with world_size > 1, rng must be"):
        sampler.shuffle(range(4), rank=0, world_size=2)
    assert sampler.shuffle(range(4), rank=0, world_size=1)  # one rank: nothing to agree on


def test_the_sampler_repr_names_the_rank() -> None:
    assert repr(sampler.sequential("ab")) == "sampler.sequential(epochs=None)"
    ranked = sampler.shuffle("ab", rng=1, epochs=2, rank=1, world_size=4, drop_last=True)
    assert repr(ranked) == "sampler.shuffle(epochs=2, rank=1, world_size=4, drop_last=True)"


# -- against Pipe.shard ------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world_size"), [(12, 4), (9, 3), (10, 4), (3, 5)])
def test_without_padding_a_share_is_the_shard_of_the_epoch(n: int, world_size: int) -> None:
    # shard() cuts the stream as it comes, so the ranks' shares differ in length when
    # world_size does not divide the epoch; the sampler pads them to equal length.
    for rank in range(world_size):
        sharded = list(Pipe(range(n)).shard(rank, world_size))
        (share,) = sampler.sequential(range(n), epochs=1, rank=rank, world_size=world_size)
        assert list(share)[: len(sharded)] == sharded
        assert len(share) == -(-n // world_size)
        padding = list(share)[len(sharded) :]
        assert n % world_size or not padding
