"""The one registry from description types to the code that materializes them.

Backends register with ``@build.register``; ``materialize`` optimizes a plan and builds it
bottom-up, each node on the live stage below it.
"""

from __future__ import annotations

import functools
from typing import Any

from .._plan import Node, chain
from .._planner import optimize
from ._stage import Stage

__all__ = ["build", "materialize"]


@functools.singledispatch
def build(node: Node, upstream: Stage[Any]) -> Stage[Any]:
    """Materialize ``node`` on the live ``upstream`` stage."""
    raise NotImplementedError(f"tinypl: no runtime is registered for {type(node).__name__}")


@functools.singledispatch
def build_source(node: Node) -> Stage[Any]:
    raise TypeError(f"tinypl: a plan cannot start with {type(node).__name__}")


def materialize(plan: Node) -> Stage[Any]:
    """A fresh run of ``plan``: optimize it, then build each node on the one below."""
    from ._collect import attach, prepare  # the probes of stage.stats()

    nodes = chain(optimize(plan))
    stage = build_source(nodes[0])
    for index, node in enumerate(nodes[1:], 2):
        following = nodes[index] if index < len(nodes) else None
        prepare(stage, node)
        stage = attach(build(node, stage), stage, following)
    if len(nodes) == 1:
        stage = attach(stage, None, None)
    return stage
