"""Suite registry.

Adding a suite (e.g. ``process`` or ``dataloader``):

1. create ``benchmarks/suites/<name>.py`` exporting ``SUITE = Suite(...)`` (see
   :mod:`benchmarks.suites.base`; :mod:`benchmarks.suites.thread` is a good template);
2. put workload functions that tinypl 0.1.0 must also run into
   :mod:`benchmarks._workloads` (stdlib-only, module-level, picklable) and register a
   legacy case in ``CASES`` of ``benchmarks/_legacy_runner.py``;
3. add the module to :data:`SUITES` below and remove its name from :data:`PLANNED`.
"""

from __future__ import annotations

from benchmarks.suites import dataloader, process, sleep, sync, thread
from benchmarks.suites.base import Suite

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (sync.SUITE, thread.SUITE, process.SUITE, dataloader.SUITE, sleep.SUITE)
}
"""Implemented suites, in the order they are listed by ``--help``."""

PLANNED: dict[str, str] = {}
"""Suites that are planned but not implemented yet (the CLI explains this)."""

__all__ = ["PLANNED", "SUITES", "Suite"]
