"""Module-level forms of the stages that run on an engine of the user's: an executor
(``pl.executor.map``) or an event loop (``pl.asyncio.map``), as in ``_compat``."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

from ._pipe import Pipe
from ._runtime import Stage

__all__ = ["COUNTERPARTS", "asyncio_each", "asyncio_map", "executor_each", "executor_map"]

T = TypeVar("T")
U = TypeVar("U")

#: The public name of each function here and the ``Pipe`` method it is built on.
COUNTERPARTS: dict[str, str] = {
    "executor.map": "executor",
    "executor.each": "executor",
    "asyncio.map": "asyncio",
    "asyncio.each": "asyncio",
}


# -- pl.executor -------------------------------------------------------------------------


def executor_map(
    pipe: Iterable[T],
    fn: Callable[[T], U],
    executor: Any,
    maxsize: int | None = None,
    *,
    chunksize: int | None = None,
) -> Stage[U]:
    """``pl.map`` run on ``executor``, any ``concurrent.futures.Executor`` or a
    ``distributed.Client`` (see ``Pipe.executor``).

    Examples:
        >>> import tinypl as pl
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(2) as pool:
        ...     print(sorted(pl.executor.map(range(5), lambda x: x * x, pool)))
        [0, 1, 4, 9, 16]
    """
    return iter(Pipe(pipe).map(fn).executor(executor, maxsize, chunksize))


def executor_each(
    pipe: Iterable[T],
    fn: Callable[[T], object],
    executor: Any,
    maxsize: int | None = None,
    *,
    chunksize: int | None = None,
) -> Stage[T]:
    """``pl.each`` run on ``executor``: ``fn`` is called there, the item passes on
    unchanged.

    Examples:
        >>> import tinypl as pl
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(1) as pool:
        ...     print(sorted(pl.executor.each(range(3), abs, pool)))
        [0, 1, 2]
    """
    return iter(Pipe(pipe).each(fn).executor(executor, maxsize, chunksize))
# -- pl.asyncio (issue 16) ---------------------------------------------------------------



@overload
def asyncio_map(
    pipe: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Awaitable[U]],
    concurrency: int,
    maxsize: int | None = None,
    *,
    timeout: float | None = None,
) -> Stage[U]: ...
@overload
def asyncio_map(
    pipe: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], U],
    concurrency: int,
    maxsize: int | None = None,
    *,
    timeout: float | None = None,
) -> Stage[U]: ...
def asyncio_map(
    pipe: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Any],
    concurrency: int,
    maxsize: int | None = None,
    *,
    timeout: float | None = None,
) -> Stage[Any]:
    """``pl.map`` followed by an asyncio stage: ``fn`` (``async def`` or plain) runs on
    one event loop with up to ``concurrency`` items in flight (see ``Pipe.asyncio``).

    Examples:
        >>> import asyncio
        >>> import tinypl as pl
        >>> async def square(x):
        ...     await asyncio.sleep(0.001)
        ...     return x * x
        >>> sorted(pl.asyncio.map(range(5), square, concurrency=3))
        [0, 1, 4, 9, 16]
    """
    return iter(Pipe(pipe).map(fn).asyncio(concurrency, maxsize, timeout=timeout))


def asyncio_each(
    pipe: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], object],
    concurrency: int,
    maxsize: int | None = None,
    *,
    timeout: float | None = None,
) -> Stage[T]:
    """``pl.each`` followed by an asyncio stage: ``fn`` is awaited on every item, which
    passes on unchanged.

    Examples:
        >>> import asyncio
        >>> import tinypl as pl
        >>> seen = []
        >>> async def record(x):
        ...     seen.append(x)
        >>> sorted(pl.asyncio.each(range(3), record, concurrency=2)), sorted(seen)
        ([0, 1, 2], [0, 1, 2])
    """
    return iter(Pipe(pipe).each(fn).asyncio(concurrency, maxsize, timeout=timeout))
