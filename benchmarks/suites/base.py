"""The :class:`Suite` descriptor every suite module exports as ``SUITE``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.harness import SuiteContext
from benchmarks.report import SuiteReport


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """Default for suites without specific options."""


@dataclass(frozen=True)
class Suite:
    """A named benchmark suite.

    Attributes:
        name: sub-command name (``python -m benchmarks <name>``).
        description: one-line help text.
        default_repeat: timed runs per measurement unless ``--repeat`` is given.
        run: measures all peers and returns the report; must not raise for peer
            failures (use :meth:`SuiteContext.run_in_process` / ``run_legacy``).
        add_arguments: adds suite-specific options to the sub-command parser.
    """

    name: str
    description: str
    default_repeat: int
    run: Callable[[SuiteContext], SuiteReport]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
