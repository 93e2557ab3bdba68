"""What thread and process stages share when a worker fails."""

from __future__ import annotations

import contextlib
import copy
import threading
from typing import Any, NoReturn

from .._errors import WorkerError

__all__ = ["SPENT", "FailureHandling", "Replicas", "interpreter_exiting"]



def interpreter_exiting() -> bool:
    """Whether the interpreter is on its way out (atexit handlers, finalizers).

    The main thread counts as stopped once ``threading`` has finished its own shutdown,
    which comes before every atexit handler and ``weakref.finalize`` callback: nothing
    should then wait for a worker that is stuck in a call.
    """
    return not threading.main_thread().is_alive()


class _Spent(Exception):
    """Stands in for an error that was raised already (see ``ThreadCore.fail``)."""


SPENT = _Spent()


class Replicas:
    """Copies of a worker's error, one per reader that must raise it.

    The first reader raises the original. Keeping the original for later readers would
    leak: once raised, its traceback holds the reader's frame, which holds the stage,
    whose finalizer holds the core. So a copy is made *before* the first raise, with the
    worker's traceback only, and every later reader raises a fresh copy of that.
    """

    def __init__(self, error: BaseException) -> None:
        self._summary = f"{type(error).__name__}: {error}"
        self._traceback = error.__traceback__
        self._cause = error.__cause__
        try:
            self._template: BaseException | None = copy.copy(error)
        except Exception:
            self._template = None

    def make(self, where: str) -> BaseException:
        if self._template is not None:
            try:
                error = copy.copy(self._template)
            except Exception:
                pass
            else:
                error.__cause__ = self._cause
                return error.with_traceback(self._traceback)
        return WorkerError(f"{where} already failed with {self._summary}")


class FailureHandling:
    """Raising a worker's error to the readers of a stage, and stopping it the first time.

    The first reader raises the error itself (or a ``forward`` wrapper of it) after the
    stage and everything upstream are stopped; every later reader raises a replica.
    """

    name: str
    upstream: Any
    error: BaseException | None
    _raised: bool
    _replicas: Replicas | None
    _fail_lock: threading.Lock | threading.RLock
    #: The exception ``on_worker_error="forward"`` raises.
    forward_error: type[WorkerError] = WorkerError

    def signal(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def close_all(self) -> None:
        """Stop this stage and everything upstream (after an error or an interrupt)."""
        self.signal()
        # Upstream first: closing it wakes anything of ours that waits on it.
        self.upstream.close()
        self.shutdown()

    def close_in_background(self) -> None:
        """Stop everything at once and leave the waiting to a daemon thread, so that a
        ``KeyboardInterrupt`` reaches the user without waiting for stuck workers."""
        self.signal()
        closer = threading.Thread(target=self._close_quietly, name=f"{self.name}-closer")
        closer.daemon = True
        closer.start()

    def _close_quietly(self) -> None:
        # Errors of a close nobody waits for have nobody to go to.
        with contextlib.suppress(Exception):
            self.close_all()

    def raise_failure(self, mode: str, *, as_is: tuple[type[BaseException], ...] = ()) -> NoReturn:
        """Raise ``self.error`` as ``mode`` (``on_worker_error``) says; ``as_is`` errors
        are raised unchanged whatever the mode."""
        error = self.error
        assert error is not None
        with self._fail_lock:
            first, self._raised = not self._raised, True
            if first:
                self.error = SPENT
                self._replicas = Replicas(error)
        if not first:
            assert self._replicas is not None
            raise self._replicas.make(self.name)
        self.close_all()
        if isinstance(error, as_is) or (mode == "raise" and not isinstance(error, SystemExit)):
            raise error
        if mode in ("forward-and-print", "exit"):
            import logging  # here, not at the top: only a failure needs it

            log = logging.getLogger("tinypl")
            log.error("tinypl: a worker of %s failed", self.name, exc_info=error)
        raise self.forward_error(
            f"a worker of {self.name} failed: {type(error).__name__}: {error}"
        ) from error
