"""What a resumed run starts from: the config it may change, where its loop and its interrupted epoch
stopped, its selection so far and its global random state.

Apart from :mod:`lnl_cli.engine`, whose loop reads these; a checkpoint holds them as plain values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from lnl_cli import distributed, run_folder
from lnl_cli.callbacks import TrainCallbacks
from lnl_cli.checkpoint import checkpoint_config
from lnl_cli.config import SPECS, Config, get_value, load_config, overlay
from lnl_cli.errors import ConfigError
from lnl_cli.selection import Selection

# Config keys that may change when a run is resumed: they do not change what was already trained.
RESUME_SAFE_KEYS = frozenset({"device", "train.epochs", "train.num_threads", "train.eval_every", "data.root",
                              "data.download", "train.compile", "train.tensorboard"})


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


def start_state(checkpoint: dict[str, Any], config: Config) -> StartState:
    generator = torch.Generator()
    generator.set_state(checkpoint["batch_order_state"])
    partial = checkpoint.get("partial_epoch")
    progress = None if partial is None else EpochProgress(
        partial["order_state"], int(partial["step"]), int(partial["seen"]), dict(partial["loss_sums"]))
    selection = Selection.from_dict(checkpoint.get("selection"), config.train.select)
    return StartState(int(checkpoint["epoch"]), generator, selection, progress,
                      float(checkpoint.get("train_seconds", 0.0)))


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
