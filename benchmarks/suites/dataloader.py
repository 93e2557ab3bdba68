"""Suite ``dataloader``: an image-loading pipeline, tinypl vs ``torch.utils.data.DataLoader``.

Workload: 2,000 synthetic 256x256 RGB images, JPEG-encoded with Pillow and held in memory.
Every sample is decoded (Pillow), randomly cropped to 224x224, randomly flipped and
normalized to float32 with numpy (:class:`ImageDataset`, shared by all peers); batches of
32 samples are stacked into one float32 array of 32x224x224x3 (a tensor for DataLoader).

Each peer builds one loader over an endless shuffled sampler, then every timed run pulls
exactly one epoch (2,000 samples, the last batch short): tinypl with
``pl.marker.until(loader, epoch)``, DataLoader (``persistent_workers=True``) with one
``for`` loop. Start-up falls in the untimed warm-up epoch, reported separately. Peers:

* ``torch.utils.data.DataLoader``, ``num_workers=2``, batch size 32, with its default
  collate (tensors) and a few ``prefetch_factor`` settings; the best is the reference;
* tinypl, fluent form, in a few configurations: whole batches loaded by N threads
  (``partition -> map(fetch) -> thread(N) -> order``; ``maxsize=2`` bounds the batches
  in flight, and so memory), single samples loaded by threads and stacked afterwards,
  and whole batches loaded by 2 processes (default ``maxsize`` and ``maxsize=2``);
* tinypl ``pl.dataloader.load`` with 2 threads (the same stages as the fluent form).

``--configs`` selects peers by key.

Figures: samples/s of the best and of the median run, the ratio to the fastest
DataLoader configuration by the same statistic (target >= 1.3x), and peak memory of the
process tree while the peer runs (proportional set size, PSS, summed over this process
and its children: shared pages are split between the processes that map them instead of
being counted in each; sampled every 50 ms in a thread; baseline = PSS just before the
loader is built).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks import report as r
from benchmarks._timing import Check
from benchmarks.harness import PeerResult, Run, SuiteContext, new_tinypl
from benchmarks.report import Section, SuiteReport, Table
from benchmarks.suites._images import (
    CROP,
    IMAGES,
    SIZE,
    ImageDataset,
    MemorySampler,
    make_images,
    stack,
)
from benchmarks.suites._loader_isolated import files_part
from benchmarks.suites._loader_peers import PEERS
from benchmarks.suites.base import Suite, add_part_option

BATCH = 32
TORCH_WORKERS = 2
TARGET = 1.3
DEFAULT_REPEAT = 5
FILES_ROUNDS = 3

# --------------------------------------------------------------------------- peers

Loader = tuple[Callable[[], int], Callable[[], None]]
"""``(one_epoch, close)``: ``one_epoch()`` pulls one epoch and returns its sample count."""


def _consume(batches: Any) -> int:
    count = 0
    for batch in batches:
        count += len(batch)
        if batch.shape[1:] != (CROP, CROP, 3):
            raise AssertionError(f"bad batch shape {tuple(batch.shape)}")
    return count


def _tinypl_loader(pipe_of: Callable[[Any, Any, Any], Any], dataset: ImageDataset) -> Loader:
    pl = new_tinypl()
    epoch = pl.Marker("epoch")
    sampler = pl.dataloader.sampler.shuffle(dataset, rng=0)
    stage = iter(pipe_of(pl, sampler, epoch))

    def one_epoch() -> int:
        return _consume(pl.marker.until(stage, epoch))

    return one_epoch, stage.close


def _batches(pl: Any, sampler: Any, epoch: Any) -> Any:
    """Indices per epoch -> flatten -> batches of 32 indices (the last one of an epoch
    shorter), with the epoch marker after each epoch's last batch."""
    return (
        pl.Pipe(sampler)
        .insert_marker(epoch)
        .flatten()
        .partition(BATCH, markers="after", split_on_marker=True)
    )


def tinypl_batch_threads(dataset: ImageDataset, workers: int, maxsize: int | None = None) -> Loader:
    """Whole batches loaded (decoded, transformed, stacked) by ``workers`` threads."""

    def pipe_of(pl: Any, sampler: Any, epoch: Any) -> Any:
        fetch = pl.dataloader.fetch(dataset, stack)
        return _batches(pl, sampler, epoch).map(fetch).thread(workers, maxsize).order()

    return _tinypl_loader(pipe_of, dataset)


