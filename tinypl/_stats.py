"""The figures of a live run: ``stage.stats()`` returns a ``Stats`` (issue 12).

Plain values: a ``Stats`` is a snapshot, built by ``tinypl._runtime._stats`` from the
counters the stages keep, and never changes afterwards. ``str(stats)`` is a table and
``stats.to_dict()`` plain JSON-able data.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Bottleneck", "StageStats", "Stats"]


@attrs.frozen(slots=True)
class StageStats:
    """The figures of one stage of the physical plan (one per step of a fused run).

    ``items_in``/``items_out`` count items (never markers), ``markers`` the markers that
    reached the stage, ``errors`` the exceptions its functions raised, ``busy_s`` the
    seconds spent inside its own functions. Thread and process stages also give
    ``workers``, ``utilization`` (busy / (workers x elapsed), from 0 to 1), ``capacity``
    and ``mean_fill`` of their queue (items for threads, chunks for processes) and
    ``wait_s``, the seconds the consumer waited on them; for other stages these are
    ``None``.

    Examples:
        >>> import tinypl as pl
        >>> run = iter(pl.Pipe(range(5)).map(abs))
        >>> _ = list(run)
        >>> row = run.stats().rows[-1]
        >>> row.name, row.items_in, row.items_out, row.workers
        ('map(abs)', 5, 5, None)
    """

    name: str
    items_in: int
    items_out: int
    markers: int = 0
    errors: int = 0
    busy_s: float = 0.0
    workers: int | None = None
    utilization: float | None = None
    capacity: int | None = None
    mean_fill: float | None = None
    wait_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """One key per attribute.

        Examples:
            >>> sorted(StageStats("map(f)", 3, 3).to_dict())[:3]
            ['busy_s', 'capacity', 'errors']
        """
        return attrs.asdict(self)


@attrs.frozen(slots=True)
class Bottleneck:
    """The stage that limits a run's throughput, and why; ``str()`` is ``"stage: reason"``.

    Examples:
        >>> import tinypl as pl
        >>> str(pl.Bottleneck("source", "consumer waits 80% on it"))
        'source: consumer waits 80% on it'
    """

    stage: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.reason}"


@attrs.frozen(slots=True)
class Stats:
    """A snapshot of a live run: one ``StageStats`` row per stage, source first, and the
    run's totals. ``bottleneck`` is ``None`` while nothing has been timed yet.

    Examples:
        >>> import tinypl as pl
        >>> run = iter(pl.Pipe(range(6)).map(abs).filter(bool))
        >>> _ = list(run)
        >>> stats = run.stats()
        >>> [(row.name, row.items_out) for row in stats.rows]
        [('source', 6), ('map(abs)', 6), ('filter(bool)', 5)]
        >>> stats.delivered
        5
        >>> sorted(stats.to_dict())
        ['bottleneck', 'delivered', 'elapsed_s', 'rows', 'throughput']
    """

    rows: list[StageStats]
    elapsed_s: float
    delivered: int
    bottleneck: Bottleneck | None = None

    @property
    def throughput(self) -> float:
        """Items delivered per second."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"elapsed_s", "delivered", "throughput", "rows", "bottleneck"}``."""
        neck = self.bottleneck
        return {
            "elapsed_s": self.elapsed_s,
            "delivered": self.delivered,
            "throughput": self.throughput,
            "rows": [row.to_dict() for row in self.rows],
            "bottleneck": None if neck is None else {"stage": neck.stage, "reason": neck.reason},
        }

    def __str__(self) -> str:
        return render(self)


_HEADERS = ("stage", "in", "out", "markers", "errors", "busy s", "workers", "util",
            "fill", "wait s")  # fmt: skip


def _cells(row: StageStats) -> list[str]:
    def opt(value: float | None, text: str) -> str:
        return "-" if value is None else text

    return [
        row.name,
        str(row.items_in),
        str(row.items_out),
        str(row.markers),
        str(row.errors),
        f"{row.busy_s:.3f}",
        opt(row.workers, str(row.workers)),
        opt(row.utilization, f"{100 * (row.utilization or 0):.0f}%"),
        opt(row.mean_fill, f"{row.mean_fill or 0:.1f}/{row.capacity}"),
        opt(row.wait_s, f"{row.wait_s or 0:.3f}"),
    ]


def render(stats: Stats) -> str:
    """``str(stats)``: the rows as a table, then the totals and the bottleneck."""
    table = [list(_HEADERS), *(_cells(row) for row in stats.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                  enumerate(zip(line, widths, strict=True))).rstrip()
        for line in table
    ]  # fmt: skip
    lines.append(
        f"{stats.delivered} items in {stats.elapsed_s:.3f} s ({stats.throughput:,.0f} items/s)"
    )
    neck = stats.bottleneck
    lines.append(f"bottleneck: {'not known yet' if neck is None else neck}")
    return "\n".join(lines)
