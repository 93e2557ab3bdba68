"""Per-item operations: what a fused run of stages does to one item, as typed data.

The planner turns runs of per-item stages (map, filter, each, flatten, on) into tuples of
these ops; the runtime compiles a tuple into each form a backend needs
(``tinypl._runtime._compile``). Like the plan, ops are pure data: frozen, comparable,
and picklable when their functions are.
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from ._marker import Marker

__all__ = ["EachOp", "FilterOp", "FlattenOp", "MapOp", "OnOp", "Op", "is_async", "name_of"]

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def name_of(fn: Any) -> str:
    """A callable by qualified name (``<lambda>``, ``function``, ``Class.method``).

    Examples:
        >>> import functools
        >>> name_of(len), name_of(functools.partial(divmod, 7))
        ('len', 'partial(divmod)')
    """
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):
        return qualname
    func = getattr(fn, "func", None)  # functools.partial
    if func is not None:
        return f"partial({name_of(func)})"
    return _repr.repr(fn)


def short_repr(value: Any) -> str:
    """``value`` as plans render it (``reprlib``: long values are cut)."""
    return _repr.repr(value)


class Op:
    """Base of the per-item ops; ``kind`` is the stage's name, ``label`` names the op as
    error notes and ``explain()`` show it."""

    __slots__ = ()
    kind: ClassVar[str]

    @property
    def label(self) -> str:
        return self.kind


@attrs.frozen(slots=True)
class _CallOp(Op):
    """An op calling a user function ``fn`` on each data item.

    Examples:
        >>> MapOp(len).label, FilterOp(bool).label, EachOp(print).label
        ('map(len)', 'filter(bool)', 'each(print)')
    """

    fn: Callable[[Any], Any]

    @property
    def label(self) -> str:
        return f"{self.kind}({name_of(self.fn)})"


# The three ops that call ``fn`` on each data item differ only in what they do with the
# result (see their emitters in ``_runtime._compile``).


@attrs.frozen(slots=True)
class MapOp(_CallOp):
    kind: ClassVar[str] = "map"  # fn(item) replaces the item


@attrs.frozen(slots=True)
class FilterOp(_CallOp):
    kind: ClassVar[str] = "filter"  # keeps the item when fn(item) is true


@attrs.frozen(slots=True)
class EachOp(_CallOp):
    kind: ClassVar[str] = "each"  # calls fn(item) and keeps the item


@attrs.frozen(slots=True)
class FlattenOp(Op):
    """Replaces the item with its elements (``eager``: listed first).

    Examples:
        >>> FlattenOp().label
        'flatten'
    """

    kind: ClassVar[str] = "flatten"
    eager: bool = False


@attrs.frozen(slots=True)
class OnOp(Op):
    """Calls ``fn()`` when a matching marker passes (``marker=None``: any marker);
    ``consume`` drops the marker. Data items pass untouched.

    Examples:
        >>> OnOp(None, print).label
        'on(None)'
    """

    kind: ClassVar[str] = "on"
    marker: Marker | None
    fn: Callable[[], Any]
    consume: bool = False

    @property
    def label(self) -> str:
        return f"on({self.marker!r})"


# -- asyncio stages (issue 16) -----------------------------------------------------------

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect (slow to import)


def is_async(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine: an ``async def`` function or method, a
    ``functools.partial`` of one, or an object whose ``__call__`` is one.

    Examples:
        >>> import functools
        >>> async def fetch(url, timeout):
        ...     return url
        >>> is_async(fetch), is_async(functools.partial(fetch, timeout=1)), is_async(len)
        (True, True, False)
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if getattr(fn, "_is_coroutine_marker", None) is not None:  # inspect.markcoroutinefunction
        return True
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None and not isinstance(fn, type):
        # The ``__call__`` a class defines (``callable()`` says nothing about ``async``).
        own = [vars(k)["__call__"] for k in type(fn).__mro__ if "__call__" in vars(k)]
        code = getattr(own[0], "__code__", None) if own else None
    flags = getattr(code, "co_flags", 0)
    return isinstance(flags, int) and bool(flags & _CO_COROUTINE)
