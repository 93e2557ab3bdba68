"""Arrays a worker allocates in its own pool (:meth:`ShmPool.empty`), so that returning
them costs no copy: the message then names the region the array already lives in.

A lent region is marked used from the moment it is lent, and it stays *pinned* (never
handed out again, split, merged or unmapped) while the worker's base array on it lives,
even after the reader freed what it was sent: the worker may still read it, or send it
again (as a copy). It goes back to the pool once both sides are done: the reader frees
it when its views die, and an unsent region is freed when the worker's last array on it
dies.

Examples:
    >>> from tinypl._shm import ShmPool, loads
    >>> with ShmPool(1 << 22) as pool:
    ...     a = pool.empty(100_000)
    ...     a[:] = 1.0
    ...     before = pool.stats()["bytes_in_use"]
    ...     b = loads(pool.dumps(a))  # no second region: b is a view on a's memory
    ...     float(b.sum()), pool.stats()["bytes_in_use"] == before
    (100000.0, True)
"""

from __future__ import annotations

import operator
import os
import weakref
from contextlib import suppress
from typing import Any, Literal

from ._regions import Region, WriterSegment

__all__ = ["Lending", "check_order", "check_shape", "empty", "serve"]


class Lent:
    """One lent region: where it is, the address its data starts at, and whether a
    message carries it already (a region travels once; later sends copy it)."""

    __slots__ = ("alive", "region", "segment", "sent", "start")

    def __init__(self, segment: WriterSegment, region: Region, start: int) -> None:
        self.segment = segment
        self.region = region
        self.start = start
        self.sent = False
        self.alive = True  # the worker's base array on the region lives


def _give_back(lent: Lent, lending: Lending, key: int) -> None:
    """Finalizer of a lent region's base array, in the worker."""
    if os.getpid() != lending.pid:
        return  # a forked child dropping what it inherited: the region is the parent's
    lending.lent.pop(key, None)
    lending.pinned.discard(lent.region)
    lent.alive = False
    if not lent.sent:
        release(lent)


def release(lent: Lent) -> None:
    """Give an unsent lent region back to the pool."""
    # Not under the pool's lock: this may run inside a collection that interrupted
    # dumps(); a state byte set to 0 is exactly what the reader does without it.
    with suppress(ValueError):  # the pool closed and unmapped the segment first
        lent.segment.mark(lent.region, False)


def _address(array: Any) -> int:
    address: int = array.__array_interface__["data"][0]
    return address


def check_shape(shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or a ``ValueError``/``TypeError``
    that names the argument.

    Examples:
        >>> check_shape(3), check_shape((2, 4))
        ((3,), (2, 4))
        >>> check_shape((2, -1))
        Traceback (most recent call last):
        ValueError: shape must hold non-negative ints, got (2, -1)
    """
    try:
        dims = (_dim(shape),) if not isinstance(shape, (tuple, list)) else tuple(map(_dim, shape))
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must hold non-negative ints, got {shape!r}")
    return dims


def check_order(order: object) -> Literal["C", "F"]:
    """``order`` if it is ``"C"`` or ``"F"``, else a ``ValueError`` naming it.

    Examples:
        >>> check_order("F")
        'F'
    """
    if order == "C":
        return "C"
    if order == "F":
        return "F"
    raise ValueError(f"order must be 'C' or 'F', got {order!r}")


def _dim(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("a bool is no dimension")
    return operator.index(value)  # type: ignore[arg-type]


class Lending:
    """The regions a pool has lent, by the id of each region's base array (every numpy
    view of a lent array has that base array as its ``base``), and the regions pinned
    by a live base array."""

    def __init__(self) -> None:
        self.lent: dict[int, Lent] = {}
        self.pinned: set[Region] = set()
        self.pid = os.getpid()

    def lend(self, segment: WriterSegment, region: Region, nbytes: int) -> Any:
        """A uint8 array over ``nbytes`` of ``region`` (already marked used)."""
        import numpy as np

        # frombuffer over a memoryview: views of this array keep it as their base.
        base = np.frombuffer(segment.view[region.offset : region.offset + nbytes], np.uint8)
        lent = Lent(segment, region, _address(base))
        key = id(base)
        self.lent[key] = lent
        self.pinned.add(region)
        weakref.finalize(base, _give_back, lent, self, key).atexit = False
        return base

    def find(self, raw: memoryview) -> tuple[Lent, int] | None:
        """The unsent lent region that ``raw`` (a pickle buffer) lies in, and its offset
        in the segment; ``None`` when it lies in no such region."""
        base = getattr(raw.obj, "base", None)
        lent = self.lent.get(id(base))
        if lent is None or lent.sent:
            return None
        skip = _address(raw.obj) - lent.start
        if skip < 0 or skip + raw.nbytes > lent.region.size:
            return None
        return lent, lent.region.offset + skip


class _Serving:
    """The pool of the process-stage run this worker serves (``None`` elsewhere)."""

    pool: Any = None


def serve(pool: Any) -> None:
    """Make ``pool`` the one :func:`empty` lends from (``None``: no run is served)."""
    _Serving.pool = pool


os.register_at_fork(after_in_child=lambda: serve(None))  # a child serves no run


def empty(shape: int | tuple[int, ...], dtype: Any = float, order: str = "C") -> Any:
    """:meth:`ShmPool.empty` of the pool this worker serves, else ``numpy.empty``.

    Examples:
        >>> empty((2, 3), "int8").shape
        (2, 3)
    """
    pool = _Serving.pool
    if pool is not None and not pool.closed and pool.owner == os.getpid():
        return pool.empty(shape, dtype, order)
    import numpy as np

    return np.empty(check_shape(shape), dtype, check_order(order))
