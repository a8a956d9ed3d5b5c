"""Datasets that yield (image, label, bias) as whole uint8 tensors, ready to live on the training device."""

from lnl_cli.data.base import BiasedDataset, BiasedSplit, iterate_batches, load_dataset

__all__ = ["BiasedDataset", "BiasedSplit", "iterate_batches", "load_dataset"]
