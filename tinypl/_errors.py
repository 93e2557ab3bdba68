"""Exceptions raised by tinypl."""

from __future__ import annotations

__all__ = ["MarkerNotAllowedError", "WorkerError"]


class WorkerError(Exception):
    """A worker thread or process failed; the original exception is the ``__cause__``.

    Example:
        >>> import tinypl as pl
        >>> def boom(x):
        ...     raise KeyError(x)
        >>> stage = pl.thread.map(range(3), boom, workers=1, on_worker_error="forward")
        >>> try:
        ...     next(stage)
        ... except pl.WorkerError as error:
        ...     print(type(error.__cause__).__name__)
        KeyError
    """


class MarkerNotAllowedError(ValueError):
    """A marker reached a stage that was not told what to do with markers.

    Example:
        >>> import tinypl as pl
        >>> pipe = pl.Pipe([1, 2, 3]).insert_marker(pl.Marker("m")).partition(2)
        >>> try:
        ...     list(pipe)
        ... except pl.MarkerNotAllowedError as error:
        ...     print("partition" in str(error))
        True
    """
