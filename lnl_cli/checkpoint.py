"""One plain dict per checkpoint, used for both resume and inference (the nanoGPT way).

Saved atomically; loaded with ``weights_only=True`` so a checkpoint can never run code.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lnl_cli.algorithms import ALGORITHMS, Algorithm, TaskSpec, build_algorithm
from lnl_cli.config import Config, from_dict, get_value, to_dict
from lnl_cli.errors import CheckpointError, ConfigError, clip, shown
from lnl_cli import run_folder
from lnl_cli.fileio import atomic_write, output_errors, sha256_of
from lnl_cli.version import __version__

FORMAT_VERSION = 1


class Field:
    """The named fields of a checkpoint dict (format 1), the one place their names are spelled: whoever
    reads or writes a checkpoint field asks here."""

    FORMAT_VERSION = "format_version"
    CONFIG = "config"              # the resolved config, as config.to_dict
    TASK = "task"                  # TaskSpec.to_dict: what sizes the networks
    MODEL = "model"                # the algorithm's state_dict (every network)
    OPTIMIZERS = "optimizers"      # optimizer name -> state_dict
    EPOCH = "epoch"                # finished epochs
    VERSIONS = "versions"          # lnl and torch versions that wrote it
    # Resume state (last.pt; best.pt and exports may lack it):
    BATCH_ORDER_STATE = "batch_order_state"
    RNG = "rng"
    TRAIN_SECONDS = "train_seconds"
    PARTIAL_EPOCH = "partial_epoch"
    SELECTION = "selection"


REQUIRED_KEYS = (Field.FORMAT_VERSION, Field.CONFIG, Field.TASK, Field.MODEL, Field.EPOCH)
STATE_DICT_PROBLEM_CHARS = 600  # enough to name several keys, short enough for one line


def make_checkpoint(algorithm: Algorithm, config: Config, epoch: int, *, batch_order_state: torch.Tensor | None = None,
                    rng: dict[str, Any] | None = None, train_seconds: float | None = None,
                    partial_epoch: dict[str, Any] | None = None, selection: dict[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """`epoch` counts finished epochs; the learning-rate schedule is derived from it. The resume state
    (the batch order's generator, every RNG, training seconds so far, a stopped epoch's progress and the
    model selection) is stored only where given."""
    checkpoint = {
        Field.FORMAT_VERSION: FORMAT_VERSION,
        Field.CONFIG: to_dict(config),
        Field.TASK: algorithm.task.to_dict(),
        Field.MODEL: algorithm.state_dict(),
        Field.OPTIMIZERS: algorithm.optimizer_state(),
        Field.EPOCH: epoch,
        Field.VERSIONS: {"lnl": __version__, "torch": str(torch.__version__)},
    }
    resume = {Field.BATCH_ORDER_STATE: batch_order_state, Field.RNG: rng, Field.TRAIN_SECONDS: train_seconds,
              Field.PARTIAL_EPOCH: partial_epoch, Field.SELECTION: selection}
    if batch_order_state is not None:  # what a resumable checkpoint holds, even where a value is None
        checkpoint.update(resume)
    else:
        checkpoint.update({key: value for key, value in resume.items() if value is not None})
    return checkpoint


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Serialised in memory first, then written atomically: a full disk keeps the previous checkpoint
    whole and raises OutputError."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    payload = buffer.getvalue()
    with output_errors(Path(path)):
        atomic_write(Path(path), lambda handle: handle.write(payload))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read and check a checkpoint (a run folder: its best.pt); every failure is a one-line CheckpointError."""
    return _read_checkpoint(Path(path), hashed=False)[0]


def load_hashed_checkpoint(path: Path | str) -> tuple[dict[str, Any], str]:
    """The checked checkpoint and the SHA-256 of exactly the bytes it was loaded from.

    The file is hashed (streamed) and then loaded through the same open handle: a run that replaces
    the checkpoint meanwhile (atomically, a new file) cannot make the hash name other weights than
    the ones a probe measured."""
    checkpoint, digest = _read_checkpoint(Path(path), hashed=True)
    assert digest is not None  # hashed=True always hashes
    return checkpoint, digest


def _read_checkpoint(path: Path, hashed: bool) -> tuple[dict[str, Any], str | None]:
    path = run_folder.model_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    digest = None
    try:
        with open(path, "rb") as handle:
            if hashed:
                digest = sha256_of(handle)
                handle.seek(0)
            checkpoint = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        globals_needed = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        if not globals_needed:
            raise CheckpointError(f"{path} is truncated or not a checkpoint (unreadable pickle)") from None
        raise CheckpointError(f"refusing to load {path}: it needs arbitrary unpickling, which can run code "
                              f"({globals_needed[0][:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is truncated or not a checkpoint ({type(exc).__name__})") from None
    _check_fields(checkpoint, path)
    return checkpoint, digest


