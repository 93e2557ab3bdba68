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

if _typing.TYPE_CHECKING:
    from . import asyncio as asyncio
    from . import dataloader as dataloader
    from . import debug as debug
    from . import executor as executor
    from . import marker as marker
    from . import order as order
    from . import process as process
    from . import thread as thread
    from ._compat import each_ as each
    from ._compat import filter_ as filter
    from ._compat import flatten_ as flatten
    from ._compat import flatten_eager_ as flatten_eager
    from ._compat import ignore_errors_ as ignore_errors
    from ._compat import map_ as map
    from ._compat import partition_ as partition
    from ._compat import ratelimit_ as ratelimit
    from ._compat import unpack as unpack
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
    from ._errors import MarkerNotAllowedError as MarkerNotAllowedError
    from ._errors import NotResumable as NotResumable
    from ._errors import TooManyErrors as TooManyErrors
    from ._errors import WorkerError as WorkerError
    from ._marker import Marker as Marker
    from ._pipe import Pipe as Pipe
    from ._runtime import Stage as Stage
    from ._runtime import WorkerDied as WorkerDied
    from ._stats import Bottleneck as Bottleneck
    from ._stats import StageStats as StageStats
    from ._stats import Stats as Stats
    from ._workerinfo import WorkerInfo as WorkerInfo
    from ._workerinfo import worker_info as worker_info

    flatten_lazy = flatten

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


# Every name is imported on first use: ``import tinypl`` costs next to nothing, and a
# worker process that imports ``tinypl._runtime._worker`` (a forkserver boots on it)
# does not import the pipe builder, the planner, asyncio or checkpointing.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Bottleneck": ("._stats", "Bottleneck"),
    "Marker": ("._marker", "Marker"),
    "MarkerNotAllowedError": ("._errors", "MarkerNotAllowedError"),
    "NotResumable": ("._errors", "NotResumable"),
    "Pipe": ("._pipe", "Pipe"),
    "Stage": ("._runtime", "Stage"),
    "StageStats": ("._stats", "StageStats"),
    "Stats": ("._stats", "Stats"),
    "TooManyErrors": ("._errors", "TooManyErrors"),
    "WorkerDied": ("._runtime", "WorkerDied"),
    "WorkerError": ("._errors", "WorkerError"),
    "WorkerInfo": ("._workerinfo", "WorkerInfo"),
    "asyncio": (".asyncio", None),
    "concat": ("._compat_streams", "concat_"),
    "dataloader": (".dataloader", None),
    "debug": (".debug", None),
    "each": ("._compat", "each_"),
    "executor": (".executor", None),
    "filter": ("._compat", "filter_"),
    "flatten": ("._compat", "flatten_"),
    "flatten_eager": ("._compat", "flatten_eager_"),
    "flatten_lazy": ("._compat", "flatten_"),
    "ignore_errors": ("._compat", "ignore_errors_"),
    "map": ("._compat", "map_"),
    "marker": (".marker", None),
    "mix": ("._compat_streams", "mix_"),
    "order": (".order", None),
    "partition": ("._compat", "partition_"),
    "prefetch": ("._compat_streams", "prefetch_"),
    "process": (".process", None),
    "progress": ("._compat_insight", "progress_"),
    "ratelimit": ("._compat", "ratelimit_"),
    "repeat": ("._compat_streams", "repeat_"),
    "report": ("._compat_insight", "report_"),
    "shard": ("._compat_streams", "shard_"),
    "shuffle": ("._compat_streams", "shuffle_"),
    "skip": ("._compat_streams", "skip_"),
    "take": ("._compat_streams", "take_"),
    "thread": (".thread", None),
    "unpack": ("._compat", "unpack"),
    "worker_info": ("._workerinfo", "worker_info"),
    "zip": ("._compat_streams", "zip_"),
}
"""Public name: (module, attribute in it; ``None``: the module itself)."""


def __getattr__(name: str) -> object:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    value: object = importlib.import_module(module, __name__)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
