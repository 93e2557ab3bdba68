"""Suite ``checkpoint``: the cost of a run's state (issue 14), against grain.

Each case is a loader over ``--items`` indices (default 1,000,000) in batches of 32,
loaded by 4 threads (or 2 processes) in order, stopped mid-epoch after ``--batches``
batches. Measured: (1) ``state_dict()`` while the workers keep running (median of 200
calls; target < 1 ms without a shuffle buffer); (2) seconds from ``pipe.iter(state=...)``
to the first item, against the first item of a fresh run (medians of ``--repeat`` runs;
target: within 10%). grain runs the same loader (``MapDataset.range(n).shuffle(seed)
.map(f).batch(32)`` over 4 threads) with its ``get_state``/``set_state``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.harness import SuiteContext, new_tinypl
from benchmarks.report import SuiteReport, Table, fmt_float
from benchmarks.suites.base import Suite

STATE_TARGET_MS = 1.0
RESUME_TARGET = 1.10
BATCH = 32


def load(batch: list[int]) -> list[int]:
    """The per-batch work: small, so that the figures are the checkpoint's own."""
    return [2 * index for index in batch]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    parser.add_argument("--items", type=int, default=1_000_000, help="indices per epoch")
    parser.add_argument("--batches", type=int, default=1000, help="batches before the cut")


def _tinypl_cases(items: int) -> dict[str, tuple[str, Callable[[], Any]]]:
    pl = new_tinypl()
    indices = range(items)

    def plain() -> Any:
        return pl.Pipe(indices).partition(BATCH).map(load).thread(4).order()

    def processes() -> Any:
        return pl.Pipe(indices).partition(BATCH).map(load).process(2).order()

    def sampler() -> Any:
        epochs = pl.dataloader.sampler.shuffle(indices, rng=0, epochs=1)
        return pl.Pipe(epochs).flatten().partition(BATCH).map(load).thread(4).order()

    def buffered() -> Any:
        shuffled = pl.Pipe(indices).shuffle(10_000, seed=0)
        return shuffled.partition(BATCH).map(load).thread(4).order()

    return {
        "tinypl": ("tinypl, sequential, 4 threads", plain),
        "tinypl-proc": ("tinypl, sequential, 2 processes", processes),
        "tinypl-sampler": ("tinypl, sampler.shuffle (seed), 4 threads", sampler),
        "tinypl-buffer": ("tinypl, shuffle(10_000, seed), 4 threads", buffered),
    }


class _Grain:
    """grain's loader, with tinypl's ``iter``/``state_dict`` names for the timings."""

    def __init__(self, items: int) -> None:
        import grain

        dataset = grain.MapDataset.range(items).shuffle(seed=0).map(load_one).batch(BATCH)
        self._dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=4))

    def iter(self, state: dict[str, Any] | None = None) -> Iterator[Any]:
        iterator = iter(self._dataset)
        if state is not None:
            iterator.set_state(state)
        return iterator


def load_one(index: int) -> int:
    """grain maps one element at a time, then batches."""
    return 2 * index


def _state_of(run: Any) -> dict[str, Any]:
    state: dict[str, Any] = run.get_state() if hasattr(run, "get_state") else run.state_dict()
    return state


def _close(run: Any) -> None:
    close = getattr(run, "close", None)
    if close is not None:
        close()


def _first_item_seconds(pipe: Any, state: dict[str, Any] | None) -> float:
    start = time.perf_counter()
    run = pipe.iter(state=state)
    next(run)
    elapsed = time.perf_counter() - start
    _close(run)
    return elapsed


def _measure(pipe: Any, batches: int, repeat: int) -> dict[str, Any]:
    run = pipe.iter()
    for _ in range(batches):
        next(run)
    calls = []
    for _ in range(200):
        start = time.perf_counter()
        state = _state_of(run)
        calls.append(time.perf_counter() - start)
    _close(run)
    state = json.loads(json.dumps(state))
    fresh, resumed = [], []
    for _ in range(repeat):  # interleaved, so that a load change hits both alike
        fresh.append(_first_item_seconds(pipe, None))
        resumed.append(_first_item_seconds(pipe, state))
    return {
        "state_ms": statistics.median(calls) * 1e3,
        "state_bytes": len(json.dumps(state)),
        "fresh_ms": statistics.median(fresh) * 1e3,
        "resumed_ms": statistics.median(resumed) * 1e3,
    }


def run(ctx: SuiteContext) -> SuiteReport:
    """Measure every case and build the report."""
    items, batches, repeat = ctx.options.items, ctx.options.batches, ctx.repeat
    cases: dict[str, tuple[str, Callable[[], Any]]] = dict(_tinypl_cases(items))
    cases["grain"] = ("grain, MapDataset.shuffle(seed), 4 threads", lambda: _Grain(items))
    table = Table(
        title=(
            f"state of a loader over {items:,} indices after {batches:,} batches of {BATCH}"
            " (medians)"
        ),
        headers=["case", "state_dict ms", "bytes", "fresh 1st ms", "resumed 1st ms", "x fresh"],
    )
    data: dict[str, Any] = {}
    for key, (label, make) in cases.items():
        ctx.progress(label)
        try:
            figures = _measure(make(), batches, repeat)
        except Exception as error:  # a peer's failure is reported, not raised
            table.add_row([label, "-", "-", "-", "-", f"failed: {error!r}"[:60]])
            continue
        ratio = figures["resumed_ms"] / figures["fresh_ms"]
        data[key] = {**figures, "resume_ratio": ratio}
        table.add_row(
            [
                label,
                fmt_float(figures["state_ms"], 4),
                f"{figures['state_bytes']:,}",
                fmt_float(figures["fresh_ms"], 2),
                fmt_float(figures["resumed_ms"], 2),
                f"{ratio:.2f}x",
            ]
        )
    table.notes += [
        f"targets: state_dict < {STATE_TARGET_MS} ms without a shuffle buffer; resumed"
        f" first item <= {RESUME_TARGET:.2f}x the fresh one",
        "tinypl's ordered loaders skip the delivered batches before the ordered region:"
        " at the source for a sequence, by replaying the cheap index stages otherwise",
        "grain's state is its next index; set_state recomputes its global permutation",
    ]
    return SuiteReport(
        suite="checkpoint",
        title="checkpoint: state_dict() and resuming, against grain",
        blocks=[table],
        data=data,
    )


SUITE = Suite(
    name="checkpoint",
    description="checkpoint: state_dict() time and time to the first resumed item, vs grain",
    default_repeat=5,
    add_arguments=add_arguments,
    run=run,
)
