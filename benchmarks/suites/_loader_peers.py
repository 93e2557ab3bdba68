"""Peers of the ``dataloader`` suite's ``files`` part, and the child process that runs one.

Every peer loads the same epochs of :class:`~benchmarks.suites._images.FileImageDataset`
(read a JPEG file, decode, random crop, flip, normalize) in batches of 32 with 2 workers,
each with its library's documented settings for such a loader (see :data:`PEERS`).

``python -B -m benchmarks.suites._loader_peers KEY FOLDER EPOCHS`` builds peer ``KEY`` in
a fresh interpreter, pulls one untimed epoch (start-up included) and ``EPOCHS`` timed
ones, and prints one JSON line: ``{"first_s", "epochs": [[seconds, samples], ...]}`` or
``{"error"}``. The parent measures its memory from outside
(:mod:`benchmarks.suites._loader_isolated`).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.suites._images import CROP, FileImageDataset, stack

BATCH = 32
WORKERS = 2

Loader = tuple[Callable[[], int], Callable[[], None]]
"""``(one_epoch, close)``: ``one_epoch()`` pulls one epoch and returns its sample count."""


def _count(batches: Any, limit: int | None = None) -> int:
    """Samples in ``batches`` (checking each batch's shape); with ``limit``, stop at the
    first batch that reaches it (for endless streams whose batches cross epochs)."""
    count = 0
    for batch in batches:
        if tuple(batch.shape[1:]) != (CROP, CROP, 3):
            raise AssertionError(f"bad batch shape {tuple(batch.shape)}")
        count += len(batch)
        if limit is not None and count >= limit:
            break
    return count


class FetchBatch:
    """``indices -> stack([dataset[i] for i in indices])``, picklable."""

    def __init__(self, dataset: FileImageDataset) -> None:
        self.dataset = dataset

    def __call__(self, indices: Any) -> Any:
        return stack([self.dataset[int(index)] for index in indices])


def _epoch_batches(n: int, seed: int = 0) -> Iterator[list[int]]:
    """Endless: a fresh permutation per epoch, cut into batches (the last one short)."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, BATCH):
            yield order[start : start + BATCH]


def serial(dataset: FileImageDataset) -> Loader:
    """The reference: batches fetched one after the other in the consumer's thread."""
    batches = _epoch_batches(len(dataset))
    fetch = FetchBatch(dataset)
    per_epoch = -(-len(dataset) // BATCH)

    def one_epoch() -> int:
        return _count(fetch(next(batches)) for _ in range(per_epoch))

    return one_epoch, lambda: None


def thread_pool(dataset: FileImageDataset) -> Loader:
    """What 2 threads can do with no library: ``ThreadPoolExecutor(2)``, 4 batches in
    flight, handed out in order (the ceiling of a thread loader here, not a peer)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(WORKERS)
    batches = _epoch_batches(len(dataset))
    fetch = FetchBatch(dataset)
    per_epoch = -(-len(dataset) // BATCH)
    flight: deque[Any] = deque(pool.submit(fetch, next(batches)) for _ in range(2 * WORKERS))

    def results() -> Iterator[Any]:
        for _ in range(per_epoch):
            batch = flight.popleft().result()
            flight.append(pool.submit(fetch, next(batches)))
            yield batch

    return lambda: _count(results()), lambda: pool.shutdown(cancel_futures=True)


def _tinypl_recipe(dataset: FileImageDataset, backend: str) -> Loader:
    """docs/dataloader.md's recipe, over an endless shuffling sampler."""
    from benchmarks.harness import new_tinypl

    pl = new_tinypl()
    epoch = pl.Marker("epoch")
    pipe = (
        pl.Pipe(pl.dataloader.sampler.shuffle(dataset, rng=0))
        .insert_marker(epoch)
        .flatten()
        .partition(BATCH, markers="after", split_on_marker=True)
        .map(pl.dataloader.fetch(dataset, stack))
    )
    pipe = pipe.thread(WORKERS) if backend == "thread" else pipe.process(WORKERS)
    stage = iter(pipe.order())

    def one_epoch() -> int:
        return _count(pl.marker.until(stage, epoch))

    return one_epoch, stage.close


def tinypl_threads(dataset: FileImageDataset) -> Loader:
    """``...map(fetch(dataset, stack)).thread(2).order()`` (the recommended loader)."""
    return _tinypl_recipe(dataset, "thread")


def tinypl_processes(dataset: FileImageDataset) -> Loader:
    """The same recipe with ``.process(2)``."""
    return _tinypl_recipe(dataset, "process")


def torch_dataloader(dataset: FileImageDataset) -> Loader:
    """``DataLoader(num_workers=2, persistent_workers=True)``, default collate (tensors)
    and ``prefetch_factor`` (2): the settings torch's docs give for a CPU loader."""
    import torch
    import torch.utils.data

    torch.set_num_threads(1)  # the workers use one; the consumer only iterates
    duck_typed: Any = dataset
    loader: Any = torch.utils.data.DataLoader(
        duck_typed,
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=WORKERS,
        persistent_workers=True,
    )

    def close() -> None:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()

    return lambda: _count(loader), close


def _grain_source(dataset: FileImageDataset) -> Any:
    import grain

    # shuffle, then repeat: grain draws a new permutation for every epoch.
    return grain.MapDataset.source(dataset).shuffle(seed=0).repeat()


def grain_threads(dataset: FileImageDataset) -> Loader:
    """``MapDataset.source(...).shuffle().repeat().batch(32)`` read by
    ``ReadOptions(num_threads=2, prefetch_buffer_size=4)``: whole batches per thread."""
    import grain

    batches = _grain_source(dataset).batch(BATCH, batch_fn=stack)
    options = grain.ReadOptions(num_threads=WORKERS, prefetch_buffer_size=4)
    iterator = iter(batches.to_iter_dataset(options))
    n = len(dataset)
    return lambda: _count(iterator, n), lambda: None


def grain_processes(dataset: FileImageDataset) -> Loader:
    """The same dataset through ``mp_prefetch(MultiprocessingOptions(num_workers=2))``,
    one reading thread per worker process."""
    import grain

    batches = _grain_source(dataset).batch(BATCH, batch_fn=stack)
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
    mp = grain.MultiprocessingOptions(num_workers=WORKERS)
    iterator = iter(batches.to_iter_dataset(options).mp_prefetch(mp))
    n = len(dataset)
    return lambda: _count(iterator, n), lambda: None


def spdl_threads(dataset: FileImageDataset) -> Loader:
    """``PipelineBuilder().add_source(batches of indices).pipe(fetch, concurrency=2,
    output_order="input").add_sink(3).build(num_threads=2)``: SPDL's thread pool."""
    from spdl.pipeline import PipelineBuilder

    pipeline = (
        PipelineBuilder()
        .add_source(_epoch_batches(len(dataset)))
        .pipe(FetchBatch(dataset), concurrency=WORKERS, output_order="input")
        .add_sink(3)
        .build(num_threads=WORKERS)
    )
    pipeline.start()
    per_epoch = -(-len(dataset) // BATCH)

    def one_epoch() -> int:
        return _count(pipeline.get_item(timeout=60) for _ in range(per_epoch))

    return one_epoch, pipeline.stop


def torchdata_nodes(dataset: FileImageDataset) -> Loader:
    """``SamplerWrapper(RandomSampler) -> Batcher(32) -> ParallelMapper(fetch,
    num_workers=2, method="thread", in_order=True) -> Prefetcher(4) -> Loader``
    (the migration guide's loader, threads since the work releases the GIL)."""
    import torch
    from torch.utils.data import RandomSampler
    from torchdata import nodes

    torch.set_num_threads(1)
    sampler = RandomSampler(range(len(dataset)), generator=torch.Generator().manual_seed(0))
    node: Any = nodes.SamplerWrapper(sampler)
    node = nodes.Batcher(node, batch_size=BATCH, drop_last=False)
    node = nodes.ParallelMapper(
        node, map_fn=FetchBatch(dataset), num_workers=WORKERS, method="thread", in_order=True
    )
    node = nodes.Prefetcher(node, prefetch_factor=2 * WORKERS)
    loader = nodes.Loader(node)
    return lambda: _count(loader), lambda: None


PEERS: dict[str, tuple[str, Callable[[FileImageDataset], Loader]]] = {
    "serial": ("serial (one thread, no workers)", serial),
    "pool": ("ThreadPoolExecutor(2), 4 in flight (no library)", thread_pool),
    "tinypl-threads": ("tinypl recipe .thread(2).order() (recommended)", tinypl_threads),
    "tinypl-processes": ("tinypl recipe .process(2).order()", tinypl_processes),
    "torch": ("torch DataLoader(num_workers=2, persistent)", torch_dataloader),
    "grain-threads": ("grain ReadOptions(num_threads=2)", grain_threads),
    "grain-processes": ("grain mp_prefetch(num_workers=2)", grain_processes),
    "spdl": ("SPDL pipe(concurrency=2), 2 threads", spdl_threads),
    "torchdata-nodes": ("torchdata.nodes ParallelMapper(thread, 2)", torchdata_nodes),
}
"""key -> (label, build)."""


def main(argv: list[str]) -> int:
    """Child entry point; see the module docstring."""
    key, folder, epochs = argv[0], argv[1], int(argv[2])
    try:
        dataset = FileImageDataset(folder)
        start = time.perf_counter()
        one_epoch, close = PEERS[key][1](dataset)
        one_epoch()
        first_s = time.perf_counter() - start
        timed = []
        for _ in range(epochs):
            start = time.perf_counter()
            count = one_epoch()
            timed.append((time.perf_counter() - start, count))
        close()
        result: dict[str, Any] = {"first_s": first_s, "epochs": timed}
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    # os._exit: some peers leave non-daemon threads or pools behind after close().
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
