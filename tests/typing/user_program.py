"""A user's program, type-checked by mypy in ``test_typing.py``: each ``assert_type`` is
what a user's editor must infer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy.typing as npt
from typing_extensions import assert_type

import tinypl as pl

# -- the fluent chain
ints = pl.Pipe(range(10))
assert_type(ints, pl.Pipe[int])
assert_type(pl.Pipe(["a"]), pl.Pipe[str])
assert_type(pl.Pipe(ints), pl.Pipe[int])
assert_type(ints.map(str), pl.Pipe[str])
assert_type(ints.filter(lambda x: x > 2).thread(2).order(), pl.Pipe[int])
assert_type(ints.partition(2), pl.Pipe[list[int]])
assert_type(ints.partition(2).flatten(), pl.Pipe[int])
assert_type(list(ints.map(str)), list[str])

# -- stream operations
assert_type(ints.shuffle(4, seed=0).take(3).skip(1).shard(0, 2).prefetch(2), pl.Pipe[int])
assert_type(ints.zip(["a"]), pl.Pipe[tuple[int, str]])
assert_type(ints.zip(["a"], [1.0]), pl.Pipe[tuple[int, str, float]])
assert_type(ints.concat(["a"]), pl.Pipe[int | str])
assert_type(pl.Pipe.mix([ints, ints], weights=[1, 2]), pl.Pipe[int])
assert_type(ints.repeat(2), pl.Pipe[int])
assert_type(len(ints.take(3)), int)
assert_type(pl.take(range(3), 2), pl.Stage[int])
assert_type(pl.mix([range(3), range(4)]), pl.Stage[int])

# -- asyncio stages (issue 16)
async def fetch(x: int) -> str:
    return str(x)


async def numbers() -> AsyncIterator[int]:
    yield 1


assert_type(ints.map(fetch).asyncio(4), pl.Pipe[str])
assert_type(ints.map(fetch).asyncio(4).order(), pl.Pipe[str])
assert_type(ints.map(str).asyncio(4), pl.Pipe[str])
assert_type(pl.Pipe(numbers()), pl.Pipe[int])
assert_type(pl.asyncio.map(range(3), fetch, concurrency=2), pl.Stage[str])
assert_type(pl.asyncio.each(range(3), fetch, concurrency=2), pl.Stage[int])

# -- the module-level chain
assert_type(pl.map(range(3), str), pl.Stage[str])
assert_type(pl.filter(pl.map(range(3), str), str.isdigit), pl.Stage[str])
assert_type(pl.partition(range(3), 2), pl.Stage[list[int]])
assert_type(pl.thread.map(range(3), str, workers=2), pl.Stage[str])


# -- the dataloader
class Squares:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index * index


def total(batch: list[int]) -> int:
    return sum(batch)


assert_type(pl.dataloader.load(Squares(), 2, total), pl.Stage[int])

frame = pl.process.empty((2, 3), "float32")
assert_type(frame, npt.NDArray[Any])
