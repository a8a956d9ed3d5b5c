"""Load a checkpoint with its config (optionally overridden) and report on the unbiased test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from lnl_cli import runtime
from lnl_cli.algorithms import Algorithm, TaskSpec
from lnl_cli.checkpoint import checkpoint_config, load_checkpoint, restore_algorithm
from lnl_cli.config import Config, load_config
from lnl_cli.data import load_dataset
from lnl_cli.data.base import BiasedDataset, resolve_data_root
from lnl_cli.errors import DataError
from lnl_cli.metrics import evaluate_split
from lnl_cli.version import JSON_SCHEMA_VERSION


def config_for_checkpoint(checkpoint: dict[str, Any], path: Path, preset: str | Path | None,
                          overrides: Iterable[str] | dict[str, Any]) -> Config:
    """The checkpoint's config, then the preset's values, then overrides."""
    return load_config(preset, overrides, base=checkpoint_config(checkpoint, path))


def load_for_inference(path: Path, preset: str | Path | None = None, overrides: Iterable[str] | dict[str, Any] = (),
                       with_train: bool = False) -> tuple[Config, Algorithm, BiasedDataset]:
    """The checkpoint's networks and its data (the training split only when asked for)."""
    checkpoint = load_checkpoint(path)
    config = config_for_checkpoint(checkpoint, path, preset, overrides)
    runtime.apply_threads(config.train.num_threads)
    device = runtime.select_device(config.device)
    algorithm = restore_algorithm(checkpoint, config, path).prepare(device)
    dataset = load_dataset(config, with_train).to(device)
    check_task_matches(algorithm.task, dataset, path)
    return config, algorithm, dataset


def check_task_matches(task: TaskSpec, dataset: BiasedDataset, path: Path) -> None:
    """The data must have the classes the checkpoint was trained on, in the same order."""
    trained = task.class_names or tuple(map(str, range(task.num_classes)))
    found = dataset.class_names or tuple(map(str, range(dataset.num_classes)))
    if trained != found:
        raise DataError(f"{path} was trained on classes {list(trained)[:12]}, the data has {list(found)[:12]}")
    if task.num_bias_classes != dataset.num_bias_classes or (task.bias_names and task.bias_names != dataset.bias_names):
        raise DataError(f"{path} was trained on {task.num_bias_classes} bias values "
                        f"{list(task.bias_names)[:12]}, the data has {dataset.num_bias_classes}")


def load_model(path: Path, device: str | None = None) -> Algorithm:
    """A checkpoint's networks, ready for inference: on `device` (default: the checkpoint's config's),
    in eval mode, with gradients off. ``model.predict(images)`` takes images normalised as in training
    (``model.task.input_mean``/``input_std``)."""
    checkpoint = load_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    algorithm = restore_algorithm(checkpoint, config, path).prepare(runtime.select_device(device or config.device))
    algorithm.eval()
    for network in algorithm.networks():
        network.requires_grad_(False)
    return algorithm


def evaluate_checkpoint(path: Path, preset: str | Path | None = None,
                        overrides: Iterable[str] | dict[str, Any] = ()) -> dict[str, Any]:
    config, algorithm, dataset = load_for_inference(path, preset, overrides)
    report = evaluate_split(algorithm, dataset.test, dataset)
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "checkpoint": str(path),
        "method": config.method,
        "dataset": dataset.description,
        "data_root": str(resolve_data_root(config)),
        **report,
    }
