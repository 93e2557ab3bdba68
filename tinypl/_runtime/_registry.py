"""The one registry from description types to the code that materializes them.

Backends register with ``@build.register``; ``materialize`` optimizes a plan and builds it
bottom-up, each node on the live stage below it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from .._plan import Node, chain
from .._planner import optimize
from ._stage import Stage

__all__ = [
    "build",
    "build_next",
    "build_nodes",
    "build_reading",
    "load_backends",
    "materialize",
]


_BACKENDS = ("_execstage", "_insight", "_loopstage", "_procstage", "_streams", "_sync", "_threads")
_loaded = False


def load_backends() -> bool:
    """Import every backend, so that each registers its builders; ``True`` the first time.

    Called when a node has no builder yet: importing ``tinypl._runtime`` stays light for
    the worker processes, which build no node."""
    global _loaded
    if _loaded:
        return False
    import importlib

    for name in _BACKENDS:
        importlib.import_module(f".{name}", __package__)
    _loaded = True
    return True


@functools.singledispatch
def build(node: Node, upstream: Stage[Any]) -> Stage[Any]:
    """Materialize ``node`` on the live ``upstream`` stage."""
    if load_backends():
        return build(node, upstream)
    raise NotImplementedError(f"tinypl: no runtime is registered for {type(node).__name__}")


@functools.singledispatch
def build_source(node: Node) -> Stage[Any]:
    if load_backends():
        return build_source(node)
    raise TypeError(f"tinypl: a plan cannot start with {type(node).__name__}")


def build_next(stage: Stage[Any], node: Node, following: Node | None) -> Stage[Any]:
    """``node`` built on the live ``stage``, with the probe that ``stage.stats()`` reads;
    ``following`` is the node to be built on the result (``None``: the run's last)."""
    from ._collect import attach, prepare  # the probes of stage.stats()

    load_backends()  # before dispatch: a base class's builder must not stand in for one
    prepare(stage, node)
    return attach(build(node, stage), stage, following)


def build_reading(
    stage: Stage[Any], node: Node, following: Node | None
) -> tuple[Stage[Any], Iterator[Any]]:
    """``build_next``, and the raw iterator the builder gave the new stage (before the
    probe of ``stats()`` may count around it): for a reader of its state."""
    from ._collect import attach, prepare

    load_backends()
    prepare(stage, node)
    built = build(node, stage)
    raw = built.raw  # ``attach`` may put a counter in its place
    return attach(built, stage, following), raw


def build_nodes(
    nodes: Sequence[Node], stage: Stage[Any] | None = None, following: Node | None = None
) -> Stage[Any]:
    """``nodes`` built one on the other, on ``stage`` or (``None``) from the source node
    ``nodes[0]``; ``following`` is the node to come after the last of them."""
    from ._collect import attach

    load_backends()
    if stage is None:
        stage = build_source(nodes[0])
        nodes = nodes[1:]
        if not nodes and following is None:
            return attach(stage, None, None)  # the run is its source alone
    for index, node in enumerate(nodes, 1):
        stage = build_next(stage, node, nodes[index] if index < len(nodes) else following)
    return stage


def materialize(plan: Node) -> Stage[Any]:
    """A fresh run of ``plan``: optimize it, then build each node on the one below."""
    from ._forkserver import boot_for

    nodes = chain(optimize(plan))
    boot_for(nodes)  # a fork server boots on the other core while this builds the run
    return build_nodes(nodes)
