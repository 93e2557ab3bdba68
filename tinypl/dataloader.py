"""Dataloader for deep learning (``pl.dataloader.load`` …), built from ``Pipe`` stages.

The recommended form is the fluent recipe, whose stages ``load`` builds as well:

    epoch = pl.Marker("epoch")
    loader = (
        pl.Pipe(pl.dataloader.sampler.shuffle(dataset, rng=seed))  # indices per epoch
        .insert_marker(epoch)                                   # end of every epoch
        .flatten()                                              # indices
        .partition(32, markers="after", split_on_marker=True)   # batches of indices
        .map(pl.dataloader.fetch(dataset, collate_fn))          # batches of samples ...
        .thread(4)                                              # ... loaded in 4 threads
        .order()                                                # in sampler order
    )

``as_torch_dataset`` hands a pipeline to code that expects a
``torch.utils.data.IterableDataset`` (torch is imported on first use only).
"""

from ._dataloader import EPOCH_END_MODES, fetch, load, sampler
from ._torch import as_torch_dataset

__all__ = ["EPOCH_END_MODES", "as_torch_dataset", "fetch", "load", "sampler"]
