"""PyTorch interop. torch is imported on first use, never when tinypl is imported."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch.utils.data

__all__ = ["as_torch_dataset"]

T = TypeVar("T")


@functools.cache
def _dataset_class() -> type[Any]:
    from torch.utils.data import IterableDataset, get_worker_info

    class PipeDataset(IterableDataset[Any]):
        """A ``torch.utils.data.IterableDataset`` over the items of a tinypl pipeline."""

        def __init__(self, pipe: Iterable[Any]) -> None:
            self.pipe = pipe

        def __iter__(self) -> Iterator[Any]:
            if get_worker_info() is not None:
                raise RuntimeError(
                    "tinypl: a pipeline runs its own workers; hand it to"
                    " torch.utils.data.DataLoader with num_workers=0 (and batch_size=None"
                    " when it yields batches), or each DataLoader worker would run a"
                    " complete copy of it"
                )
            return iter(self.pipe)

        def __repr__(self) -> str:
            return f"as_torch_dataset({self.pipe!r})"

    PipeDataset.__module__ = __name__
    return PipeDataset


def as_torch_dataset(pipe: Iterable[T]) -> torch.utils.data.IterableDataset[T]:
    """A ``torch.utils.data.IterableDataset`` whose iteration runs ``pipe``.

    Iterating the dataset iterates ``pipe``: a ``Pipe`` starts a fresh run each time
    (e.g. at every ``for batch in torch_loader``), a live stage is shared and continues
    where it stands. tinypl already loads, batches and prefetches, so hand the dataset to
    ``torch.utils.data.DataLoader`` with ``batch_size=None`` (no second batching) and
    ``num_workers=0`` (the pipeline's own threads or processes do the work; in a
    DataLoader worker the dataset raises ``RuntimeError``, since every worker would run a
    complete copy of the pipeline). Imports torch on first use.

    Examples:
        >>> import tinypl as pl
        >>> import torch
        >>> pipe = pl.Pipe(range(6)).partition(3).map(torch.tensor)
        >>> dataset = pl.dataloader.as_torch_dataset(pipe)
        >>> loader = torch.utils.data.DataLoader(dataset, batch_size=None)
        >>> print([batch.tolist() for batch in loader])
        [[0, 1, 2], [3, 4, 5]]
    """
    dataset: torch.utils.data.IterableDataset[T] = _dataset_class()(pipe)
    return dataset
