"""The counters a compiled fused run keeps for ``stage.stats()`` (issue 12).

A run's generated code adds to a plain ``list`` of numbers, ``_c``: only what cannot be
derived is counted, so the common path pays next to nothing. A map's items out are its
items in minus its errors; errors are counted on the exception path; a filter counts the
items it drops, a flatten the elements it yields. With ``timed``, the code also adds the
seconds each op's function took and the seconds spent pulling the upstream stage.

The generator form (one consumer) writes one list; the other forms may run in several
threads at once, so each thread writes a list of its own (no lost updates, no lock) and a
reader sums them. Reads are racy by design: each element is read atomically, and the
snapshot code keeps figures monotone.

Where the GIL holds, the untimed generator form keeps its per-item counts (a filter's
drops, a flatten's elements, items and markers in) in closure cells of the generated
function instead (``_f<slot> += 1``, see ``counter``): a list element costs the fastest
path about 5% where a cell costs 2%. A reader sums the cells with the lists; reading a
cell another thread writes is atomic only under the GIL, so a free-threaded build counts
in the list.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._ops import FlattenOp, Op

__all__ = ["Tally"]

#: Slots before the per-op ones: items in (when counted), markers in, seconds pulling
#: upstream, time the run ended (0.0 while it goes on), pulls timed.
IN, MARKERS, WAIT, END, WAITS = range(5)
_GLOBAL = 5
#: Per-op slots: a count (filter: dropped, flatten: yielded), seconds busy, markers
#: consumed (``on(..., consume=True)``), items timed.
_COUNT, _BUSY, _CONSUMED, _TIMED = range(4)
_PER_OP = 4
#: The longest untimed slice of the timed generator form (``_compile._sampling``), and
#: the seconds of work a slice aims at.
SLICE = 4096
SLICE_SECONDS = 0.002
#: Whether the generator form may count in closure cells (see the module's docstring).
CELLS: bool = getattr(sys, "_is_gil_enabled", lambda: True)()


def slot(index: int, kind: int) -> int:
    """The list index of ``kind`` (``_COUNT``, ``_BUSY``, ``_CONSUMED``) of op ``index``."""
    return _GLOBAL + _PER_OP * index + kind


class Tally:
    """The counts of one fused run: ``figures()`` sums what every thread counted.

    Examples:
        >>> from tinypl._ops import FilterOp, MapOp
        >>> tally = Tally((MapOp(abs), FilterOp(bool)), count_in=True)
        >>> counts = tally.new_list()
        >>> counts[slot(1, 0)] += 2  # the filter dropped two items
        >>> tally.figures()[slot(1, 0)]
        2
    """

    def __init__(self, ops: tuple[Op, ...], *, count_in: bool = False, timed: bool = False) -> None:
        self.ops = ops
        #: Whether the run counts the items it takes in (its upstream cannot tell).
        self.count_in = count_in
        #: Whether the generated code times each op (set before compiling).
        self.timed = timed
        self.size = _GLOBAL + _PER_OP * len(ops)
        self.lists: list[list[Any]] = []
        #: Closure cells counting for the generator form: slot -> cell, per function.
        self.cells: list[dict[int, Any]] = []
        self.errors = [0] * len(ops)
        self._local = threading.local()
        self._lock = threading.Lock()

    def new_list(self) -> list[Any]:
        """A fresh list of counters, registered for ``figures()``."""
        counts: list[Any] = [0] * self.size
        for index in range(len(self.ops)):
            counts[slot(index, _BUSY)] = 0.0
        counts[WAIT] = counts[END] = 0.0  # WAITS stays an int
        self.lists.append(counts)  # list.append is atomic: no lock needed
        return counts

    def thread_list(self) -> list[Any]:
        """This thread's list (made on its first call)."""
        counts = self.new_list()
        self._local.c = counts
        return counts

    @property
    def local(self) -> Any:
        """Where the per-thread forms find their list: ``local.c``."""
        return self._local

    def error(self, index: int) -> None:
        """An exception raised by op ``index`` (the exception path: a lock is fine)."""
        with self._lock:
            self.errors[index] += 1

    def take(self) -> tuple[list[int], list[float], int]:
        """This thread's count and sampled seconds per op since its last ``take`` (then
        reset), and the index of an op that raised (-1: none; the errors are reset)."""
        failed = -1
        with self._lock:
            for index, value in enumerate(self.errors):
                if value:
                    failed = index
                    self.errors[index] = 0
        size = len(self.ops)
        counts: list[Any] | None = getattr(self._local, "c", None)
        if counts is None:
            return [0] * size, [0.0] * size, failed
        taken = [int(counts[slot(i, _COUNT)]) for i in range(size)]
        samples = [float(counts[slot(i, _BUSY)]) for i in range(size)]
        for i in range(size):
            counts[slot(i, _COUNT)] = 0
            counts[slot(i, _BUSY)] = 0.0
        return taken, samples, failed

    def figures(self) -> list[Any]:
        """The sum of every thread's counters (``END``: the latest end seen)."""
        total: list[Any] = [0] * self.size
        for counts in list(self.lists):
            for index, value in enumerate(list(counts)):
                total[index] = max(total[index], value) if index == END else total[index] + value
        for cells in list(self.cells):
            for index, cell in cells.items():
                total[index] += cell.cell_contents
        return total

    def keep_cells(self, function: Callable[..., Any], slots: set[int]) -> None:
        """Sums the cells of ``function`` counting ``slots`` (``counter``) from now on."""
        if not slots:
            return
        names = function.__code__.co_freevars
        closure = function.__closure__ or ()
        cells = {slot: closure[names.index(cell_name(slot))] for slot in sorted(slots)}
        self.cells.append(cells)  # list.append is atomic: no lock needed


