"""Stages run on an existing executor (``pl.executor.map`` …): any
``concurrent.futures.Executor`` (the standard pools, loky, ``mpi4py.futures``, Dask's
``client.get_executor()``) or a ``distributed.Client``. Nothing here imports them."""

from ._compat_engines import executor_each as each
from ._compat_engines import executor_map as map

__all__ = ["each", "map"]
