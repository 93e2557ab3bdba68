"""Registers the asyncio backend without importing asyncio: ``_asyncio`` (and with it
the ``asyncio`` package) is imported when the first asyncio stage or async source is
built."""

from __future__ import annotations

from typing import Any

from .. import _plan as plan
from ._registry import build, build_source
from ._stage import Stage

__all__: list[str] = []


@build.register
def _run_on_loop(node: plan.RunOnLoop, upstream: Stage[Any]) -> Stage[Any]:
    from ._asyncio import loop_stage

    return loop_stage(node, upstream)


@build_source.register
def _async_source(node: plan.AsyncSource) -> Stage[Any]:
    from ._asyncio import async_source

    return async_source(node)
