"""Datasets that yield (image, label, bias) as whole uint8 tensors, ready to live on the training device.

``DATASETS`` is the registry: ``data.type`` picks one by name. Adding a dataset means writing its
module (options, checks, loader in one :class:`~lnl_cli.data.base.DatasetSpec`) and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnl_cli.data import celeba, colored_mnist, folder, manifest
from lnl_cli.data.base import BiasedDataset, BiasedSplit, DatasetSpec, iterate_batches, resolve_data_root

if TYPE_CHECKING:
    from lnl_cli.config import Config

DATASETS: dict[str, DatasetSpec] = {
    "colored_mnist": colored_mnist.DATASET,
    "manifest": manifest.DATASET,
    "folder": folder.DATASET,
    "celeba": celeba.DATASET,
}


def load_dataset(config: "Config", with_train: bool = True) -> BiasedDataset:
    """Build (or read from cache) the dataset the config names, on the CPU."""
    return DATASETS[config.data.type].load(config, with_train)


__all__ = ["DATASETS", "BiasedDataset", "BiasedSplit", "DatasetSpec", "iterate_batches", "load_dataset",
           "resolve_data_root"]
