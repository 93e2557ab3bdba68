"""Module-level forms of the insight stages (``pl.progress``, ``pl.report``), as in
``_compat``: the fluent method applied to ``Pipe(pipe)`` and materialized at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._pipe import Pipe
from ._runtime import Stage
from ._stats import Stats

__all__ = ["COUNTERPARTS", "progress_", "report_"]

T = TypeVar("T")

#: The public name of each function here and the ``Pipe`` method it is built on.
COUNTERPARTS: dict[str, str] = {"progress": "progress", "report": "report"}


def progress_(
    pipe: Iterable[T], desc: str | None = None, total: int | None = None, **tqdm_kwargs: Any
) -> Stage[T]:
    """Draw a tqdm progress bar of the items that pass (see ``Pipe.progress``).

    Examples:
        >>> import io
        >>> import tinypl as pl
        >>> out = io.StringIO()
        >>> list(pl.progress(pl.map(range(2), abs), "n", total=2, file=out))
        [0, 1]
        >>> "2/2" in out.getvalue()
        True
    """
    return iter(Pipe(pipe).progress(desc, total, **tqdm_kwargs))


def report_(
    pipe: Iterable[T], every: float = 10.0, to: Callable[[Stats], object] | None = None
) -> Stage[T]:
    """Pass the run's figures to ``to`` every ``every`` seconds (see ``Pipe.report``).

    Examples:
        >>> import tinypl as pl
        >>> with pl.report(range(3), every=60, to=print) as run:
        ...     print(list(run))
        [0, 1, 2]
    """
    return iter(Pipe(pipe).report(every, to))
