"""The marker value: a control item that travels with the data."""

from __future__ import annotations

from typing import Any, final

import attrs

__all__ = ["Marker", "is_marker"]


@final
@attrs.frozen(eq=False, slots=True, repr=False)
class Marker:
    """A control item that travels through a pipeline in place between the data items.

    Markers pass map, filter, each and flatten untouched, are never handed to a user
    function and are never yielded to whoever iterates a pipeline. Two markers are
    distinct even when they share a name: identity, not the name, is what stages match.

    Examples:
        >>> from tinypl import Marker, Pipe
        >>> end = Marker("end")
        >>> seen = []
        >>> marked = Pipe(range(4)).insert_marker(end, every=2)
        >>> pipe = marked.on(end, lambda: seen.append("!"))
        >>> list(pipe), seen
        ([0, 1, 2, 3], ['!', '!'])
        >>> Marker("end") is end
        False
    """

    name: str = attrs.field(default="marker")

    @name.validator
    def _check_name(self, attribute: attrs.Attribute[str], value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Marker: name must be a str, got {type(value).__name__}")

    def __repr__(self) -> str:
        return f"Marker({self.name!r})"


#: ``is_marker(x)`` is a C-level predicate (no Python frame per call), which matters in the
#: hot paths that filter markers out of the public view of a stage.
is_marker = Marker.__instancecheck__
