"""What a resumed run starts from: the config it may change, where its loop and its interrupted epoch
stopped, its selection so far and its global random state.

Apart from :mod:`lnl_cli.engine`, whose loop reads these; a checkpoint holds them as plain values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from lnl_cli import distributed, run_folder
from lnl_cli.callbacks import TrainCallbacks
from lnl_cli.checkpoint import Field, checkpoint_config
from lnl_cli.config import SPECS, Config, get_value, load_config, overlay
from lnl_cli.errors import CheckpointError, ConfigError, shown
from lnl_cli.result_keys import RESUME_SAFE_KEYS
from lnl_cli.selection import Selection


@dataclass
class EpochProgress:
    """Where an interrupted epoch stopped, so a resume replays exactly the batches that are left."""

    order_state: torch.Tensor          # batch-order generator state before this epoch's permutation
    step: int = 0                      # batches already trained
    seen: int = 0
    loss_sums: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"order_state": self.order_state, "step": self.step, "seen": self.seen, "loss_sums": self.loss_sums}


@dataclass
class StartState:
    """Where the loop starts: a fresh run, or the state a checkpoint saved."""

    epoch: int
    batch_order: torch.Generator
    selection: Selection
    partial_epoch: EpochProgress | None = None
    train_seconds: float = 0.0


def resume_config(checkpoint: dict[str, Any], path: Path, overrides: Iterable[str] | dict[str, Any],
                   callbacks: TrainCallbacks) -> Config:
    """The checkpoint's config < what was edited in the run folder's config.yaml < `overrides`.

    Edits in config.yaml count like overrides, so that none is dropped in silence: only RESUME_SAFE_KEYS
    may differ from the checkpoint, and the edits that apply are announced."""
    stored = checkpoint_config(checkpoint, path)
    config_file = path.parent / run_folder.CONFIG_FILE
    edited = overlay(stored, run_folder.read_config_edits(path.parent), str(config_file))
    config = load_config(None, overrides, base=edited)
    from_file = [key for key in changed_keys(edited, stored) if get_value(config, key) == get_value(edited, key)]
    refused = [key for key in changed_keys(config, stored) if key not in RESUME_SAFE_KEYS]
    if refused:
        named = [key + (f" (edited in {config_file})" if key in from_file else "") for key in refused]
        raise ConfigError(f"cannot resume with changed {', '.join(named)}; only "
                          f"{', '.join(sorted(RESUME_SAFE_KEYS))} may change on resume")
    if from_file and distributed.is_main():
        callbacks.on_message(f"resuming with the edits in {config_file}: "
                             + ", ".join(f"{key}={get_value(config, key)}" for key in from_file))
    return config


def changed_keys(config: Config, reference: Config) -> list[str]:
    return sorted(key for key in SPECS if get_value(config, key) != get_value(reference, key))


def check_epochs(config: Config, start: StartState, run_dir: Path) -> None:
    """Refuse train.epochs below the epochs already begun: the summary would describe a run that is not
    the one in the checkpoint (an interrupted epoch counts as begun)."""
    begun = start.epoch + (start.partial_epoch is not None)
    if config.train.epochs < begun:
        raise ConfigError(f"train.epochs={config.train.epochs} is fewer than the {begun} epochs {run_dir} has "
                          f"already begun; resume with train.epochs={begun} or more")


def trim_metrics(run_dir: Path, epochs_done: int, callbacks: TrainCallbacks) -> None:
    """metrics.jsonl back to the checkpoint's epochs before training appends more."""
    dropped = run_folder.trim_metrics(run_dir, epochs_done)
    if dropped:
        callbacks.on_message(f"dropped {dropped} metrics record(s) after epoch {epochs_done} that the checkpoint "
                             "does not have (written just before a crash); they are trained again")