def _check_fields(checkpoint: Any, path: Path) -> None:
    """The keys and types every reader relies on; a CheckpointError naming the first that is wrong."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not an lnl checkpoint (a {type(checkpoint).__name__}, not a mapping of "
                              f"{', '.join(REQUIRED_KEYS)})")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not an lnl checkpoint (missing {', '.join(missing)})")
    version = checkpoint[Field.FORMAT_VERSION]
    if type(version) is not int:  # noqa: E721 - "1", 1.0 and True are not format 1
        raise CheckpointError(f"{path} has an invalid format_version {shown(version)} (a {type(version).__name__}, "
                              f"not an integer); lnl writes the integer {FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}, this lnl reads format {FORMAT_VERSION} only")
    epoch = checkpoint[Field.EPOCH]
    if type(epoch) is not int or epoch < 0:
        raise CheckpointError(f"{path} is damaged: epoch must be a whole number >= 0, got {shown(epoch)}")
    for key in (Field.CONFIG, Field.TASK, Field.MODEL):
        if not isinstance(checkpoint[key], dict):
            raise CheckpointError(f"{path} is damaged: '{key}' must be a mapping, got {type(checkpoint[key]).__name__}")


def checkpoint_config(checkpoint: dict[str, Any], path: Path | str) -> Config:
    try:
        return from_dict(checkpoint[Field.CONFIG])
    except ConfigError as exc:
        raise CheckpointError(f"{path} holds an invalid config: {exc}") from None


def restore_algorithm(checkpoint: dict[str, Any], config: Config, path: Path | str) -> Algorithm:
    """Rebuild the networks the checkpoint describes and load its weights."""
    try:
        task = TaskSpec.from_dict(checkpoint[Field.TASK])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unreadable task description ({exc})") from None
    method = checkpoint[Field.CONFIG].get("method")
    if method not in ALGORITHMS:
        raise CheckpointError(f"{path} was trained with unknown method {method!r}")
    if config.method != method:
        raise CheckpointError(f"{path} was trained with method {method!r}, not {config.method!r}")
    algorithm = build_algorithm(config, task, load_pretrained=False)
    try:
        algorithm.load_state_dict(checkpoint[Field.MODEL])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} does not fit this architecture: {state_dict_problem(exc)}") from None
    return algorithm


def state_dict_problem(exc: Exception) -> str:
    """torch's load_state_dict error as one line that names the keys: its first line is only "Error(s) in
    loading state_dict for X:", the missing, unexpected and mis-sized keys follow on the next lines."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return clip("; ".join(lines) or type(exc).__name__, STATE_DICT_PROBLEM_CHARS)


# What `train.init_from` carries over from a trained model: f and g. The bias head and the optimizers start
# fresh, as in the official second stage (LNL from a baseline checkpoint).
INIT_NETWORKS = ("featurizer", "classifier")
# Settings the initialising model must share with the run (the weights' shapes are checked as well).
INIT_MATCH_KEYS = ("data.type", "model.backbone")


def _init_mismatches(checkpoint: dict[str, Any], config: Config, path: Path | str) -> list[str]:
    """The INIT_MATCH_KEYS on which the initialising checkpoint's config and the run's differ."""
    stored = checkpoint_config(checkpoint, path)
    return [f"{key} is {get_value(stored, key)!r} there, {get_value(config, key)!r} here"
            for key in INIT_MATCH_KEYS if get_value(stored, key) != get_value(config, key)]


def check_init_source(config: Config, path: Path | str) -> None:
    """What can be checked of `train.init_from` before any data loads: the file is a readable lnl
    checkpoint of the same data type and backbone (a ConfigError otherwise). The class and channel
    counts, which come from the data, are checked by :func:`initialise_from`."""
    problems = _init_mismatches(load_checkpoint(path), config, path)
    if problems:
        raise ConfigError(f"train.init_from: {path} does not match this run: {'; '.join(problems)}")


def initialise_from(algorithm: Algorithm, config: Config, path: Path | str) -> int:
    """Load f and g of the checkpoint at `path` into `algorithm`; return that checkpoint's epoch.

    A model of other data or another backbone is refused with a ConfigError naming the difference."""
    checkpoint = load_checkpoint(path)
    problems = _init_mismatches(checkpoint, config, path)
    try:
        task = TaskSpec.from_dict(checkpoint[Field.TASK])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unreadable task description ({exc})") from None
    for name in ("num_classes", "in_channels"):
        if getattr(task, name) != getattr(algorithm.task, name):
            problems.append(f"{name} is {getattr(task, name)} there, {getattr(algorithm.task, name)} here")
    if problems:
        raise ConfigError(f"train.init_from: {path} does not match this run: {'; '.join(problems)}")
    state = checkpoint[Field.MODEL]
    for name in INIT_NETWORKS:
        prefix = name + "."
        weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        try:
            getattr(algorithm, name).load_state_dict(weights)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise ConfigError(f"train.init_from: the {name} of {path} does not fit this model: "
                              f"{state_dict_problem(exc)}") from None
    return int(checkpoint[Field.EPOCH])