def tinypl_sample_threads(dataset: ImageDataset, workers: int) -> Loader:
    """Single samples loaded by ``workers`` threads, then batched and stacked."""

    def pipe_of(pl: Any, sampler: Any, epoch: Any) -> Any:
        # A live stage as the source of the ordered part: order() numbers single indices
        # (after a flatten in the same Pipe it would number whole epochs).
        indices = iter(pl.Pipe(sampler).insert_marker(epoch).flatten())
        return (
            pl.Pipe(indices)
            .map(dataset.__getitem__)
            .thread(workers)
            .order()
            .partition(BATCH, markers="after", split_on_marker=True)
            .map(stack)
        )

    return _tinypl_loader(pipe_of, dataset)


def tinypl_batch_processes(
    dataset: ImageDataset, workers: int, maxsize: int | None = None
) -> Loader:
    """Whole batches loaded by ``workers`` processes (results through shared memory)."""

    def pipe_of(pl: Any, sampler: Any, epoch: Any) -> Any:
        fetch = pl.dataloader.fetch(dataset, stack)
        return _batches(pl, sampler, epoch).map(fetch).process(workers, maxsize).order()

    return _tinypl_loader(pipe_of, dataset)


def tinypl_load_threads(dataset: ImageDataset, workers: int) -> Loader:
    """``pl.dataloader.load`` with ``map=partial(pl.thread.map, workers=N)``."""
    pl = new_tinypl()
    epoch = pl.Marker("epoch")
    stage = pl.dataloader.load(
        dataset,
        BATCH,
        stack,
        map=functools.partial(pl.thread.map, workers=workers),
        sampler=pl.dataloader.sampler.shuffle(dataset, rng=0),
        epoch_end_mode="keep_last",
        epoch_marker=epoch,
    )

    def one_epoch() -> int:
        return _consume(pl.marker.until(stage, epoch))

    return one_epoch, stage.close


def torch_dataloader(dataset: ImageDataset, prefetch_factor: int) -> Loader:
    """``DataLoader(num_workers=2, batch_size=32, persistent_workers=True)``."""
    import torch.utils.data

    generator = torch.Generator().manual_seed(0)
    duck_typed: Any = dataset  # a map-style dataset without subclassing torch's Dataset
    loader: Any = torch.utils.data.DataLoader(
        duck_typed,
        batch_size=BATCH,
        shuffle=True,
        generator=generator,
        num_workers=TORCH_WORKERS,
        prefetch_factor=prefetch_factor,
        persistent_workers=True,
    )

    def one_epoch() -> int:
        return _consume(loader)

    def close() -> None:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()

    return one_epoch, close


# --------------------------------------------------------------------------- running


@contextmanager
def _quiet_torch_threads() -> Iterator[None]:
    """One intra-op thread in this process while measuring (DataLoader workers use one
    anyway), so that torch's own pool does not compete with the loaders for 2 cores."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _measure(
    ctx: SuiteContext,
    label: str,
    make: Callable[[], Loader],
    *,
    n: int,
    repeat: int,
    params: dict[str, Any],
) -> tuple[PeerResult, dict[str, Any]]:
    gc.collect()
    memory: dict[str, Any] = {}
    closers: list[Callable[[], None]] = []
    sampler: MemorySampler | None = None

    def build() -> tuple[Run, Check]:
        nonlocal sampler
        sampler = MemorySampler()
        sampler.__enter__()
        start = time.perf_counter()
        one_epoch, close = make()
        closers.append(close)
        memory["build_s"] = time.perf_counter() - start

        def check(count: Any) -> str | None:
            return None if count == n else f"{count} samples in an epoch, not {n}"

        return one_epoch, check

    result = ctx.run_in_process(label, build, repeat=repeat, params=params)
    for close in closers:
        close()
    if sampler is not None:
        sampler.__exit__(None, None, None)
        memory["baseline_mb"] = sampler.baseline / 2**20
        memory["peak_mb"] = sampler.peak / 2**20
        memory["peak_over_baseline_mb"] = (sampler.peak - sampler.baseline) / 2**20
    return result, memory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Suite-specific options."""
    add_part_option(parser, ("memory", "files"))
    parser.add_argument("--images", type=int, default=IMAGES, help="(default: %(default)s)")
    parser.add_argument(
        "--epochs", type=int, default=3, help="files: timed epochs per process (default: 3)"
    )
    parser.add_argument(
        "--files-peers",
        default="all",
        help=f"files: comma-separated peer keys (default: all of {','.join(PEERS)})",
    )
    parser.add_argument(
        "--configs",
        default="all",
        help="comma-separated peer keys to run (default: all; see the report for keys)",
    )


