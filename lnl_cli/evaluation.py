"""Load a checkpoint with its config (optionally overridden) and report on the unbiased test set."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import torch

from lnl_cli import runtime
from lnl_cli.algorithms import Algorithm, TaskSpec
from lnl_cli.checkpoint import Field, checkpoint_config, load_checkpoint, load_hashed_checkpoint, restore_algorithm
from lnl_cli.config import Config, get_value, load_config
from lnl_cli.data import load_dataset
from lnl_cli.data.base import BiasedDataset, resolve_data_root
from lnl_cli.errors import DataError, NonFiniteWeightsWarning, SubsetEvaluationWarning
from lnl_cli.metrics import evaluate_split
from lnl_cli.version import JSON_SCHEMA_VERSION


# How much of the test split the training run scored, and which split: a subset size is the run's choice
# for its own split, so an evaluation of another split does not inherit it.
TEST_SPLIT_KEY, TEST_SUBSET_KEY = "data.test", "data.test_size"


def config_for_checkpoint(checkpoint: dict[str, Any], path: Path, preset: str | Path | None,
                          overrides: Iterable[str] | dict[str, Any]) -> Config:
    """The checkpoint's config, then the preset's values, then overrides; except that a training-time
    data.test_size is dropped when the test split changes (unless the evaluation sets one too), and a
    SubsetEvaluationWarning says when a subset is still scored."""
    stored = checkpoint_config(checkpoint, path)
    config = load_config(preset, overrides, base=load_config(None, {TEST_SUBSET_KEY: None}, base=stored))
    inherited = get_value(stored, TEST_SUBSET_KEY)
    # The preset or an override sets a size (null included) when it wins over either starting value.
    other = load_config(preset, overrides, base=load_config(None, {TEST_SUBSET_KEY: 1}, base=stored))
    asked = get_value(config, TEST_SUBSET_KEY) == get_value(other, TEST_SUBSET_KEY)
    if inherited is not None and not asked and get_value(config, TEST_SPLIT_KEY) == get_value(stored, TEST_SPLIT_KEY):
        config = load_config(None, {TEST_SUBSET_KEY: inherited}, base=config)
        warnings.warn(f"scoring a random {inherited} images of the test split, as the training run did "
                      f"({TEST_SUBSET_KEY}={inherited}); {TEST_SUBSET_KEY}=null scores all of it",
                      SubsetEvaluationWarning, stacklevel=3)
    return config


def load_for_inference(path: Path, preset: str | Path | None = None, overrides: Iterable[str] | dict[str, Any] = (),
                       with_train: bool = False) -> tuple[Config, Algorithm, BiasedDataset]:
    """The checkpoint's networks and its data (the training split only when asked for)."""
    return _prepare(load_checkpoint(path), path, preset, overrides, with_train)


class Identified(NamedTuple):
    """What :func:`load_identified_for_inference` loaded, with which checkpoint content it came from."""

    config: Config
    algorithm: Algorithm
    dataset: BiasedDataset
    epoch: int      # finished epochs of the checkpoint
    sha256: str     # of the checkpoint file's bytes that were loaded


def load_identified_for_inference(path: Path, preset: str | Path | None = None,
                                  overrides: Iterable[str] | dict[str, Any] = (),
                                  with_train: bool = False) -> Identified:
    """:func:`load_for_inference`, plus the checkpoint's epoch and content hash, for a report that must
    say which weights it measured (a probe that `lnl compare` can later find stale)."""
    checkpoint, digest = load_hashed_checkpoint(path)
    config, algorithm, dataset = _prepare(checkpoint, path, preset, overrides, with_train)
    return Identified(config, algorithm, dataset, checkpoint[Field.EPOCH], digest)


def _prepare(checkpoint: dict[str, Any], path: Path, preset: str | Path | None,
             overrides: Iterable[str] | dict[str, Any], with_train: bool) -> tuple[Config, Algorithm, BiasedDataset]:
    warn_if_not_finite(checkpoint, path)
    config = config_for_checkpoint(checkpoint, path, preset, overrides)
    runtime.apply_threads(config.train.num_threads)
    device = runtime.select_device(config.device)
    algorithm = restore_algorithm(checkpoint, config, path).prepare(device)
    dataset = load_dataset(config, with_train).to(device)
    check_task_matches(algorithm.task, dataset, path)
    return config, algorithm, dataset


def warn_if_not_finite(checkpoint: dict[str, Any], path: Path) -> None:
    """A NonFiniteWeightsWarning naming the weight tensors that hold NaN or infinite values."""
    weights = checkpoint[Field.MODEL] if isinstance(checkpoint[Field.MODEL], dict) else {}
    broken = [name for name, value in weights.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all())]
    if broken:
        names = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        warnings.warn(f"{path} holds NaN or infinite weights ({names}): what it predicts means nothing",
                      NonFiniteWeightsWarning, stacklevel=3)


def check_task_matches(task: TaskSpec, dataset: BiasedDataset, path: Path) -> None:
    """The data must have the classes and bias values the checkpoint was trained on, in the same order."""
    trained = task.class_names or _indices(task.num_classes)
    found = dataset.class_names or _indices(dataset.num_classes)
    if trained != found:
        raise DataError(f"{path} was trained on other classes than the data has: {_difference(trained, found)}")
    trained_bias = task.bias_names or _indices(task.num_bias_classes)
    found_bias = dataset.bias_names or _indices(dataset.num_bias_classes)
    if task.num_bias_classes != dataset.num_bias_classes or (task.bias_names and trained_bias != found_bias):
        raise DataError(f"{path} was trained on other bias values than the data has: "
                        f"{_difference(trained_bias, found_bias)}")


def _indices(count: int) -> tuple[str, ...]:
    return tuple(map(str, range(count)))


def _difference(trained: tuple[str, ...], found: tuple[str, ...], shown: int = 12) -> str:
    """What differs between two ordered name lists, most telling first: count, names, then order."""
    def names(values) -> str:
        values = list(values)
        return ", ".join(map(repr, values[:shown])) + (f", ... ({len(values)} in all)" if len(values) > shown else "")

    missing = [name for name in trained if name not in found]
    new = [name for name in found if name not in trained]
    if missing or new:
        parts = [f"{len(trained)} in training, {len(found)} in the data"] if len(trained) != len(found) else []
        if missing:
            parts.append(f"not in the data: {names(missing)}")
        if new:
            parts.append(f"not seen in training: {names(new)}")
        return "; ".join(parts)
    if len(trained) != len(found):
        return f"{len(trained)} in training, {len(found)} in the data"
    return (f"the same names in another order (training: {names(trained)}; data: {names(found)}); "
            "fix the data's order with data.classes / data.bias_classes")


def load_model(path: Path, device: str | None = None) -> Algorithm:
    """A checkpoint's networks, ready for inference: on `device` (default: the checkpoint's config's),
    in eval mode, with gradients off. ``model.predict(images)`` takes images normalised as in training
    (``model.task.input_mean``/``input_std``)."""
    checkpoint = load_checkpoint(path)
    warn_if_not_finite(checkpoint, path)
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
