"""Compiles a run of per-item ops (``tinypl._ops``) into the forms the backends run.

One Python function is generated per run (cached by its source text) with every op
inlined, so a fused ``map -> filter -> map`` costs one frame per item, less than nested
builtins. ``emit`` (a ``functools.singledispatch`` on the op type) writes an op's lines;
a new per-item op registers its emitter here. The forms:

- ``restarting``: a generator per run over a stream, restarted after an error (so an
  error does not end the stream), for a single consumer;
- ``stepper``: a ``__next__`` function for a stream several threads pull at once;
- ``group_function``: the items of one record of an ordered region;
- ``chunk_function``: a chunk of items in a worker process.

Every exception a stage function raises gets a note naming the op and the item
(``tinypl._errors.add_item_note``); which op failed is read from the line number the
traceback holds, so the path without errors pays nothing for it. Worker processes import
this module: keep it light (no numpy, cloudpickle or multiprocessing).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._errors import add_item_note
from .._marker import Marker
from .._ops import EachOp, FilterOp, FlattenOp, MapOp, OnOp, Op, is_async
from . import _tally
from ._tally import Tally

__all__ = [
    "Cursor",
    "chunk_function",
    "coroutine_function",
    "group_function",
    "restarting",
    "stepper",
    "stepping",
]

Ops = tuple[Op, ...]


class _Code:
    """The source of one generated function being written, with what each line does."""

    def __init__(self, ops: Ops) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.var = "x0"
        self.params: list[Any] = []
        #: Line number (in the generated text) -> (op label, name of the op's input).
        self.where: dict[int, tuple[str, str]] = {}
        #: Line number -> index of the op the line belongs to (counts errors).
        self.indexes: dict[int, int] = {}
        self.op: Op | None = None
        self._vars = 0
        self._ops = ops
        #: The drop form: called with each item error (and may raise to end the run).
        self.drop: Drop | None = None
        #: Called once per data item entering the ops (counts the items an
        #: ``ignore_errors`` scope has seen); its result is ``_k``.
        self.seen: Callable[[], int] | None = None
        #: Depths of the ``try:`` lines the drop form opens inside flatten loops.
        self.inner_trys: list[int] = []
        #: The counters of ``stage.stats()``, when the form keeps them (``_c`` in the code).
        self.tally: Tally | None = None
        #: The index of ``op`` in the run.
        self.op_index = 0
        #: Whether the lines being written time their ops.
        self.timing = False
        #: The counter slots kept in closure cells (``_tally.counter``); None: in ``_c``.
        self.cells: set[int] | None = None

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"_p{len(self.params) - 1}"

    def new_var(self) -> str:
        self._vars += 1
        self.var = f"x{self._vars}"
        return self.var

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)
        if self.op is not None:
            self.where[len(self.lines)] = (self.op.label, self.var)
            self.indexes[len(self.lines)] = self.op_index


@functools.singledispatch
def emit(op: Op, code: _Code) -> None:
    """Write what ``op`` does to the data item ``code.var``."""
    raise TypeError(f"tinypl: no compiler is registered for {type(op).__name__}")


@emit.register
def _(op: MapOp, code: _Code) -> None:
    code.line(f"{code.var} = {code.param(op.fn)}({code.var})")


@emit.register
def _(op: FilterOp, code: _Code) -> None:
    call = f"{code.param(op.fn)}({code.var})"
    if code.tally is not None:
        _tally.filter_lines(code, call, code.op_index)
        return
    code.line(f"if {call}:")
    code.depth += 1


@emit.register
def _(op: EachOp, code: _Code) -> None:
    code.line(f"{code.param(op.fn)}({code.var})")


@emit.register
def _(op: FlattenOp, code: _Code) -> None:
    inner = code.var
    elements = f"list({inner})" if op.eager else inner
    code.line(f"for {code.new_var()} in {elements}:")
    code.depth += 1
    if code.drop is not None:
        # The drop form drops a failing element, not the rest of the item with it.
        code.line("try:")
        code.depth += 1
        code.inner_trys.append(code.depth - 1)


@emit.register
def _(op: OnOp, code: _Code) -> None:
    pass  # data items pass untouched


@functools.singledispatch
def emit_marker(op: Op, code: _Code) -> bool:
    """Write what ``op`` does to a marker ``x0``; False when it drops the marker for sure."""
    return True  # markers pass every op but ``on`` untouched


@emit_marker.register
def _(op: OnOp, code: _Code) -> bool:
    fn = code.param(op.fn)
    if op.marker is None:
        code.line(f"{fn}()")
        if op.consume and code.tally is not None:
            code.line(_tally.consumed_line(code, code.op_index))
        return not op.consume
    code.line(f"if x0 is {code.param(op.marker)}:")
    code.line(f"    {fn}()")
    if op.consume:
        if code.tally is not None:
            code.line("    " + _tally.consumed_line(code, code.op_index))
        code.line("    continue")
    return True


def _body(code: _Code, sink: str, *, markers: bool, timed: bool | None = None) -> None:
    """Every op on ``x0`` (inside a loop over items), then ``sink`` of the result;
    ``timed`` (default: the tally's): with the lines timing each op and each pull."""
    tally = code.tally
    if tally is None or timed is None:
        timed = tally is not None and tally.timed
    if timed:
        code.line(f"_u = _pc(); _c[{_tally.WAIT}] += _u - _t; _c[{_tally.WAITS}] += 1; _t = _u")
    if markers:
        code.line("if x0.__class__ is _Marker:")
        code.depth += 1
        if tally is not None:
            code.line(_tally.counter(code, _tally.MARKERS))
        passes = True
        for index, op in enumerate(code._ops):
            code.op, code.op_index = op, index
            passes = emit_marker(op, code) and passes
        code.op = None
        if passes:
            code.line(sink.format("x0"))
        code.line("continue")
        code.depth -= 1
    _data(code, sink, timed=timed)


def _data(code: _Code, sink: str, *, timed: bool) -> None:
    """The ops on the data item ``x0``, then ``sink``; ``timed``: with time lines."""
    tally = code.tally
    code.timing = timed
    code.var = "x0"
    depth = code.depth
    if tally is not None and tally.count_in:
        code.line(_tally.counter(code, _tally.IN))
    if code.seen is not None:
        code.line(f"_k = {code.param(code.seen)}()")
    for index, op in enumerate(code._ops):
        code.op, code.op_index = op, index
        emit(op, code)
        if tally is not None:
            _tally.count_line(code, op, code.op_index)
            if timed and isinstance(op, (MapOp, EachOp)):
                _tally.time_line(code, code.op_index)
    last = code.lines[-1].strip()
    if isinstance(code.op, MapOp) and last.startswith(f"{code.var} = ") and not timed:
        code.lines[-1] = "    " * code.depth + sink.format(last.partition(" = ")[2])
    else:
        code.line(sink.format(code.var))
    if timed and sink.startswith("yield"):
        code.line("_t = _pc()")  # the consumer's time between items is not the run's
    code.op = None
    for inner in reversed(code.inner_trys):  # closes the trys of the drop form's flattens
        code.depth = inner
        code.line("except Exception as _e:")
        code.line("    _fail(_e, locals())")
        code.line("    continue")
    code.inner_trys.clear()
    code.depth = depth
    code.timing = False


def _except(code: _Code, *, extra: tuple[str, ...] = ()) -> None:
    code.line("except Exception as _e:")
    # The drop form (ignore_errors) reports the error and goes on with the next item.
    last = "continue" if code.drop is not None else "raise"
    for text in (*extra, "_fail(_e, locals())", last):
        code.line("    " + text)


@functools.lru_cache(maxsize=256)
def _build(text: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"_Marker": Marker}
    exec(compile(text, "<tinypl fused run>", "exec"), namespace)
    factory: Callable[..., Any] = namespace["_factory"]
    return factory


def _finish(code: _Code, header: list[str]) -> Callable[..., Any]:
    params = ", ".join(["_fail", *(f"_p{i}" for i in range(len(code.params)))])
    lines = [f"def _factory({params}):", *header, *code.lines]
    offset = len(header) + 1
    where = {number + offset: what for number, what in code.where.items()}
    text = "\n".join(lines) + "\n"
    fail: Callable[..., None] = functools.partial(_note, where)
    if code.drop is not None:
        fail = functools.partial(_note_and_drop, where, code.drop)
    if code.tally is not None:
        index = {number + offset: i for number, i in code.indexes.items()}
        fail = functools.partial(_tally.count_error, code.tally, index, fail)
    return _build(text)(fail, *code.params)  # type: ignore[no-any-return]


def _note(where: dict[int, tuple[str, str]], error: BaseException, scope: dict[str, Any]) -> None:
    traceback = error.__traceback__
    found = None if traceback is None else where.get(traceback.tb_lineno)
    if found is not None:
        label, var = found
        add_item_note(error, label, scope.get(var), scope.get("_n"))


#: ``drop(error, label, item, position)``: an item whose ops raised ``error`` is dropped.
Drop = Callable[[BaseException, str, Any, "int | None"], None]


def _note_and_drop(
    where: dict[int, tuple[str, str]], drop: Drop, error: BaseException, scope: dict[str, Any]
) -> None:
    _note(where, error, scope)
    traceback = error.__traceback__
    found = None if traceback is None else where.get(traceback.tb_lineno)
    label, item = ("?", None) if found is None else (found[0], scope.get(found[1]))
    position = scope.get("_n")
    if position is None and "_k" in scope:
        position = scope["_k"] - 1  # counted from 1 by ``seen``
    drop(error, label, item, position)


def _drop_form(
    code: _Code, drop: Drop | None, seen: Callable[[], int] | None, tally: Tally | None = None
) -> _Code:
    code.drop = drop
    code.seen = seen if drop is not None else None
    code.tally = tally
    return code


class Cursor:
    """Whether a restarted run's source has ended."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


_GENERATOR_HEADER = (
    "    def _run(_source, _cursor):",
    "        for x0 in _source:",
    "            try:",
)


def _generator(
    ops: Ops,
    *,
    markers: bool,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
    counts: list[Any] | None = None,
    timed: bool = False,
) -> Callable[..., Iterator[Any]]:
    """The generator form; with ``counts`` (a list of ``tally``), a *slice* form: the end
    of its loop is the end of a slice of the source, not of the stream."""
    code = _drop_form(_Code(ops), drop, seen, tally)
    if tally is not None and not timed and _tally.CELLS:
        code.cells = set()
    code.depth = 4
    _body(code, "yield {}", markers=markers, timed=timed)
    code.depth = 3
    code.line("except StopIteration:  # a user function's: the stream ends, as for map")
    code.depth = 4
    code.line("_cursor.done = True")
    _tally.ended(code)
    code.line("return")
    code.depth = 3
    _except(code)
    if counts is None:
        code.depth = 2
        code.line("_cursor.done = True")
        _tally.ended(code)
    code.depth = 1
    code.line("return _run")
    header = list(_GENERATOR_HEADER)
    cells = code.cells or set()
    bind, declare = _tally.cell_lines(cells)
    header[1:1] = declare + _tally.head(code, 2, shared=False, counts=counts, timed=timed)
    run = _finish(code, bind + header)
    if tally is not None:
        tally.keep_cells(run, cells)
    return run


def restarting(
    ops: Ops,
    source: Iterator[Any],
    *,
    markers: bool,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
) -> Iterator[Iterator[Any]]:
    """Generators applying ``ops`` to ``source``, for ``itertools.chain.from_iterable``:
    after an error a fresh one goes on with the next item.

    Notes name the item but not its position: counting items would cost this, the
    fastest path, about 15% (positions come from the numbering of ordered regions).
    With ``drop`` (the drop form) an item whose ops raise an ``Exception`` is passed to
    ``drop`` instead and the run goes on; ``seen`` is called once per data item.
    ``tally``: where the run counts for ``stage.stats()``; a timed tally is served by
    ``_sampling``."""
    if tally is not None and tally.timed:
        yield from _sampling(ops, source, markers=markers, drop=drop, seen=seen, tally=tally)
        return
    run = _generator(ops, markers=markers, drop=drop, seen=seen, tally=tally)
    cursor = Cursor()
    while not cursor.done:
        yield run(source, cursor)


def _sampling(
    ops: Ops,
    source: Iterator[Any],
    *,
    markers: bool,
    drop: Drop | None,
    seen: Callable[[], int] | None,
    tally: Tally,
) -> Iterator[Iterator[Any]]:
    """The timed generator form: untimed generators over slices of the source
    (``islice``: no Python code per item for the slicing), each followed by a timed
    generator of one item. Timing every item would cost the fastest path several times
    what its ops cost; the slices are as long as about two milliseconds of items (at most
    ``_tally.SLICE``), so slow steps are timed often and fast ones cost next to nothing.
    """
    counts = tally.new_list()
    form = functools.partial(
        _generator, ops, markers=markers, drop=drop, seen=seen, tally=tally, counts=counts
    )
    plain, timed = form(timed=False), form(timed=True)
    cursor = Cursor()
    size = 0  # the first item is timed
    while not cursor.done:
        if size:
            yield plain(itertools.islice(source, size), cursor)
            if cursor.done:
                return
        pulls, spent = counts[_tally.WAITS], _tally.spent(counts)
        yield timed(itertools.islice(source, 1), cursor)
        if counts[_tally.WAITS] == pulls and not cursor.done:  # the source has ended
            cursor.done = True
            counts[_tally.END] = time.perf_counter()
        size = _tally.slice_after(_tally.spent(counts) - spent)


def stepper(
    ops: Ops,
    pull: Callable[[], Any],
    *,
    markers: bool,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
) -> Callable[[], Any]:
    """A function returning the next result of ``ops`` over ``pull()`` (map, filter and
    each only), safe to call from several threads at once (``drop``, ``tally``: as
    ``restarting``; each thread counts in a list of its own)."""
    head = ["def _make(_pull):", "    def _step(_self=None):", "        while True:"]
    head += ["            x0 = _pull()", "            try:"]
    tail = ["    return _step", "return _make"]
    make = _function(
        ops, head, "return {}", markers=markers, tail=tail, drop=drop, seen=seen, tally=tally
    )
    step: Callable[[], Any] = make(pull)
    return step


def _function(
    ops: Ops,
    head: list[str],
    sink: str,
    *,
    markers: bool,
    tail: list[str],
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
) -> Callable[..., Any]:
    """The factory of a function whose ``head`` ends in a ``try:`` inside a loop over
    items ``x0``: the ops and ``sink`` go inside the try, ``tail`` after the loop; the
    counters are bound right after the line opening the innermost ``def``."""
    code = _drop_form(_Code(ops), drop, seen, tally)
    code.lines = ["    " + line for line in head]
    inner = max(i for i, line in enumerate(head) if line.lstrip().startswith("def "))
    code.lines[inner + 1 : inner + 1] = _tally.head(code, inner + 2, shared=True)
    code.depth = head[-1].count("    ") + 2
    _body(code, sink, markers=markers)
    code.depth -= 1
    _except(code)
    code.depth = 1
    for line in tail:
        code.line(line)
    return _finish(code, [])


class _Stepping(Iterator[Any]):
    __slots__ = ()


def stepping(step: Callable[..., Any]) -> Iterator[Any]:
    """An iterator whose ``__next__`` is ``step`` (from ``stepper``): several threads may
    pull it at once (``iter(step, sentinel)`` may drop a result when one thread ends it)."""
    kind = type("FusedSteps", (_Stepping,), {"__slots__": (), "__next__": step})
    steps: Iterator[Any] = kind()
    return steps


def _list_function(
    ops: Ops,
    *,
    markers: bool,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
) -> Callable[..., list[Any]]:
    head = ["def _apply(_items, _n=None):", "    _out = []", "    _append = _out.append"]
    head += ["    for x0 in _items:", "        try:"]
    tail = ["    return _out", "return _apply"]
    return _function(
        ops, head, "_append({})", markers=markers, tail=tail, drop=drop, seen=seen, tally=tally
    )


def counting_forms(
    ops: Ops, *, drop: Drop | None, tally: Tally
) -> tuple[Callable[..., list[Any]], Callable[..., list[Any]]]:
    """Two list forms of ``ops`` counting into ``tally``: a plain one, and one that also
    times each op (for the sampled item of a chunk)."""
    tally.timed = False
    plain = _list_function(ops, markers=False, drop=drop, tally=tally)
    tally.timed = True
    timed = _list_function(ops, markers=False, drop=drop, tally=tally)
    return plain, timed


def group_function(
    ops: Ops,
    *,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    tally: Tally | None = None,
) -> Callable[[list[Any], int | None], list[Any]]:
    """``apply(items, n)``: ``ops`` applied to the items of one record of an ordered
    region (markers among them); ``n`` is the record's source position, if known
    (``drop``, ``tally``: as ``stepper``)."""
    return _list_function(ops, markers=True, drop=drop, seen=seen, tally=tally)


def chunk_function(
    ops: Ops, tagged: bool, *, drop: Drop | None = None
) -> Callable[[list[Any]], list[Any]]:
    """What a worker does with one chunk: apply ``ops`` to its items, or, in an ordered
    region, to the item list of each ``(n, items)`` record. Markers never enter a worker.
    With ``drop``, an item whose ops raise is reported to it and left out."""
    apply = _list_function(ops, markers=False, drop=drop)
    if not tagged:
        return apply
    return lambda records: [(n, apply(items, n)) for n, items in records]


# -- the asyncio form (issue 16) ---------------------------------------------------------


def _awaitable(value: Any) -> bool:
    return hasattr(value.__class__, "__await__")


def _emit_awaiting(op: Op, code: _Code, awaitable: str, timed: str | None) -> None:
    """What ``op`` does to ``code.var`` inside a coroutine: an ``async def`` function is
    awaited; a plain one is called inline, and what it returns is awaited when awaitable
    (``.map(lambda u: fetch(session, u))``)."""
    fn = getattr(op, "fn", None)
    if fn is None or not isinstance(op, (MapOp, FilterOp, EachOp)):
        emit(op, code)  # flatten: the same as everywhere
        return
    var = code.var
    call = f"{code.param(fn)}({var})"
    target = var if isinstance(op, MapOp) else "_w"
    # With a timeout, each await gets what is left of the item's time (``_d``: its start).
    wait = "await " if timed is None else f"await {timed}(_d, "
    end = "" if timed is None else ")"
    if is_async(fn):
        code.line(f"{target} = {wait}{call}{end}")
    else:
        code.line(f"{target} = {call}")
        code.line(f"if {awaitable}({target}):")
        code.line(f"    {target} = {wait}{target}{end}")
    if isinstance(op, FilterOp):
        code.line("if _w:")
        code.depth += 1


def coroutine_function(
    ops: Ops,
    *,
    drop: Drop | None = None,
    seen: Callable[[], int] | None = None,
    timed: Callable[..., Any] | None = None,
    clock: Callable[[], float] | None = None,
) -> Callable[[Any, int | None], Any]:
    """``await apply(items, n)``: the list of what ``ops`` make of ``items`` (markers pass
    untouched), awaiting what is async; ``n`` is the items' source position, if known.

    ``drop``/``seen``: the drop form, as ``restarting``. ``timed(start, awaitable)``
    awaits with what is left of an item's time, ``start`` being ``clock()`` when the item
    entered (a timeout)."""
    code = _drop_form(_Code(ops), drop, seen)
    awaitable = code.param(_awaitable)
    timer = None if timed is None else code.param(timed)
    code.lines = [
        "    async def _apply(_items, _n=None):",
        "        _out = []",
        "        _append = _out.append",
        "        for x0 in _items:",
        "            try:",
        "                if x0.__class__ is _Marker:",
        "                    _append(x0)",
        "                    continue",
    ]
    code.depth = 4
    if code.seen is not None:
        code.line(f"_k = {code.param(code.seen)}()")
    if timer is not None:
        assert clock is not None
        code.line(f"_d = {code.param(clock)}()")
    for op in ops:
        code.op = op
        _emit_awaiting(op, code, awaitable, timer)
    code.op = None
    code.line(f"_append({code.var})")
    code.depth = 3
    _except(code)
    code.depth = 2
    code.line("return _out")
    code.depth = 1
    code.line("return _apply")
    return _finish(code, [])
