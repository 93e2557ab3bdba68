"""Replacing a worker process and sending again what it held (timeout, restart).

Both faults end the same way: the worker is gone (killed for an item past its timeout,
or by the OS), a new one takes its place and index, and the chunks the old one held are
sent to it again, except the item at fault. The feeder keeps what each worker holds
(``Feeder.keep``) and each worker notes in shared memory the item it runs and since
when (``WorkerSet.progress``), so the item at fault is known by its chunk and position.

- timeout: the item is an error of the stage (``TimeoutError``); with an
  ``ignore_errors`` below, it is dropped and the run goes on; otherwise the run fails
  (and the worker is only killed).
- restart: the item the worker ran when it died is sent again once, alone in a chunk;
  if it kills that worker too, ``WorkerDied`` names it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, NoReturn, Protocol

from .. import _plan as plan
from .._errors import TooManyErrors, WorkerDied, add_item_note, describe_item
from ._feeder import Feeder
from ._skip import Budget
from ._workerset import WorkerSet


class ProcessCore(Protocol):
    """What the replacer uses of a process stage's core (``_processes.ProcessCore``)."""

    pool: WorkerSet
    feeder: Feeder
    workers: int
    stage_name: str
    budget: Budget | None
    node: plan.RunInProcesses
    error: BaseException | None
    ready: deque[Any]

    def fail(self) -> NoReturn: ...

    def handle(self, index: int, data: bytes) -> None: ...

__all__ = ["Replacer"]

#: Deaths in a row with no item running (so none to blame) before the run fails.
MAX_BLAMELESS = 3

Chunks = list[tuple[int, list[Any]]]


class Replacer:
    """Replaces the workers of one process stage (used by its reader only)."""

    def __init__(self, core: ProcessCore) -> None:
        self.core = core
        #: Chunk ids of items sent again alone after they were running in a dead worker.
        self.retried: set[int] = set()
        self._blameless = 0

    # -- what a worker runs --------------------------------------------------------------

    def _running(self, index: int) -> tuple[int, int, float] | None:
        """(chunk id, position, start) of the item worker ``index`` runs, if any, when
        that chunk is still held (not answered yet)."""
        progress = self.core.pool.progress
        slot = 3 * index
        start = progress[slot + 2]
        chunk_id, position = int(progress[slot]), int(progress[slot + 1])
        held = self.core.feeder.holding(index)
        if not start or not held or held[0][0] != chunk_id:
            return None
        if position >= len(held[0][1]):
            return None
        return chunk_id, position, start

    def _item(self, index: int, chunk_id: int, position: int) -> tuple[Any, int | None]:
        """The item (and its source position in an ordered region) at fault."""
        for held_id, chunk in self.core.feeder.holding(index):
            if held_id == chunk_id:
                record = chunk[position]
                if self.core.feeder.tagged:
                    return record, record[0]
                return record, None
        raise AssertionError("the chunk is held")

    def _fault(self, index: int, chunk_id: int, position: int) -> tuple[Any, int | None]:
        """The item at fault as error messages show it, and its source position."""
        record, n = self._item(index, chunk_id, position)
        if n is None:
            return record, None
        items = record[1]  # an ordered record: (n, the items of source item n)
        return (items[0] if len(items) == 1 else items), n

    # -- timeouts ------------------------------------------------------------------------

    def check_timeouts(self, timeout: float) -> None:
        """Handle every item that has run longer than ``timeout`` seconds."""
        now = time.monotonic()
        for index in range(self.core.workers):
            running = self._running(index)
            if running is not None and now - running[2] > timeout:
                self._timed_out(index, running[0], running[1], timeout)

    def _timed_out(self, index: int, chunk_id: int, position: int, timeout: float) -> None:
        core = self.core
        item, n = self._fault(index, chunk_id, position)
        pid = core.pool.processes[index].pid
        error = TimeoutError(
            f"{core.stage_name}: an item took more than {timeout:g} s; worker process"
            f" {pid}, which ran it, was killed"
        )
        add_item_note(error, core.stage_name, item, n)
        budget = core.budget
        if budget is None:
            core.pool.kill(index)  # it would not stop for the shutdown's stop message
            core.error = error
            core.fail()
        self._replace(index, (chunk_id, position), alone=False)
        if n is not None:
            core.ready.append((n, []))  # the load waits for every number
        assert core.node.skip is not None
        if core.node.skip.first:
            budget.add_seen(1)
        try:
            budget.dropped(error, core.stage_name, describe_item(item), n)
        except TooManyErrors as too_many:
            core.error = too_many
            core.fail()

    # -- deaths --------------------------------------------------------------------------

    def died(self, index: int) -> None:
        """Worker ``index`` ended on its own (``restart=True``): replace it."""
        core = self.core
        running = self._running(index)
        death = core.pool.died(index)
        if running is None:
            self._blameless += 1
            if self._blameless > MAX_BLAMELESS:
                core.error = death
                core.fail()
            self._replace(index, None, alone=False)
            return
        self._blameless = 0
        chunk_id, position, _ = running
        if chunk_id in self.retried:
            item, _ = self._fault(index, chunk_id, position)
            core.pool.kill(index)
            core.error = WorkerDied(
                f"{death}, running an item that had killed a worker before (so it is not"
                f" sent again): {describe_item(item)}",
                death.pid,
                death.exitcode,
            )
            core.fail()
        self._replace(index, (chunk_id, position), alone=True)

    # -- replacing -----------------------------------------------------------------------

    def _replace(self, index: int, fault: tuple[int, int] | None, *, alone: bool) -> None:
        """Kill worker ``index``, take in the results it finished, start a new one and
        send it what the old one held; the ``fault`` item (chunk id, position) is left
        out, or with ``alone`` sent again in a chunk of its own."""
        core = self.core
        core.pool.kill(index)
        self._drain(index)

        def replace() -> Chunks:
            core.pool.respawn(index)
            return self._resent(core.feeder.holding(index), fault, alone)

        core.feeder.resend(index, replace, lambda: self._read_others(index))

    def _read_others(self, index: int) -> None:
        """Take in the results the other workers have sent (see ``Feeder.resend``)."""
        pool = self.core.pool
        for other, connection in enumerate(pool.results):
            if other == index or other in pool.replacing:
                continue
            try:
                if not connection.poll(0):
                    continue
                data = connection.recv_bytes()
            except (EOFError, OSError):
                continue  # a death: its sentinel tells the reader next
            self.core.handle(other, data)

    def _drain(self, index: int) -> None:
        """Results the dead worker sent before it died are whole: take them in."""
        connection = self.core.pool.results[index]
        while True:
            try:
                if not connection.poll(0):
                    return
                data = connection.recv_bytes()
            except (EOFError, OSError):
                return  # the rest of a message cut short by the death
            self.core.handle(index, data)

    def _resent(self, held: Chunks, fault: tuple[int, int] | None, alone: bool) -> Chunks:
        out: Chunks = []
        for chunk_id, chunk in held:
            if fault is None or chunk_id != fault[0]:
                out.append((chunk_id, chunk))
                continue
            position = fault[1]
            rest = chunk[:position] + chunk[position + 1 :]
            if rest:
                out.append((chunk_id, rest))
            if alone:
                retry_id = self.core.feeder.new_id()
                self.retried.add(retry_id)
                out.append((retry_id, [chunk[position]]))
        return out
