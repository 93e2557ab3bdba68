"""Descriptions of the stream operations: shuffle, take, skip, zip, concat, mix, repeat,
shard and prefetch. Pure data, validated on construction, like the nodes of ``_plan``.

Multi-input stages hold the plans of their other inputs (``others``, ``inputs``), which
each run materializes afresh; ``repeat`` and ``mix`` start a plan of their own, so their
physical nodes have no ``upstream``.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterator
from typing import Any

import attrs

from ._marker import Marker
from ._plan import Node, Source, Thread, _int, chain
from ._validate import check_choice, check_marker

__all__ = [
    "MIX_STOPS",
    "Concat",
    "Mix",
    "Prefetch",
    "ReadAhead",
    "Repeat",
    "Repeated",
    "Shard",
    "Shuffle",
    "Skip",
    "Take",
    "Zip",
    "derive_seed",
    "iterator_sources",
    "reseeded",
]

MIX_STOPS = ("first", "all")


def _seed() -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            name = type(node).__name__.lower()
            raise TypeError(f"{name}: seed must be an int or None, got {type(value).__name__}")

    return attrs.field(default=None, validator=validate)


def _plans(attr: str) -> Any:
    def validate(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not all(isinstance(plan, Node) for plan in value):
            raise TypeError(f"{type(node).__name__.lower()}: {attr} must hold plans")

    return attrs.field(converter=tuple, validator=validate)


@attrs.frozen(slots=True, repr=False)
class Shuffle(Node):
    """A buffer shuffle; a marker flushes the buffer, so it keeps its place."""

    upstream: Node
    buffer_size: int = _int("buffer_size")
    seed: int | None = _seed()


@attrs.frozen(slots=True, repr=False)
class Take(Node):
    """The first ``n`` items (markers pass and are not counted)."""

    upstream: Node
    n: int = _int("n", minimum=0)


@attrs.frozen(slots=True, repr=False)
class Skip(Node):
    """All but the first ``n`` items (markers pass and are not counted)."""

    upstream: Node
    n: int = _int("n", minimum=0)


@attrs.frozen(slots=True, repr=False)
class Shard(Node):
    """The items whose position here is ``index`` modulo ``count``; every marker passes."""

    upstream: Node
    index: int = _int("index", minimum=0)
    count: int = _int("count")

    def __attrs_post_init__(self) -> None:
        if self.index >= self.count:
            raise ValueError(
                f"shard: index must be < count, got index={self.index}, count={self.count}"
            )


@attrs.frozen(slots=True, repr=False)
class Prefetch(Node):
    """Reads up to ``n`` items ahead in one background thread, keeping their order."""

    upstream: Node
    n: int = _int("n")


@attrs.frozen(slots=True, repr=False)
class Zip(Node):
    """Tuples of one item of each input; ends with the shortest."""

    upstream: Node
    others: tuple[Node, ...] = _plans("others")


@attrs.frozen(slots=True, repr=False)
class Concat(Node):
    """The items of this input, then of each other input."""

    upstream: Node
    others: tuple[Node, ...] = _plans("others")


def _weights(node: Mix, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if len(value) != len(node.inputs):
        raise ValueError(
            f"mix: weights must give one weight per pipe, got {len(value)} weights for"
            f" {len(node.inputs)} pipes"
        )
    for weight in value:
        if not weight >= 0:
            raise ValueError(f"mix: weights must be >= 0, got {weight!r}")
    if not sum(value) > 0:
        raise ValueError("mix: weights must have a positive sum, got all zeros")


def _to_weights(weights: Any) -> tuple[float, ...] | None:
    """The weights as floats, each checked to be a real number first."""
    if weights is None:
        return None
    try:
        values = list(weights)
    except TypeError:
        raise TypeError(
            f"mix: weights must be a sequence of numbers, got {type(weights).__name__}"
        ) from None
    for weight in values:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"mix: weights must be numbers, got {type(weight).__name__}")
    return tuple(float(weight) for weight in values)


@attrs.frozen(slots=True, repr=False)
class Mix(Node):
    """Interleaves ``inputs``: round-robin, or by ``weights``; a plan of its own."""

    inputs: tuple[Node, ...] = _plans("pipes")
    weights: tuple[float, ...] | None = attrs.field(
        default=None, converter=_to_weights, validator=_weights
    )
    seed: int | None = _seed()
    stop: str = attrs.field(default="first")

    def __attrs_post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("mix: pipes must hold at least one pipe")

    @stop.validator
    def _check_stop(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_choice("mix", "stop", value, MIX_STOPS)

    @property
    def upstream(self) -> None:  # type: ignore[override]
        return None


def _optional_marker(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_marker("repeat", "marker", value, optional=True)


@attrs.frozen(slots=True, repr=False)
class Repeat(Node):
    """Runs the plan above again from its source, ``times`` times (``None``: forever)."""

    upstream: Node
    times: int | None = _int("times", minimum=0, optional=True, default=None)
    marker: Marker | None = attrs.field(default=None, validator=_optional_marker)

    def __attrs_post_init__(self) -> None:
        for source in iterator_sources(self.upstream):
            raise TypeError(
                f"repeat: the source {source} is an iterator, which can be iterated only"
                " once; pass a re-iterable source (a list, a range, a Pipe, ...)"
            )


# Physical nodes, produced by the planner.


@attrs.frozen(slots=True, repr=False)
class Repeated(Node):
    """A planned ``Repeat``: each pass materializes ``body`` afresh."""

    body: Node
    times: int | None
    marker: Marker | None

    @property
    def upstream(self) -> None:  # type: ignore[override]
        return None


@attrs.frozen(slots=True, repr=False)
class ReadAhead(Thread):
    """A planned ``Prefetch``: one worker thread, a queue of ``maxsize`` items."""


def _inputs(node: Node) -> Iterator[Node]:
    """The plans a node reads besides its ``upstream``."""
    yield from getattr(node, "others", ())
    yield from getattr(node, "inputs", ())
    body = getattr(node, "body", None)
    if body is not None:
        yield body


def iterator_sources(plan: Node) -> Iterator[str]:
    """The sources of ``plan`` (in every input) that can be iterated only once."""
    from ._ops import short_repr

    for node in chain(plan):
        if isinstance(node, Source) and isinstance(node.source, Iterator):
            yield f"Pipe({short_repr(node.source)})"
        for other in _inputs(node):
            yield from iterator_sources(other)


def derive_seed(seed: int, index: int) -> int:
    """The seed of pass ``index`` of a repeat: pass 0 keeps ``seed``.

    Examples:
        >>> derive_seed(7, 0), derive_seed(7, 1) == derive_seed(7, 1) != derive_seed(7, 2)
        (7, True)
    """
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def reseeded(plan: Node, index: int) -> Node:
    """``plan`` with every seeded stage's seed derived for pass ``index`` of a repeat, so
    each pass of a seeded shuffle has its own order and every run the same sequence."""
    if index == 0:
        return plan
    changes: dict[str, Any] = {}
    if getattr(plan, "seed", None) is not None:
        changes["seed"] = derive_seed(plan.seed, index)  # type: ignore[attr-defined]
    for field in ("others", "inputs"):
        if hasattr(plan, field):
            changes[field] = tuple(reseeded(p, index) for p in getattr(plan, field))
    if isinstance(plan, Repeated):
        changes["body"] = reseeded(plan.body, index)
    if plan.upstream is not None:
        changes["upstream"] = reseeded(plan.upstream, index)
    return attrs.evolve(plan, **changes) if changes else plan  # type: ignore[misc]
