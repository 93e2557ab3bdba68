"""Descriptions of the insight stages (issue 12): a progress bar and periodic reports of
a run's figures. Pure data, validated on construction, like the nodes of ``_plan``."""

from __future__ import annotations

from typing import Any

import attrs

from ._plan import _NAMES, Node
from ._validate import check_int, check_number

__all__ = ["Progress", "Report"]


def _optional_str(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"progress: {attribute.name} must be a str or None, got {type(value).__name__}"
        )


def _optional_total(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_int("progress", "total", value, minimum=0)


def _options(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    for key, _ in value:
        if key in ("iterable", "desc", "total"):
            raise TypeError(f"progress: {key} is not a tqdm option here")


@attrs.frozen(slots=True, repr=False)
class Progress(Node):
    """A pass-through stage drawing a tqdm bar of the items (not markers) that pass;
    ``options``: the other keyword arguments of ``tqdm``, as sorted ``(name, value)``
    pairs."""

    upstream: Node
    desc: str | None = attrs.field(default=None, validator=_optional_str)
    total: int | None = attrs.field(default=None, validator=_optional_total)
    options: tuple[tuple[str, Any], ...] = attrs.field(default=(), validator=_options)


def _every(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_number("report", "every", value)


def _to(node: Node, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"report: to must be callable or None, got {type(value).__name__}")


@attrs.frozen(slots=True, repr=False)
class Report(Node):
    """A pass-through stage that, while the run lives, hands the run's ``Stats`` every
    ``every`` seconds to ``to`` (``None``: the ``tinypl.stats`` logger, at INFO)."""

    upstream: Node
    every: float = attrs.field(default=10.0, validator=_every)
    to: Any = attrs.field(default=None, validator=_to)


_NAMES[Progress] = "progress"
_NAMES[Report] = "report"
