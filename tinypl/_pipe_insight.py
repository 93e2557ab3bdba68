"""The insight stages of the fluent builder (issue 12), a base class of ``Pipe``:
``progress`` and ``report``. Each adds one node of ``_plan_insight`` (checked at once)
and returns a new pipe of the same item type."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._pipe_base import Builds
from ._plan_insight import Progress, Report

if TYPE_CHECKING:
    from ._stats import Stats

__all__ = ["InsightMethods"]

P = TypeVar("P", bound="InsightMethods")


class InsightMethods(Builds):
    """Stages that show how a run goes (see ``Pipe``)."""

    __slots__ = ()

    def progress(
        self: P, desc: str | None = None, total: int | None = None, **tqdm_kwargs: Any
    ) -> P:
        """Draw a tqdm progress bar of the items that pass (markers are not counted).

        ``total`` defaults to the number of items left where the run can tell it when
        it starts (a sized source through stages that keep the count); ``tqdm_kwargs`` go
        to ``tqdm`` (``file``, ``unit``, ``leave`` ...). In a notebook the bar is tqdm's
        notebook form where it is available. The bar is made at the first item and closes
        with the stage, or when the stream ends. The steps below it are timed from the
        start, for ``stage.stats()``.

        Examples:
            >>> import io
            >>> from tinypl import Pipe
            >>> out = io.StringIO()
            >>> list(Pipe(range(3)).progress("items", file=out, ascii=True))
            [0, 1, 2]
            >>> "items: 100%" in out.getvalue() and "3/3" in out.getvalue()
            True
        """
        options = tuple(sorted(tqdm_kwargs.items()))
        return self._keep(Progress(self.plan, desc, total, options))

    def report(self: P, every: float = 10.0, to: Callable[[Stats], object] | None = None) -> P:
        """While the run lives, every ``every`` seconds, pass the figures of the stages up
        to this one (a ``tinypl.Stats``) to ``to``, or log them at INFO to the
        ``tinypl.stats`` logger when ``to`` is ``None``: the hook to send figures to a
        metrics system. A thread of its own reports; ``close()`` stops it. The steps
        below are timed from the start.

        Examples:
            >>> from tinypl import Pipe
            >>> seen = []
            >>> with iter(Pipe(range(3)).map(abs).report(60, seen.append)) as run:
            ...     print(list(run), seen)
            [0, 1, 2] []
        """
        return self._keep(Report(self.plan, every, to))
