"""The base of the fluent builder's method groups (stream operations, insight stages):
what each group needs of ``Pipe`` to add a node and keep the pipe's item type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from . import _plan

__all__ = ["Builds"]

P = TypeVar("P", bound="Builds")


class Builds:
    """A group of ``Pipe`` methods: ``_keep(node)`` is the pipe with ``node`` added on
    top, of the same item type."""

    __slots__ = ()

    if TYPE_CHECKING:
        plan: _plan.Node

    def _then(self, node: _plan.Node) -> Any:
        raise NotImplementedError  # Pipe builds the new pipe

    def _keep(self: P, node: _plan.Node) -> P:
        return cast(P, self._then(node))
