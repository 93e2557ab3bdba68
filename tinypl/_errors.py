"""Exceptions raised by tinypl."""

from __future__ import annotations

import functools
import reprlib

__all__ = [
    "NOTE_PREFIX",
    "MarkerNotAllowedError",
    "NotResumable",
    "ProcessWorkerError",
    "RemoteTraceback",
    "ThreadWorkerError",
    "TooManyErrors",
    "WorkerDied",
    "WorkerError",
    "add_item_note",
    "describe_item",
]


class WorkerError(Exception):
    """A worker thread or process failed; the original exception is the ``__cause__``.

    Examples:
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

    Examples:
        >>> import tinypl as pl
        >>> pipe = pl.Pipe([1, 2, 3]).insert_marker(pl.Marker("m")).partition(2)
        >>> try:
        ...     list(pipe)
        ... except pl.MarkerNotAllowedError as error:
        ...     print("partition" in str(error))
        True
    """


class ThreadWorkerError(WorkerError):
    """A worker thread failed (``on_worker_error="forward"``); ``__cause__`` is the error.

    Examples:
        >>> import tinypl as pl
        >>> def fail(x):
        ...     raise ValueError("bad")
        >>> stage = pl.thread.map([1], fail, workers=1, on_worker_error="forward")
        >>> try:
        ...     next(stage)
        ... except pl.thread.queue.WorkerException as error:
        ...     print(repr(error.__cause__))
        ValueError('bad')
    """


class ProcessWorkerError(WorkerError):
    """A worker process failed (``on_worker_error="forward"``); ``__cause__`` is the error.

    Examples:
        >>> import tinypl as pl
        >>> issubclass(pl.process.WorkerException, pl.WorkerError)
        True
    """


class WorkerDied(WorkerError):
    """A worker process ended without being asked to (killed, crashed, ``os._exit``).

    ``pid`` and ``exitcode`` say which worker and how. All three values are in ``args``,
    so the error copies and pickles like any other.

    Examples:
        >>> import pickle
        >>> import tinypl as pl
        >>> error = pickle.loads(pickle.dumps(pl.WorkerDied("worker 7 is gone", 7, -9)))
        >>> print(error, error.pid, error.exitcode)
        worker 7 is gone 7 -9
    """

    def __init__(self, message: str, pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message, pid, exitcode)
        self.pid = pid
        self.exitcode = exitcode

    def __str__(self) -> str:
        return str(self.args[0])


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, attached as its cause.

    Examples:
        >>> import copy
        >>> copy.copy(RemoteTraceback("Traceback ...")).text
        'Traceback ...'
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


@functools.cache
def _shortener() -> reprlib.Repr:
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 80
    return shortener


def describe_item(item: object) -> str:
    """A short repr of ``item`` for error notes (``reprlib``: long values are cut)."""
    try:
        return _shortener().repr(item)
    except Exception:  # a broken __repr__ must not hide the user's error
        return f"<{type(item).__name__} object>"


def add_item_note(error: BaseException, stage: str, item: object, position: int | None) -> None:
    """Name the stage and the item that raised ``error`` in a PEP 678 note.

    The error keeps its own type; a note is added once (the innermost stage wins), so an
    error that crosses several stages is not annotated again on the way out.

    Examples:
        >>> error = KeyError(3)
        >>> add_item_note(error, "map(load)", "a.jpg", 3)
        >>> add_item_note(error, "thread(2)", "a.jpg", 3)
        >>> error.__notes__
        ["tinypl: raised by map(load) on item 3 of the source: 'a.jpg'"]
    """
    notes = getattr(error, "__notes__", None)
    if notes and any(isinstance(n, str) and n.startswith(NOTE_PREFIX) for n in notes):
        return
    where = "" if position is None else f" {position} of the source"
    note = f"{NOTE_PREFIX}raised by {stage} on item{where}: {describe_item(item)}"
    try:
        error.add_note(note)  # type: ignore[attr-defined]  # Python >= 3.11
    except AttributeError:
        error.__notes__ = [*(notes or []), note]  # type: ignore[attr-defined]
    except TypeError:  # pragma: no cover - a non-list __notes__ set by the user
        pass


NOTE_PREFIX = "tinypl: "


class TooManyErrors(Exception):
    """More items failed in an ``ignore_errors`` scope than its ``max_failures`` allows.

    ``failures`` and ``seen`` count the items dropped and the items that entered the
    scope; the last error is the ``__cause__``. All three values are in ``args``.

    Examples:
        >>> import tinypl as pl
        >>> def check(x):
        ...     if x % 2:
        ...         raise ValueError(f"odd: {x}")
        ...     return x
        >>> pipe = pl.Pipe(range(10)).map(check).ignore_errors(max_failures=2, log=False)
        >>> try:
        ...     list(pipe)
        ... except pl.TooManyErrors as error:
        ...     print(error.failures, repr(error.__cause__))
        3 ValueError('odd: 5')
    """

    def __init__(self, message: str, failures: int = 0, seen: int = 0) -> None:
        super().__init__(message, failures, seen)
        self.failures = failures
        self.seen = seen

    def __str__(self) -> str:
        return str(self.args[0])


class NotResumable(Exception):
    """A run's state was asked for, but the run cannot be resumed exactly; the message
    names the source or the stage that prevents it (an iterator source, a thread stage
    without ``.order()``, a shuffle without a seed ...).

    Examples:
        >>> import tinypl as pl
        >>> run = iter(pl.Pipe(iter([1, 2, 3])).map(abs))
        >>> next(run)
        1
        >>> try:
        ...     run.state_dict()
        ... except pl.NotResumable as error:
        ...     print(error)  # doctest: +ELLIPSIS
        tinypl: this run cannot be resumed: the source Pipe(<list_iterator...) is an iterator...
    """
