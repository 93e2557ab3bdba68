"""Laws of the samplers' ``rank`` / ``world_size`` / ``drop_last`` shares (issue #11).

The *model* of an epoch of ``n`` indices on ``world_size`` ranks is the padded epoch:
the indices repeated from their start up to a multiple of ``world_size``
(``drop_last=False``), or cut down to one (``drop_last=True``). Over random sizes, rank
counts and seeds, the ranks' shares must partition the model's positions: rank ``r``
holds exactly the positions ``r, r + world_size, ...``, so every position belongs to one
rank, and all shares are equally long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import tinypl as pl

sampler = pl.dataloader.sampler


def padded(indices: Sequence[int], world_size: int, drop_last: bool) -> list[int]:
    """The model: the epoch every rank cuts its share from."""
    indices = list(indices)
    if drop_last:
        return indices[: len(indices) // world_size * world_size]
    total = -(-len(indices) // world_size) * world_size
    while indices and len(indices) < total:
        indices += indices[: total - len(indices)]
    return indices


def epochs_per_rank(
    make: Callable[..., Any], world_size: int, drop_last: bool
) -> list[list[list[int]]]:
    return [
        [list(epoch) for epoch in make(rank=rank, world_size=world_size, drop_last=drop_last)]
        for rank in range(world_size)
    ]


def assert_partition(parts: list[list[int]], epoch: list[int], world_size: int) -> None:
    assert len({len(part) for part in parts}) == 1, "the shares differ in length"
    positions: dict[int, int] = {}  # position in the padded epoch -> rank holding it
    for rank, part in enumerate(parts):
        for k, index in enumerate(part):
            position = k * world_size + rank
            assert position not in positions
            positions[position] = rank
            assert epoch[position] == index
    assert sorted(positions) == list(range(len(epoch))), "a position of the epoch is missing"


sizes = st.integers(min_value=0, max_value=120)
worlds = st.integers(min_value=1, max_value=9)


@given(n=sizes, world_size=worlds, drop_last=st.booleans(), epochs=st.integers(0, 3))
def test_sequential_shares_partition_the_padded_epoch(
    n: int, world_size: int, drop_last: bool, epochs: int
) -> None:
    per_rank = epochs_per_rank(
        lambda **ranks: sampler.sequential(range(n), epochs=epochs, **ranks), world_size, drop_last
    )
    model = padded(range(n), world_size, drop_last)
    for epoch in range(epochs):
        assert_partition([rank[epoch] for rank in per_rank], model, world_size)
    assert all(len(rank) == epochs for rank in per_rank)


@given(
    n=sizes,
    world_size=worlds,
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
    epochs=st.integers(1, 3),
)
def test_shuffled_shares_partition_the_same_padded_permutation(
    n: int, world_size: int, drop_last: bool, seed: int, epochs: int
) -> None:
    per_rank = epochs_per_rank(
        lambda **ranks: sampler.shuffle(range(n), rng=seed, epochs=epochs, **ranks),
        world_size,
        drop_last,
    )
    # The permutation of each epoch is the one a single rank draws with this seed.
    permutations = list(sampler.shuffle(range(n), rng=seed, epochs=epochs))
    for epoch, permutation in enumerate(permutations):
        assert sorted(permutation) == list(range(n))
        model = padded(permutation, world_size, drop_last)
        assert_partition([rank[epoch] for rank in per_rank], model, world_size)


@given(n=st.integers(1, 120), world_size=worlds, seed=st.integers(0, 2**32))
def test_without_drop_last_every_index_is_seen_and_padding_is_minimal(
    n: int, world_size: int, seed: int
) -> None:
    parts = [
        list(next(iter(sampler.shuffle(range(n), rng=seed, rank=r, world_size=world_size))))
        for r in range(world_size)
    ]
    seen = [index for part in parts for index in part]
    assert set(seen) == set(range(n))
    assert len(seen) - n == (-n) % world_size  # fewer than one index per rank added
