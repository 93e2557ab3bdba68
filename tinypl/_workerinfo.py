"""Who is running a stage function: ``pl.worker_info()`` and worker seeding.

Worker processes import this module: it stays light (no numpy, no multiprocessing).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Literal

import attrs

__all__ = ["WorkerInfo", "draw_seed", "entered", "seed_globals", "worker_info"]

#: numpy's legacy global generator takes seeds below 2**32.
SEED_MODULUS = 1 << 32


@attrs.frozen(slots=True)
class WorkerInfo:
    """The worker that runs the current stage function (``pl.worker_info()``).

    ``id`` runs from 0 to ``count - 1``; ``kind`` is ``"thread"`` or ``"process"``;
    ``seed`` is the run's base seed plus ``id``.

    Examples:
        >>> info = WorkerInfo(1, 4, "process", 43)
        >>> info.id, info.count, info.kind, info.seed
        (1, 4, 'process', 43)
    """

    id: int
    count: int
    kind: Literal["thread", "process"]
    seed: int


_local = threading.local()
#: The worker info of this whole process, when it is a worker process.
_process: list[WorkerInfo | None] = [None]


def worker_info() -> WorkerInfo | None:
    """The ``WorkerInfo`` of the thread or process worker running this call, or ``None``
    outside a worker.

    Examples:
        >>> import tinypl as pl
        >>> print(pl.worker_info())
        None
        >>> infos = pl.Pipe(range(4)).map(lambda _: pl.worker_info()).thread(2)
        >>> sorted({(i.id, i.kind) for i in infos}) <= [(0, "thread"), (1, "thread")]
        True
    """
    info: WorkerInfo | None = getattr(_local, "info", None)
    return info if info is not None else _process[0]


def entered(info: WorkerInfo | None) -> None:
    """Mark the calling thread as the worker ``info`` (``None``: no worker)."""
    _local.info = info


def entered_process(info: WorkerInfo) -> None:
    """Mark this whole process, and its main thread, as the worker ``info``."""
    _process[0] = info
    _local.info = info  # a forked child inherits the forking thread's locals: override


def draw_seed() -> int:
    """A base seed for one run (random, so runs differ), leaving room for worker ids.

    Examples:
        >>> 0 <= draw_seed() < 2**63
        True
    """
    return random.SystemRandom().randrange(1 << 62)


def seed_globals(seed: int) -> None:
    """Seed ``random`` and numpy's legacy global generator: at once if numpy is loaded,
    else the moment ``numpy.random`` is first imported.

    Importing numpy here would cost every worker of every run 0.1-0.2 s (most of a
    process stage's start-up once measured), for a generator most stage functions
    never touch.

    Examples:
        >>> seed_globals(3)
        >>> first = random.random()
        >>> seed_globals(3)
        >>> random.random() == first
        True
    """
    random.seed(seed)
    _hook.seed = seed % SEED_MODULUS
    legacy = sys.modules.get("numpy.random")
    if legacy is not None and hasattr(legacy, "seed"):
        legacy.seed(_hook.seed)
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


class _SeedOnImport:
    """Seeds ``numpy.random`` right after the module is first executed.

    A meta path finder by protocol (``find_spec``): subclassing ``importlib.abc``'s
    would import ``importlib.resources`` and ``pathlib`` in every worker (5 ms from
    bytecode, more from source) for a class that only declares the method.
    """

    seed = 0

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "numpy.random":
            return None
        sys.meta_path.remove(self)  # the real finders locate the module
        spec = importlib.util.find_spec(name)
        loader = None if spec is None else spec.loader
        if spec is None or loader is None:
            return None
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            module.seed(self.seed)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_hook = _SeedOnImport()


def init_note(error: BaseException, stage: str, info: WorkerInfo) -> None:
    """Name the stage and the worker whose ``init`` raised ``error`` in a PEP 678 note.

    Examples:
        >>> error = OSError("no database")
        >>> init_note(error, "thread(2)", WorkerInfo(1, 2, "thread", 7))
        >>> error.__notes__
        ['tinypl: raised by init of thread(2), worker 1 of 2']
    """
    note = f"tinypl: raised by init of {stage}, worker {info.id} of {info.count}"
    try:
        error.add_note(note)  # type: ignore[attr-defined]  # Python >= 3.11
    except AttributeError:  # pragma: no cover - Python < 3.11
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]
    except TypeError:  # pragma: no cover - a non-list __notes__ set by the user
        pass
