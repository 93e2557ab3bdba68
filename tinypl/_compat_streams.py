"""Module-level forms of the stream operations (``pl.take(stage, 3)`` …), each the fluent
method applied to ``Pipe(pipe)`` and materialized at once, as in ``_compat``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ._marker import Marker
from ._pipe import MixStop, Pipe
from ._runtime import Stage

__all__ = [
    "COUNTERPARTS",
    "concat_",
    "mix_",
    "prefetch_",
    "repeat_",
    "shard_",
    "shuffle_",
    "skip_",
    "take_",
    "zip_",
]

T = TypeVar("T")

#: The public name of each function here and the ``Pipe`` method it is built on.
COUNTERPARTS: dict[str, str] = {
    "shuffle": "shuffle",
    "take": "take",
    "skip": "skip",
    "shard": "shard",
    "zip": "zip",
    "concat": "concat",
    "mix": "mix",
    "repeat": "repeat",
    "prefetch": "prefetch",
}


def shuffle_(pipe: Iterable[T], buffer_size: int, seed: int | None = None) -> Stage[T]:
    """Shuffle through a buffer of ``buffer_size`` items (see ``Pipe.shuffle``).

    Examples:
        >>> import tinypl as pl
        >>> sorted(pl.shuffle(range(5), 3, seed=0))
        [0, 1, 2, 3, 4]
    """
    return iter(Pipe(pipe).shuffle(buffer_size, seed))


def take_(pipe: Iterable[T], n: int) -> Stage[T]:
    """The first ``n`` items; a live stage it is built on is closed after the ``n``-th.

    Examples:
        >>> import tinypl as pl
        >>> stage = pl.map(range(10), str)
        >>> list(pl.take(stage, 2)), stage.closed
        (['0', '1'], True)
    """
    return iter(Pipe(pipe).take(n))


def skip_(pipe: Iterable[T], n: int) -> Stage[T]:
    """All but the first ``n`` items.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.skip(range(5), 3))
        [3, 4]
    """
    return iter(Pipe(pipe).skip(n))


def shard_(pipe: Iterable[T], index: int, count: int) -> Stage[T]:
    """The items at positions ``index`` modulo ``count`` (see ``Pipe.shard``).

    Examples:
        >>> import tinypl as pl
        >>> list(pl.shard(range(7), 0, 3))
        [0, 3, 6]
    """
    return iter(Pipe(pipe).shard(index, count))


def zip_(pipe: Iterable[Any], *others: Iterable[Any]) -> Stage[tuple[Any, ...]]:
    """Tuples of one item of each input, ending with the shortest.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.zip(range(3), "ab"))
        [(0, 'a'), (1, 'b')]
    """
    return iter(Pipe(pipe).zip(*others))


def concat_(pipe: Iterable[Any], *others: Iterable[Any]) -> Stage[Any]:
    """All items of each input in turn.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.concat([1], pl.map([2, 3], abs)))
        [1, 2, 3]
    """
    return iter(Pipe(pipe).concat(*others))


def mix_(
    pipes: Sequence[Iterable[T]],
    weights: Sequence[float] | None = None,
    seed: int | None = None,
    stop: MixStop = "first",
) -> Stage[T]:
    """Interleave several inputs (see ``Pipe.mix``).

    Examples:
        >>> import tinypl as pl
        >>> list(pl.mix([[1, 2], "ab"]))
        [1, 'a', 2, 'b']
    """
    return iter(Pipe.mix(pipes, weights, seed, stop))


def repeat_(pipe: Iterable[T], times: int | None = None, marker: Marker | None = None) -> Stage[T]:
    """Run the pipeline of ``pipe`` again from its source, ``times`` times.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.repeat(range(2), times=3))
        [0, 1, 0, 1, 0, 1]
    """
    return iter(Pipe(pipe).repeat(times, marker))


def prefetch_(pipe: Iterable[T], n: int) -> Stage[T]:
    """Read up to ``n`` items ahead in one background thread, keeping their order.

    Examples:
        >>> import tinypl as pl
        >>> list(pl.prefetch(pl.map(range(4), str), 2))
        ['0', '1', '2', '3']
    """
    return iter(Pipe(pipe).prefetch(n))
