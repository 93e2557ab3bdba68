"""The code an executor stage submits: it runs one chunk wherever the executor puts it.

Kept small and importable on its own: a Dask worker, an MPI rank or a pool process
imports this module (by reference: ``tinypl`` must be installed where the work runs)
and calls ``run_chunk`` for each chunk. The stage functions arrive with every chunk as
cloudpickle bytes; they are unpickled and compiled once per worker process, cached
under a digest of those bytes, so later chunks of the same run only pay a look-up.
A user function's exception travels back packed (``_worker.pack_error``), so that it
reaches the consumer with its own type and the remote traceback, whatever the engine
does with exceptions.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .._errors import describe_item
from ._stepfigures import StepApply, failed_step, ok_answer
from ._worker import pack_error

__all__ = [
    "CACHE_SIZE",
    "MISSING",
    "Program",
    "compiled_count",
    "received_count",
    "record_drop",
    "run_chunk",
]

#: Compiled runs kept per worker process (one per pipeline run that used it lately).
CACHE_SIZE = 64

Apply = Callable[[list[Any]], list[Any]]
#: What a chunk carries: ``(digest, cloudpickled ops, tagged, skip)``, or, for an executor
#: running in this very process (a thread pool), the compiled function itself. Large
#: ops travel as ``(digest, None, tagged)``: a worker that has not compiled them yet
#: answers ``MISSING`` and the chunk is submitted again with the bytes.
Program = tuple[bytes, bytes | None, bool, bool] | Apply
MISSING = ("missing",)

_cache: OrderedDict[tuple[bytes, bool, bool], Apply] = OrderedDict()
#: The items dropped by the chunk this thread runs (the drop form, in ignore_errors).
_dropped = threading.local()


def record_drop(error: BaseException, label: str, item: Any, position: int | None) -> None:
    """The ``drop`` of a compiled run in an ignore_errors scope: the item is reported with
    the chunk's results, as the parent's budget records it (``Budget.dropped``).

    Examples:
        >>> from tinypl._ops import MapOp
        >>> from tinypl._runtime._compile import chunk_function
        >>> def inverse(x):
        ...     return 1 // x
        >>> apply = chunk_function((MapOp(inverse),), False, drop=record_drop)
        >>> answer = run_chunk(apply, [1, 0, 2])
        >>> answer[3], [(label, item) for label, item, _, _ in answer[4]]
        ([1, 0], [('map(inverse)', '0')])
    """
    _dropped.items.append((label, describe_item(item), position, pack_error(error)))
_lock = threading.Lock()
_compiles = 0
_received = 0


def compiled_count() -> int:
    """How many runs this process has compiled (a test reads it on the workers).

    Examples:
        >>> compiled_count() >= 0
        True
    """
    return _compiles


def received_count() -> int:
    """How many chunks reached this process with the bytes of their stage functions.

    Examples:
        >>> received_count() >= 0
        True
    """
    return _received


def _compiled(program: Program) -> Apply | None:
    if callable(program):
        return program
    digest, payload, tagged, skip = program
    if payload is not None:
        global _received
        _received += 1  # a test's figure: a lost increment under threads does no harm
    key = (digest, tagged, skip)
    with _lock:
        apply = _cache.get(key)
        if apply is not None:
            _cache.move_to_end(key)
            return apply
    if payload is None:
        return None
    import cloudpickle

    try:
        ops = cloudpickle.loads(payload)
    except Exception as error:
        raise TypeError(
            "executor: the stage functions cannot be unpickled on the executor's worker"
            f" (is every module they need importable there?): {type(error).__name__}: {error}"
        ) from error
    apply = StepApply(ops, tagged, record_drop if skip else None)
    global _compiles
    with _lock:
        _compiles += 1
        _cache[key] = apply
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return apply


def run_chunk(program: Program, chunk: list[Any]) -> tuple[Any, ...]:
    """``("ok", seconds, count, results, dropped, steps)`` for one chunk (``dropped``: the
    items an ignore_errors scope dropped; ``steps``: the per-step figures of a
    ``StepApply``, else ``None``), ``("error", packed, step)``, or
    ``MISSING`` (the program came without its bytes and is not compiled here).

    Examples:
        >>> from tinypl._ops import MapOp
        >>> from tinypl._runtime._compile import chunk_function
        >>> run_chunk(chunk_function((MapOp(abs),), False), [-1, 2])[2:4]
        (2, [1, 2])
    """
    dropped: list[Any] = []
    _dropped.items = dropped
    apply: Callable[..., Any] | None = None
    try:
        apply = _compiled(program)
        if apply is None:
            return MISSING
        start = time.perf_counter()
        out = apply(chunk)
    except BaseException as error:
        return ("error", pack_error(error), -1 if apply is None else failed_step(apply))
    finally:
        _dropped.items = None
    return ok_answer(apply, start, len(chunk), out, dropped)
