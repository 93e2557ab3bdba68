"""Control messages: what travels on an item queue of a thread or process stage besides
items, so that it arrives in order with them and nothing needs polling."""

from __future__ import annotations

__all__ = ["DONE", "END", "FAILED", "SIGNAL_CHECK", "Control", "failure"]

#: Seconds a reader blocks at most before it returns to Python code. A signal that
#: arrives just before a blocking wait starts does not interrupt it (the C-level handler
#: only sets a flag), so without a bound a Ctrl-C could wait for the next item.
SIGNAL_CHECK = 0.1


class Control:
    """A message that is not an item; ``error`` is set on a failure report."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


#: One producer (a worker thread, or the process feeder) has finished.
DONE = Control()
#: Every producer has finished; re-queued for every other reader.
END = Control()
#: Wakes a reader so that it sees the stage's recorded error.
FAILED = Control()


def failure(error: BaseException) -> Control:
    """A report of ``error`` raised by a producer."""
    return Control(error)
