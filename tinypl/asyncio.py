"""Asyncio stages of the module-level API (``pl.asyncio.map`` …).

This module does not import the standard library's ``asyncio``: it is loaded when the
first asyncio stage runs.
"""

from ._compat_engines import asyncio_each as each
from ._compat_engines import asyncio_map as map

__all__ = ["each", "map"]