def _peers(dataset: ImageDataset) -> dict[str, tuple[str, Callable[[], Loader]]]:
    return {
        "torch-pf2": (
            "DataLoader(workers=2, prefetch_factor=2)",
            lambda: torch_dataloader(dataset, 2),
        ),
        "torch-pf4": (
            "DataLoader(workers=2, prefetch_factor=4)",
            lambda: torch_dataloader(dataset, 4),
        ),
        "batch-threads-2": (
            "tinypl batches in 2 threads",
            lambda: tinypl_batch_threads(dataset, 2),
        ),
        "batch-threads-2-max2": (
            "tinypl batches in 2 threads, maxsize=2",
            lambda: tinypl_batch_threads(dataset, 2, maxsize=2),
        ),
        "batch-threads-3": (
            "tinypl batches in 3 threads",
            lambda: tinypl_batch_threads(dataset, 3),
        ),
        "batch-threads-4": (
            "tinypl batches in 4 threads",
            lambda: tinypl_batch_threads(dataset, 4),
        ),
        "sample-threads-4": (
            "tinypl samples in 4 threads, stack",
            lambda: tinypl_sample_threads(dataset, 4),
        ),
        "batch-processes-2": (
            "tinypl batches in 2 processes",
            lambda: tinypl_batch_processes(dataset, 2),
        ),
        "batch-processes-2-max2": (
            "tinypl batches in 2 processes, maxsize=2",
            lambda: tinypl_batch_processes(dataset, 2, maxsize=2),
        ),
        "load-threads-2": (
            "tinypl pl.dataloader.load, 2 threads",
            lambda: tinypl_load_threads(dataset, 2),
        ),
    }


def run(ctx: SuiteContext) -> SuiteReport:
    """The parts ``--part`` selects: ``memory`` (in-memory JPEGs, in this process, against
    DataLoader) and ``files`` (JPEG files, every peer in its own process, against serial;
    :mod:`benchmarks.suites._loader_isolated`). ``--repeat`` is the number of timed
    epochs of ``memory`` and of rounds of ``files`` (default 3)."""
    report = SuiteReport(suite="dataloader", title="dataloader: image-loading pipelines")
    if ctx.options.part in ("all", "memory"):
        memory = _run_memory(ctx)
        report.blocks += memory.blocks
        report.data["memory"] = memory.data
    if ctx.options.part in ("all", "files"):
        rounds = ctx.repeat if ctx.repeat_explicit else FILES_ROUNDS
        blocks, data = files_part(ctx, rounds)
        report.blocks += blocks
        report.data["files"] = data
    return report


def _run_memory(ctx: SuiteContext) -> SuiteReport:
    """Build the images, measure every configuration, report samples/s and memory."""
    n: int = ctx.options.images
    ctx.progress(f"encoding {n} JPEG images of {SIZE}x{SIZE}")
    start = time.perf_counter()
    images = make_images(n)
    encode_s = time.perf_counter() - start
    dataset = ImageDataset(images)
    start = time.perf_counter()
    for index in range(min(200, n)):
        dataset[index]
    per_sample_ms = (time.perf_counter() - start) / min(200, n) * 1e3

    peers = _peers(dataset)
    wanted = list(peers) if ctx.options.configs == "all" else ctx.options.configs.split(",")
    unknown = [key for key in wanted if key not in peers]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; choose from {list(peers)}")

    results: Results = {}
    with _quiet_torch_threads():
        for key in wanted:
            label, make = peers[key]
            params = {"images": n, "batch": BATCH}
            results[key] = _measure(ctx, label, make, n=n, repeat=ctx.repeat, params=params)

    return _report(n, results, per_sample_ms=per_sample_ms, encode_s=encode_s, images=images)


Results = dict[str, tuple[PeerResult, dict[str, Any]]]
"""key -> (timing result, memory figures)."""
STATS = ("best", "median")


class _Rates:
    """Samples/s of every peer, and the fastest DataLoader row as the reference."""

    def __init__(self, n: int, results: Results) -> None:
        self.n = n
        self.results = results
        self.torch_keys = [key for key in results if key.startswith("torch")]
        self.tinypl_keys = [key for key in results if not key.startswith("torch")]
        self.reference: dict[str, float | None] = {}
        for stat in STATS:
            best_torch = self.fastest(self.torch_keys, stat)
            self.reference[stat] = None if best_torch is None else self.rate(best_torch, stat)

    def rate(self, key: str, stat: str) -> float | None:
        value = self.results[key][0].value(stat)
        return None if value is None else self.n / value

    def fastest(self, keys: list[str], stat: str) -> str | None:
        return max(keys, key=lambda k: self.rate(k, stat) or 0.0, default=None)