def spent(counts: list[Any]) -> float:
    """The seconds a list of counters holds (busy and pulling)."""
    busy = sum(counts[i] for i in range(_GLOBAL + _BUSY, len(counts), _PER_OP))
    return float(counts[WAIT] + busy)


def slice_after(seconds: float) -> int:
    """The items of the next untimed slice after a timed item that took ``seconds``.

    Examples:
        >>> slice_after(0.0), slice_after(1e-6), slice_after(0.01)
        (4096, 2000, 0)
    """
    if seconds <= 0:
        return SLICE
    return min(SLICE, int(SLICE_SECONDS / seconds))


def cell_name(index: int) -> str:
    """The closure cell that counts slot ``index`` (``counter``)."""
    return f"_f{index}"


def counter(code: Any, index: int) -> str:
    """The line adding one to slot ``index``: to the cell ``cell_name(index)`` when
    ``code.cells`` collects the slots counted so (the slot is added to it), else to the
    list ``_c``."""
    if code.cells is None:
        return f"_c[{index}] += 1"
    code.cells.add(index)
    return f"{cell_name(index)} += 1"


def cell_lines(cells: set[int]) -> tuple[list[str], list[str]]:
    """The lines binding ``cells`` in the enclosing function (at one indent) and those
    declaring them in the function that counts (at two)."""
    if not cells:
        return [], []
    names = [cell_name(index) for index in sorted(cells)]
    return [f"    {name} = 0" for name in names], [f"        nonlocal {', '.join(names)}"]


def count_line(code: Any, op: Op, index: int) -> None:
    """The counting line ``op`` needs right after its own lines (flatten: one per
    element); a filter in a counting run is written by ``filter_lines``."""
    if isinstance(op, FlattenOp):
        code.line(counter(code, slot(index, _COUNT)))


def filter_lines(code: Any, call: str, index: int) -> None:
    """A counting filter: a dropped item is counted and the loop goes on with the next
    (in a flatten, the next element), so the ops after it stay at the same depth."""
    if code.timing:
        code.line(f"_v = {call}")
        time_line(code, index)
        call = "_v"
    code.line(f"if not {call}:")
    code.line("    " + counter(code, slot(index, _COUNT)))
    code.line("    continue")


def time_line(code: Any, index: int) -> None:
    """Adds the seconds since ``_t`` to op ``index``'s busy time; ``_t`` moves on."""
    busy, timed = slot(index, _BUSY), slot(index, _TIMED)
    code.line(f"_u = _pc(); _c[{busy}] += _u - _t; _c[{timed}] += 1; _t = _u")


def consumed_line(code: Any, index: int) -> str:
    """Counts a marker that ``on(..., consume=True)`` op ``index`` consumed."""
    return counter(code, slot(index, _CONSUMED))


def head(
    code: Any,
    indent: int,
    *,
    shared: bool,
    counts: list[Any] | None = None,
    timed: bool | None = None,
) -> list[str]:
    """The lines binding ``_c`` (the counters: ``counts``, a new list, or with
    ``shared`` this thread's) and, when timed, the clock ``_pc`` and the time ``_t``
    the item's work starts from."""
    tally = code.tally
    if tally is None:
        return []
    pad = "    " * indent
    if shared:
        local, new = code.param(tally.local), code.param(tally.thread_list)
        lines = [f"try: _c = {local}.c", f"except AttributeError: _c = {new}()"]
    else:
        lines = [f"_c = {code.param(tally.new_list() if counts is None else counts)}"]
    if tally.timed if timed is None else timed:
        lines.append(f"_pc = {code.param(time.perf_counter)}; _t = _pc()")
    return [pad + line for line in lines]


def ended(code: Any) -> None:
    """In a counting run, notes when the run's source ended."""
    if code.tally is not None:
        code.line(f"_c[{END}] = {code.param(time.perf_counter)}()")


def count_error(
    tally: Tally,
    index: dict[int, int],
    fail: Callable[[BaseException, dict[str, Any]], None],
    error: BaseException,
    scope: dict[str, Any],
) -> None:
    traceback = error.__traceback__
    found = None if traceback is None else index.get(traceback.tb_lineno)
    if found is not None:
        tally.error(found)
    fail(error, scope)
