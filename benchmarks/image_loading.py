"""How fast the data path feeds training batches of photographs: decoded once and resident in memory,
against streamed (decoded again every epoch by DataLoader workers), with and without augmentation.

Measures the data path alone (no network): the time to decode a dataset's training split once, then
images/s of one epoch of normalised batches from memory, from memory with the preset's augmentation,
and streamed with each worker count asked for. Record the machine with the figures.

    python -m lnl_cli.tools.utkface --images ../shared/data/utkface/crop_part1 --out ~/lnl-data/utkface
    python benchmarks/image_loading.py --preset utkface-eb1 --workers 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lnl_cli import load_config
from lnl_cli.data import augment as augmentation
from lnl_cli.data import iterate_batches, load_dataset
from lnl_cli.data.base import BiasedSplit
from lnl_cli.data.images import decode_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce import cpu_model  # noqa: E402


def epoch_images_per_second(split, config, mean, std, augment: bool) -> float:
    """One shuffled epoch of normalised (and optionally augmented) batches, images per second."""
    generator = torch.Generator().manual_seed(0)
    start, seen = time.perf_counter(), 0
    for step, batch in enumerate(iterate_batches(split, config.train.batch_size, mean, std, generator)):
        if augment:
            batch = augmentation.augment_batch(batch, config.data.augment, step)
        seen += len(batch.labels)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="utkface-eb1")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="streaming worker counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {"machine": cpu_model(), "threads": args.threads}

    config = load_config(args.preset, [*args.set, "data.loading=stream", "data.val_size=0"])
    dataset = load_dataset(config)  # files only: the one decode below is the timed one
    records = dataset.train.records
    start = time.perf_counter()
    resident = BiasedSplit(decode_all(records, config.data.image_size, config.data.num_workers),
                           records.labels, records.bias)
    decode = time.perf_counter() - start
    results["images"] = len(resident)
    results["image_size"] = config.data.image_size
    results["resident_megabytes"] = round(resident.images.numel() / 2**20, 1)
    results["decode_once_images_per_second"] = round(len(resident) / decode)
    mean, std = dataset.mean, dataset.std
    results["memory_images_per_second"] = round(epoch_images_per_second(resident, config, mean, std, False))
    if augmentation.enabled(config.data.augment):
        results["memory_augmented_images_per_second"] = round(
            epoch_images_per_second(resident, config, mean, std, True))
    for workers in args.workers:
        streaming = load_config(args.preset, [*args.set, "data.loading=stream", "data.val_size=0",
                                              f"data.num_workers={workers}"])
        split = load_dataset(streaming).train
        results[f"stream_{workers}_workers_images_per_second"] = round(
            epoch_images_per_second(split, streaming, mean, std, False))
    for key, value in results.items():
        print(f"{key:>42}: {value}", file=sys.stderr)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
