"""A complete dataloader over a synthetic image dataset; prints its throughput.

    python examples/dataloader.py                      # 4 threads, 2 epochs of 1,000 images
    python examples/dataloader.py --backend process --workers 2

Each sample is "decoded" (an image is synthesized from its index with NumPy, standing in
for reading and decoding a file), randomly cropped, flipped and normalized; batches of 32
are stacked into one float32 array. The loader is the fluent recipe of the docs
(docs/dataloader.md); the same loader built with ``pl.dataloader.load`` runs afterwards.
Only NumPy is needed.
"""

from __future__ import annotations

import argparse
import functools
import random
import time

import numpy as np

import tinypl as pl

SIZE, CROP = 256, 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


class SyntheticImages:
    """A map-style dataset: sample ``i`` is a random crop of image ``i``, normalized."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        image = np.random.default_rng(index).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        top, left = random.randrange(SIZE - CROP + 1), random.randrange(SIZE - CROP + 1)
        image = image[top : top + CROP, left : left + CROP]
        if random.random() < 0.5:
            image = image[:, ::-1]
        return (image.astype(np.float32) - MEAN) / STD


def fluent_loader(dataset: SyntheticImages, args: argparse.Namespace, epoch: pl.Marker) -> pl.Pipe:
    """The recommended form: indices per epoch -> batches of indices -> batches of
    samples loaded by workers -> sampler order."""
    pipe = (
        pl.Pipe(pl.dataloader.sampler.shuffle(dataset, rng=0, epochs=args.epochs))
        .insert_marker(epoch)
        .flatten()
        .partition(args.batch, markers="after", split_on_marker=True)
        .map(pl.dataloader.fetch(dataset, np.stack))
    )
    # Threads or processes: one word.
    concurrent = pipe.thread if args.backend == "thread" else pipe.process
    return concurrent(args.workers).order()


def module_level_loader(dataset: SyntheticImages, args: argparse.Namespace, epoch: pl.Marker):
    """The same stages, built by the function of tinypl 0.1.0."""
    backend = pl.thread.map if args.backend == "thread" else pl.process.map
    return pl.dataloader.load(
        dataset,
        args.batch,
        np.stack,
        map=functools.partial(backend, workers=args.workers),
        sampler=pl.dataloader.sampler.shuffle(dataset, rng=0, epochs=args.epochs),
        epoch_end_mode="keep_last",
        epoch_marker=epoch,
    )


def run(name: str, loader, epoch: pl.Marker, epochs: int) -> None:
    stage = iter(loader)  # one live run; each epoch ends at the epoch marker
    with stage:
        start = time.perf_counter()
        for number in range(epochs):
            samples = batches = 0
            for batch in pl.marker.until(stage, epoch):
                assert batch.shape[1:] == (CROP, CROP, 3) and batch.dtype == np.float32
                samples += len(batch)
                batches += 1
            seconds = time.perf_counter() - start
            print(
                f"{name}: epoch {number}: {batches} batches, {samples} samples, "
                f"{samples / seconds:,.0f} samples/s"
            )
            start = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend", choices=("thread", "process"), default="thread")
    args = parser.parse_args()

    dataset = SyntheticImages(args.images)
    epoch = pl.Marker("epoch")
    print(
        f"{args.images} images of {SIZE}x{SIZE}, crops of {CROP}x{CROP}, batches of "
        f"{args.batch}, {args.workers} {args.backend} workers"
    )
    run("fluent recipe     ", fluent_loader(dataset, args, epoch), epoch, args.epochs)
    run("pl.dataloader.load", module_level_loader(dataset, args, epoch), epoch, args.epochs)


if __name__ == "__main__":
    main()
