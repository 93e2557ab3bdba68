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

    from ._pipe import Pipe

    class PipeDataset(IterableDataset[Any]):
        """A ``torch.utils.data.IterableDataset`` over the items of a tinypl pipeline."""

        def __init__(self, pipe: Iterable[Any]) -> None:
            self.pipe = pipe
            self._run: Any = None
            self._resume: dict[str, Any] | None = None

        def state_dict(self) -> dict[str, Any]:
            """The position of the current iteration (torch's ``Stateful`` protocol):
            the run's ``state_dict()``; ``{}`` before the first iteration."""
            if self._run is not None:
                state: dict[str, Any] = self._run.state_dict()
                return state
            return {} if self._resume is None else dict(self._resume)

        def load_state_dict(self, state: dict[str, Any]) -> None:
            """Make the next iteration resume from ``state`` (``{}``: from the start)."""
            if not isinstance(self.pipe, Pipe):
                raise TypeError(
                    "as_torch_dataset: only a dataset over a Pipe can load a state, this"
                    f" one runs {type(self.pipe).__name__}"
                )
            self._resume = dict(state) if state else None
            self._run = None

        def __iter__(self) -> Iterator[Any]:
            if get_worker_info() is not None:
                raise RuntimeError(
                    "tinypl: a pipeline runs its own workers; hand it to"
                    " torch.utils.data.DataLoader with num_workers=0 (and batch_size=None"
                    " when it yields batches), or each DataLoader worker would run a"
                    " complete copy of it"
                )
            if isinstance(self.pipe, Pipe):
                state, self._resume = self._resume, None
                self._run = self.pipe.iter(state=state)
                return self._run  # type: ignore[no-any-return]
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

    The dataset has ``state_dict()`` and ``load_state_dict(state)``, the names torch's
    stateful loaders (``torchdata``'s ``StatefulDataLoader``) call: the state of the
    current iteration, and the state the next iteration resumes from.

    Examples:
        >>> import tinypl as pl
        >>> import torch
        >>> pipe = pl.Pipe(range(6)).partition(3).map(torch.tensor)
        >>> dataset = pl.dataloader.as_torch_dataset(pipe)
        >>> loader = torch.utils.data.DataLoader(dataset, batch_size=None)
        >>> print([batch.tolist() for batch in loader])
        [[0, 1, 2], [3, 4, 5]]
        >>> batches = iter(loader)
        >>> next(batches).tolist()
        [0, 1, 2]
        >>> state = dataset.state_dict()
        >>> dataset.load_state_dict(state)
        >>> [batch.tolist() for batch in loader]
        [[3, 4, 5]]
    """
    dataset: torch.utils.data.IterableDataset[T] = _dataset_class()(pipe)
    return dataset
