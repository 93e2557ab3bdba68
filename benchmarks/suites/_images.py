"""The image workload of the ``dataloader`` suite and a memory sampler.

:class:`ImageDataset` lives at module level so that worker processes of tinypl and of
DataLoader can unpickle it by reference.
"""

from __future__ import annotations

import io
import os
import random
import threading
from pathlib import Path
from typing import Any

IMAGES = 2000
SIZE = 256
CROP = 224

# ImageNet statistics, scaled to 0..255 pixel values.
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


# --------------------------------------------------------------------------- workload


def make_images(count: int = IMAGES, size: int = SIZE, seed: int = 0) -> list[bytes]:
    """``count`` JPEG-encoded RGB images: smooth colour gradients, a few shapes and
    some noise, so that they compress like photographs (about 20-25 kB each)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack(
            [
                128 + 100 * np.sin(3 * x + a) * np.cos(2 * y + b),
                128 + 100 * np.sin(2 * x + 4 * y + c),
                128 + 100 * np.cos(5 * x * y + a + b),
            ],
            axis=-1,
        )
        noise = rng.normal(0, 12, base.shape)
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = rng.integers(0, size - 40, 2)
            w, h = rng.integers(20, 120, 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.ellipse((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


class ImageDataset:
    """Map-style dataset: decode, random 224x224 crop, random horizontal flip, normalize.

    Returns a float32 array of 224x224x3. Picklable (module level), so worker processes
    of tinypl and of DataLoader can use it.
    """

    def __init__(self, images: list[bytes], crop: int = CROP) -> None:
        self.images = images
        self.crop = crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        return transform(self.images[index], self.crop)


def transform(jpeg: bytes, crop: int = CROP) -> Any:
    """Decode, random ``crop`` x ``crop`` crop, random horizontal flip, normalize."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        pixels = np.asarray(image.convert("RGB"))
    height, width, _ = pixels.shape
    top = random.randrange(height - crop + 1)
    left = random.randrange(width - crop + 1)
    pixels = pixels[top : top + crop, left : left + crop]
    if random.random() < 0.5:
        pixels = pixels[:, ::-1]
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    return (pixels.astype(np.float32) - mean) / std


def image_folder(count: int = IMAGES, size: int = SIZE) -> Path:
    """A folder of ``count`` JPEG files (:func:`make_images`) in the user's cache folder
    (``$XDG_CACHE_HOME/tinypl-bench``, never the repository), written once and reused."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "tinypl-bench" / f"jpeg-{count}-{size}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for index, jpeg in enumerate(make_images(count, size)):
            (folder / f"{index:06d}.jpg").write_bytes(jpeg)
        done.write_text("ok\n")
    return folder


class FileImageDataset:
    """Map-style dataset over a folder of JPEG files: read the file, then
    :func:`transform`. Holds only the paths, so worker processes copy little."""

    def __init__(self, folder: str | Path, crop: int = CROP) -> None:
        self.paths = sorted(str(path) for path in Path(folder).glob("*.jpg"))
        self.crop = crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        with open(self.paths[index], "rb") as file:
            return transform(file.read(), self.crop)


def stack(samples: list[Any]) -> Any:
    """Collate for tinypl: one contiguous float32 array per batch."""
    import numpy as np

    return np.stack(samples)


# --------------------------------------------------------------------------- memory


def _pss_of_tree() -> int:
    """PSS (bytes) of this process and all its descendants (RSS where PSS is missing)."""
    import psutil  # type: ignore[import-untyped]

    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class MemorySampler:
    """Samples the PSS of the process tree every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.baseline = _pss_of_tree()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, _pss_of_tree())
            except Exception:  # a child exiting while read; keep sampling
                continue

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, _pss_of_tree())
        self._stop.set()
        self._thread.join()