def _table(rates: _Rates) -> tuple[Table, list[dict[str, Any]]]:
    table = Table(
        title=f"{rates.n:,} JPEG {SIZE}x{SIZE} -> decode, crop {CROP}, flip, normalize; "
        f"batches of {BATCH}; one epoch per run",
        headers=[
            "key",
            "peer",
            "runs",
            "best s",
            "median s",
            "samples/s (best)",
            "x DataLoader (best)",
            "samples/s (median)",
            "x DataLoader (median)",
            "1st epoch s",
            "peak MB",
            "+MB",
            "status",
        ],
        left=frozenset({1}),
    )
    rows = []
    for key, (result, memory) in rates.results.items():
        per_s = {stat: rates.rate(key, stat) for stat in STATS}
        rel = {stat: r.ratio(per_s[stat], rates.reference[stat]) for stat in STATS}
        warmup = None if result.timing is None else result.timing.warmup
        table.add_row(
            [
                key,
                result.label,
                *r.timing_cells(result, 2),
                r.fmt_float(per_s["best"], 0),
                r.fmt_ratio(rel["best"]),
                r.fmt_float(per_s["median"], 0),
                r.fmt_ratio(rel["median"]),
                r.fmt_float(warmup, 2),
                r.fmt_float(memory.get("peak_mb"), 0),
                r.fmt_float(memory.get("peak_over_baseline_mb"), 0),
                result.status,
            ]
        )
        rows.append(
            {
                **result.to_dict(),
                "key": key,
                "samples_per_s": per_s,
                "ratio_to_best_dataloader": rel,
                "memory": memory,
            }
        )
    return table, rows


def _notes(
    per_sample_ms: float, load: tuple[float, ...] | None, encode_s: float, images: list[bytes]
) -> list[str]:
    return [
        f"single-threaded cost of one sample here: {per_sample_ms:.2f} ms "
        f"(so one core gives ~{1e3 / per_sample_ms:,.0f} samples/s); "
        f"{os.cpu_count()} cpus, loadavg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        if load
        else f"single-threaded cost of one sample here: {per_sample_ms:.2f} ms",
        "x DataLoader: samples/s relative to the fastest DataLoader row by the same "
        "statistic (best run or median run)",
        "peak MB: peak PSS of the process tree while the peer ran (data set included); "
        "+MB: over the PSS just before the loader was built",
        "1st epoch s: the untimed warm-up epoch, which includes starting the workers "
        "(the timed runs are later epochs of the same loader)",
        f"images encoded in {encode_s:.1f} s, {sum(map(len, images)) / 2**20:.1f} MB of JPEG",
    ]


def _summary(rates: _Rates) -> tuple[Section, dict[str, Any]]:
    summary = Section(title=f"Summary (target: tinypl >= {TARGET:g}x DataLoader)")
    summary_data: dict[str, Any] = {}
    for stat in STATS:
        best_torch = rates.fastest(rates.torch_keys, stat)
        best_tinypl = rates.fastest(rates.tinypl_keys, stat)
        if best_torch is None or best_tinypl is None:
            continue
        tinypl_rate = rates.rate(best_tinypl, stat)
        best = r.ratio(tinypl_rate, rates.reference[stat])
        verdict = "n/a" if best is None else ("met" if best >= TARGET else "MISSED")
        summary.lines.append(
            f"{stat:6} run: DataLoader {best_torch} {r.fmt_float(rates.reference[stat], 0)} "
            f"samples/s, tinypl {best_tinypl} {r.fmt_float(tinypl_rate, 0)} samples/s: "
            f"{r.fmt_ratio(best)} ({verdict})"
        )
        summary_data[stat] = {
            "best_dataloader": best_torch,
            "best_tinypl": best_tinypl,
            "ratio": best,
        }
    return summary, summary_data


def _report(
    n: int,
    results: Results,
    *,
    per_sample_ms: float,
    encode_s: float,
    images: list[bytes],
) -> SuiteReport:
    rates = _Rates(n, results)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    table, rows = _table(rates)
    table.notes += _notes(per_sample_ms, load, encode_s, images)
    summary, summary_data = _summary(rates)
    report = SuiteReport(
        suite="dataloader", title="dataloader: image pipeline vs torch.utils.data.DataLoader"
    )
    report.blocks += [table, summary]
    report.data = {
        "images": n,
        "batch": BATCH,
        "per_sample_ms": per_sample_ms,
        "loadavg": load,
        "summary": summary_data,
        "rows": rows,
    }
    return report


SUITE = Suite(
    "dataloader",
    "image-loading pipeline (JPEG decode/crop/flip/normalize) vs torch DataLoader",
    DEFAULT_REPEAT,
    run,
    add_arguments,
)
