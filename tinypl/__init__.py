"""tinypl: lazy, immutable data-processing pipelines with threads, markers and order.

Two forms build the same plans: the fluent ``Pipe`` and the module-level functions of
tinypl 0.1.0 (``pl.map``, ``pl.thread.queue``, ``pl.order.save`` …).

Examples:
    >>> import tinypl as pl
    >>> list(pl.Pipe(range(5)).map(lambda x: x * 2).filter(lambda x: x > 2))
    [4, 6, 8]
    >>> list(pl.filter(pl.map(range(5), lambda x: x * 2), lambda x: x > 2))
    [4, 6, 8]
"""

import typing as _typing

from . import asyncio, debug, executor, marker, order, process, thread
from ._compat import each_ as each
from ._compat import filter_ as filter
from ._compat import flatten_ as flatten
from ._compat import flatten_eager_ as flatten_eager
from ._compat import ignore_errors_ as ignore_errors
from ._compat import map_ as map
from ._compat import partition_ as partition
from ._compat import ratelimit_ as ratelimit
from ._compat import unpack
from ._compat_insight import progress_ as progress
from ._compat_insight import report_ as report
from ._compat_streams import concat_ as concat
from ._compat_streams import mix_ as mix
from ._compat_streams import prefetch_ as prefetch
from ._compat_streams import repeat_ as repeat
from ._compat_streams import shard_ as shard
from ._compat_streams import shuffle_ as shuffle
from ._compat_streams import skip_ as skip
from ._compat_streams import take_ as take
from ._compat_streams import zip_ as zip
from ._errors import MarkerNotAllowedError, NotResumable, TooManyErrors, WorkerError
from ._marker import Marker
from ._pipe import Pipe
from ._runtime import Stage, WorkerDied
from ._stats import Bottleneck, StageStats, Stats
from ._workerinfo import WorkerInfo, worker_info

flatten_lazy = flatten

if _typing.TYPE_CHECKING:
    from . import dataloader

__all__ = [
    "concat",
    "mix",
    "prefetch",
    "repeat",
    "shard",
    "shuffle",
    "skip",
    "take",
    "zip",
    "Bottleneck",
    "Marker",
    "MarkerNotAllowedError",
    "NotResumable",
    "Pipe",
    "Stage",
    "StageStats",
    "Stats",
    "TooManyErrors",
    "WorkerDied",
    "WorkerError",
    "WorkerInfo",
    "asyncio",
    "dataloader",
    "debug",
    "each",
    "executor",
    "filter",
    "flatten",
    "flatten_eager",
    "flatten_lazy",
    "ignore_errors",
    "map",
    "marker",
    "order",
    "partition",
    "process",
    "progress",
    "ratelimit",
    "report",
    "thread",
    "unpack",
    "worker_info",
]


def __getattr__(name: str) -> object:
    # The dataloader is imported on first use: most pipelines never need it, and its
    # import is a tenth of tinypl's.
    if name == "dataloader":
        import importlib

        return importlib.import_module(".dataloader", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
