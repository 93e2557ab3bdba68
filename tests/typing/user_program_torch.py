"""A user's program with torch, type-checked by mypy in ``test_typing.py`` when torch is
installed."""

from __future__ import annotations

import torch.utils.data
from typing_extensions import assert_type

import tinypl as pl

dataset = pl.dataloader.as_torch_dataset(pl.Pipe(range(4)).map(str))
assert_type(dataset, torch.utils.data.IterableDataset[str])
