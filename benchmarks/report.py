"""Plain-text report building blocks: tables, ratio lines and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A titled table of pre-formatted cells.

    The first column, a column headed ``status`` and the columns listed in ``left`` are
    left-aligned; all others are right-aligned.
    """

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: frozenset[int] = frozenset()

    def add_row(self, cells: Sequence[str]) -> None:
        """Append a row; it must have as many cells as there are headers."""
        if len(cells) != len(self.headers):
            raise ValueError(f"row has {len(cells)} cells, expected {len(self.headers)}")
        self.rows.append(list(cells))

    def render(self) -> str:
        """Render as an aligned plain-text table followed by its notes."""
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            out = []
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
                is_left = i == 0 or self.headers[i] == "status" or i in self.left
                out.append(cell.ljust(width) if is_left else cell.rjust(width))
            return "  ".join(out).rstrip()

        sep = "  ".join("-" * w for w in widths)
        parts = [self.title, line(self.headers), sep, *(line(r) for r in self.rows)]
        parts.extend(f"  * {note}" for note in self.notes)
        return "\n".join(parts)


@dataclass
class Section:
    """A free-form block of lines (used for ratios and calibration figures)."""

    title: str
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Render the title followed by indented lines."""
        return "\n".join([self.title, *(f"  {line}" for line in self.lines)])


@dataclass
class SuiteReport:
    """Everything a suite produced: printable blocks plus JSON-ready data."""

    suite: str
    title: str
    blocks: list[Table | Section] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """Render all blocks separated by blank lines."""
        return "\n\n".join([f"== {self.title} ==", *(b.render() for b in self.blocks)])


NA = "-"


def timing_cells(result: Any, digits: int, scale: float = 1.0) -> list[str]:
    """``runs``, ``best`` and ``median`` cells of a :class:`harness.PeerResult` (seconds
    times ``scale``, with ``digits`` decimals)."""
    timing = result.timing
    return [
        result.runs_text,
        fmt_float(None if timing is None else timing.best * scale, digits),
        fmt_float(None if timing is None else timing.median * scale, digits),
    ]


def fmt_float(value: float | None, digits: int = 1) -> str:
    """Format with a fixed number of decimals, or :data:`NA`."""
    return NA if value is None else f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """Format a ratio such as ``1.07x``."""
    if value is None:
        return NA
    return f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"


def fmt_pct(value: float | None) -> str:
    """Format a fraction as a percentage."""
    return NA if value is None else f"{100 * value:.1f}%"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` if either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def target_max(value: float | None, limit: float) -> str:
    """Describe whether ``value <= limit`` (informational only -- never asserted)."""
    if value is None:
        return f"<= {limit:g}x: n/a"
    return f"<= {limit:g}x: {'met' if value <= limit else 'MISSED'}"


def verdict_min(value: float | None, limit: float) -> str:
    """``met``/``MISSED``/``n/a`` for ``value >= limit`` (informational only)."""
    if value is None:
        return "n/a"
    return "met" if value >= limit else "MISSED"