def start_state(checkpoint: dict[str, Any], config: Config, path: Path | str = "the checkpoint") -> StartState:
    """Where the loop continues, from the checkpoint's resume-only fields, each checked first: a field
    that is damaged or tampered with is a CheckpointError naming it (exit 4), never a crash inside torch."""
    generator = torch.Generator()
    _set_generator_state(generator, checkpoint.get(Field.BATCH_ORDER_STATE), Field.BATCH_ORDER_STATE, path)
    progress = _partial_epoch(checkpoint.get(Field.PARTIAL_EPOCH), path)
    _check_rng(checkpoint.get(Field.RNG), path)
    try:
        selection = Selection.from_dict(_mapping_or_none(checkpoint.get(Field.SELECTION), Field.SELECTION, path),
                                        config.train.select)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _damaged(path, "selection", exc) from None
    seconds = checkpoint.get(Field.TRAIN_SECONDS, 0.0)
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        raise _damaged(path, "train_seconds", f"a number of seconds >= 0, got {shown(seconds)}")
    return StartState(int(checkpoint[Field.EPOCH]), generator, selection, progress, float(seconds))


def _damaged(path: Path | str, key: str, detail: Any) -> CheckpointError:
    return CheckpointError(f"{path} is damaged: its resume field '{key}' is unusable ({detail}); resume from "
                           "another copy, or evaluate the checkpoint as it is")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0  # noqa: E721 - not a bool, not a tensor


def _mapping_or_none(value: Any, key: str, path: Path | str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise _damaged(path, key, f"a mapping, got {type(value).__name__}")
    return value


def _set_generator_state(generator: torch.Generator, state: Any, key: str, path: Path | str) -> None:
    """A generator state is a byte tensor that torch accepts; anything else is a damaged field."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise _damaged(path, key, f"a byte tensor, got {type(state).__name__}"
                       + (f" of {state.dtype}" if isinstance(state, torch.Tensor) else ""))
    try:
        generator.set_state(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _damaged(path, key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _partial_epoch(partial: Any, path: Path | str) -> EpochProgress | None:
    """The interrupted epoch's progress, checked field by field (None: the checkpoint is at an epoch's end)."""
    partial = _mapping_or_none(partial, Field.PARTIAL_EPOCH, path)
    if partial is None:
        return None
    _set_generator_state(torch.Generator(), partial.get("order_state"), "partial_epoch.order_state", path)
    for key in ("step", "seen"):
        if not _is_count(partial.get(key)):
            raise _damaged(path, f"partial_epoch.{key}", f"a whole number >= 0, got {shown(partial.get(key))}")
    sums = partial.get("loss_sums")
    if not isinstance(sums, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in sums.items()):
        raise _damaged(path, "partial_epoch.loss_sums", f"a mapping of loss names to numbers, got {shown(sums)}")
    return EpochProgress(partial["order_state"], partial["step"], partial["seen"],
                         {name: float(value) for name, value in sums.items()})


def _check_rng(rng: Any, path: Path | str) -> None:
    """The global RNG states :func:`restore_rng` will set, checked before any training starts."""
    rng = _mapping_or_none(rng, "rng", path)
    if not rng:
        return
    reference = torch.get_rng_state()
    state = rng.get("torch")
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.shape != reference.shape:
        raise _damaged(path, "rng.torch", f"a byte tensor of {reference.numel()} values, got {shown(state)}")
    # random.getstate(): the Mersenne Twister's 624 words and its index (one tuple), and the cached Gaussian
    words, gauss = rng.get("python"), rng.get("python_position")
    expected = len(random.getstate()[1])
    if (not isinstance(words, (list, tuple)) or len(words) != expected
            or not all(type(word) is int and 0 <= word < 2**32 for word in words)  # noqa: E721
            or words[-1] > expected - 1):
        raise _damaged(path, "rng.python", f"{expected} whole numbers below 2**32, the last at most {expected - 1}")
    if gauss is not None and not _is_number(gauss):
        raise _damaged(path, "rng.python_position", f"None or a number, got {shown(gauss)}")


def capture_rng() -> dict[str, Any]:
    state = random.getstate()
    return {"torch": torch.get_rng_state(), "python": list(state[1]), "python_position": state[2]}


def restore_rng(rng: dict[str, Any] | None) -> None:
    """Global RNGs as they were at the checkpoint (nothing in training draws from them today, but an
    algorithm that does, e.g. with dropout, resumes exactly too)."""
    if not rng:
        return
    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(rng["python"]), rng["python_position"]))
