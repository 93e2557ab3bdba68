"""Resuming a run in the middle of a flattened item: handing the flatten its item
already some elements in, and reading how far a live flatten has gone into its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ._errors import NotResumable
from ._explain import describe
from ._runtime import Stage
from ._runtime._stage import EXHAUSTIBLE

__all__ = ["Past", "Resumed", "inner_place"]


class Resumed:
    """Hands out one element: the flatten's item, already ``skip`` elements in (as the
    builtin iterator where it can be, so a later state can read its place again)."""

    __slots__ = ("_pull", "_skip", "offset", "past", "pending")

    def __init__(self, upstream: Iterator[Any], skip: int, eager: bool) -> None:
        self._pull: Any = upstream.__next__
        self._skip = skip
        #: Until the flatten takes its item, the run stands where its state put it.
        self.pending = True
        #: Whether the flatten has gone on to its next item.
        self.past = False
        #: What to add to the place the flatten reads in this item: an eager flatten
        #: lists what is left of it, so it counts from there.
        self.offset = skip if eager else 0

    def __iter__(self) -> Resumed:
        return self

    def __next__(self) -> Iterator[Any]:
        pull, self._pull = self._pull, _exhausted
        self.pending = False
        inner: Any = iter(pull())
        if type(inner) in EXHAUSTIBLE:
            inner.__setstate__(self._skip)
            return inner  # type: ignore[no-any-return]
        return itertools.islice(inner, self._skip, None)


def _exhausted() -> Any:
    raise StopIteration


class Past:
    """Yields nothing; pulled once the flatten wants its second item, it says so."""

    __slots__ = ("_first",)

    def __init__(self, first: Resumed) -> None:
        self._first = first

    def __iter__(self) -> Past:
        return self

    def __next__(self) -> Any:
        self._first.past = True
        raise StopIteration


def _name(stage: Stage[Any]) -> str:
    node = stage._node
    return "flatten()" if node is None else describe(node)


def inner_place(stage: Stage[Any], first: Resumed | None) -> int | None:
    """How many elements of its current item a live flatten stage has handed out;
    ``None`` before its first item and after its last. ``first``: how a resumed
    flatten's first item was handed to it."""
    parts = getattr(stage, "_parts", None)
    inner = parts._current if parts is not None else getattr(stage.raw, "_inner", None)
    if inner is None:
        return None
    if type(inner) in EXHAUSTIBLE:
        reduced = inner.__reduce__()
        if len(reduced) < 3:
            return None  # exhausted
        offset = 0 if first is None or first.past else first.offset
        return int(reduced[2]) + offset
    raise NotResumable(
        f"tinypl: this run cannot be resumed here: {_name(stage)} is in the"
        f" middle of an item whose iterator ({type(inner).__name__}) has no readable"
        " position; flatten lists, tuples or ranges (or use flatten(eager=True))"
    )
