"""The :class:`Suite` descriptor every suite module exports as ``SUITE``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import SuiteContext
from benchmarks.report import Section, SuiteReport, Table

PartFunction = Callable[[SuiteContext, int], "tuple[list[Table | Section], dict[str, Any]]"]
"""``(ctx, repeat) -> (blocks, data)``: one part of a suite."""
Part = tuple[str, PartFunction, int]
"""``(name, function, default repeat)``."""


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


def add_part_option(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """``--part all|<name>...``: the parts of a suite to run."""
    parser.add_argument(
        "--part",
        choices=("all", *names),
        default="all",
        help="which part to run (default: %(default)s)",
    )


def run_parts(ctx: SuiteContext, report: SuiteReport, parts: Sequence[Part]) -> None:
    """Run the parts ``--part`` selects, in order, adding their blocks and data to
    ``report``; an explicit ``--repeat`` overrides each part's default."""
    for name, function, default_repeat in parts:
        if ctx.options.part not in ("all", name):
            continue
        repeat = ctx.repeat if ctx.repeat_explicit else default_repeat
        blocks, data = function(ctx, repeat)
        report.blocks += blocks
        report.data[name] = data
