"""Suite registry.

Adding a suite: create ``benchmarks/suites/<name>.py`` exporting ``SUITE = Suite(...)``
(see :mod:`benchmarks.suites.base`; :mod:`benchmarks.suites.thread` is a good
template), put workload functions that tinypl 0.1.0 must also run into
:mod:`benchmarks._workloads` (stdlib-only, module-level, picklable) with a legacy case
in ``CASES`` of ``benchmarks/_legacy_runner.py``, and add the module to :data:`SUITES`.
"""

from __future__ import annotations

from benchmarks.suites import (
    asyncio,
    checkpoint,
    dataloader,
    executor,
    process,
    sleep,
    startup,
    streams,
    sync,
    thread,
)
from benchmarks.suites.base import Suite

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        sync.SUITE,
        thread.SUITE,
        process.SUITE,
        dataloader.SUITE,
        executor.SUITE,
        startup.SUITE,
        sleep.SUITE,
        streams.SUITE,
        asyncio.SUITE,
        checkpoint.SUITE,
    )
}
"""Implemented suites, in the order they are listed by ``--help``."""

__all__ = ["SUITES", "Suite"]
