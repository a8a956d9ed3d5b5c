"""The one training loop, shared by every algorithm and every command.

It never prints and never exits: progress goes to a :class:`TrainCallbacks`, failures are
raised as the project's exception types.
"""

from __future__ import annotations

import json
import math
import platform
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from lnl_cli import __version__
from lnl_cli.algorithms import Algorithm, TaskSpec, build_algorithm
from lnl_cli.checkpoint import (checkpoint_config, load_checkpoint, make_checkpoint, restore_algorithm,
                                save_checkpoint)
from lnl_cli.config import SPECS, Config, dump_yaml, get_value, load_config
from lnl_cli.data.base import BiasedDataset, iterate_batches, load_dataset, num_batches, resolve_data_root
from lnl_cli.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from lnl_cli.fileio import append_json_line, atomic_write_json, atomic_write_text
from lnl_cli.metrics import evaluate_split

CHECKPOINT_NAME = "checkpoint.pt"
# Config keys that may change when a run is resumed: they do not change what was already trained.
RESUME_SAFE_KEYS = frozenset({"device", "train.epochs", "train.num_threads", "train.eval_every", "data.root",
                              "data.download", "train.compile"})
PROGRESS_EVERY_STEPS = 20


class TrainCallbacks:
    """Receives progress; the CLI renders it. Every method is optional."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None: ...
    def on_steps(self, done: int, steps: int) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...
    def on_message(self, text: str) -> None: ...


@dataclass
class StopRequest:
    """Set from a signal handler; the loop stops at the next step boundary and saves."""

    signal_name: str | None = None
    exit_code: int = 0

    def request(self, signal_name: str, exit_code: int) -> None:
        self.signal_name, self.exit_code = signal_name, exit_code


@dataclass
class RunContext:
    config: Config
    run_dir: Path
    device: torch.device
    dataset: BiasedDataset
    algorithm: Algorithm
    callbacks: TrainCallbacks
    stop: StopRequest = field(default_factory=StopRequest)


def select_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def next_run_dir(base: Path, name: str, method: str) -> Path:
    """runs/<preset>-<method>-N with the first free N."""
    prefix = f"{name}-{method}-"
    taken = [int(m.group(1)) for p in base.glob(prefix + "*")
             if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", p.name))]
    return base / f"{prefix}{max(taken, default=0) + 1}"


def resolve_run_dir(out_dir: Path | None, config: Config) -> Path:
    """`out_dir`, or the next free runs/<preset>-<method>-N."""
    return Path(out_dir) if out_dir is not None else next_run_dir(Path("runs"), config.name, config.method)


def check_run_dir(out_dir: Path | None, config: Config) -> Path:
    """The run folder to use; refused if it already holds a run. Created only once training starts,
    so a run that fails on bad data or config leaves nothing behind."""
    run_dir = resolve_run_dir(out_dir, config)
    if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} is a file")
    return run_dir


def _create_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None


def apply_threads(config: Config) -> None:
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)


@dataclass
class EpochProgress:
    """Where an interrupted epoch stopped, so a resume replays exactly the batches that are left."""

    order_state: torch.Tensor          # batch-order generator state before this epoch's permutation
    step: int = 0                      # batches already trained
    seen: int = 0
    loss_sums: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"order_state": self.order_state, "step": self.step, "seen": self.seen, "loss_sums": self.loss_sums}


def _train_epoch(ctx: RunContext, epoch: int, generator: torch.Generator,
                 progress: EpochProgress | None = None) -> dict[str, float]:
    """One pass over the training set; loss sums stay on the device until the epoch ends."""
    config, algorithm = ctx.config, ctx.algorithm
    split = ctx.dataset.train
    steps = num_batches(len(split), config.train.batch_size)
    progress = progress or EpochProgress(generator.get_state())
    generator.set_state(progress.order_state)
    phase = algorithm.begin_epoch(epoch)
    ctx.callbacks.on_epoch_start(epoch, config.train.epochs, phase, steps)
    algorithm.train()
    device = split.labels.device
    sums = {name: torch.tensor(value, device=device) for name, value in progress.loss_sums.items()}
    seen = progress.seen
    batches = iterate_batches(split, config.train.batch_size, ctx.dataset.mean, ctx.dataset.std, generator,
                              start_batch=progress.step)
    for step, batch in enumerate(batches, start=progress.step + 1):
        losses = algorithm.update(batch)
        n = len(batch.labels)
        seen += n
        for name, value in losses.items():
            sums[name] = sums[name] + value * n if name in sums else value * n
        if step % PROGRESS_EVERY_STEPS == 0 or step == steps:
            _check_finite(sums, epoch, step)
            ctx.callbacks.on_steps(step, steps)
        if ctx.stop.signal_name is not None and step < steps:
            _check_finite(sums, epoch, step)
            raise _Stopped(EpochProgress(progress.order_state, step, seen,
                                         {name: float(total) for name, total in sums.items()}))
    return {name: float(total) / seen for name, total in sums.items()} | {"phase": phase}


class _Stopped(Exception):
    def __init__(self, progress: EpochProgress):
        self.progress = progress


def _check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for name, total in sums.items():
        value = float(total)
        if not math.isfinite(value):
            raise TrainingDiverged(f"{name} became {value} in epoch {epoch + 1} by step {step}; "
                                   "the checkpoint of the last finished epoch is kept")


def _build(config: Config, run_dir: Path, callbacks: TrainCallbacks | None, stop: StopRequest | None,
           checkpoint: dict[str, Any] | None = None) -> RunContext:
    apply_threads(config)
    device = select_device(config.device)
    dataset = load_dataset(config).to(device)
    torch.manual_seed(config.seed)
    if checkpoint is None:
        task = TaskSpec(dataset.num_classes, dataset.num_bias_classes, dataset.bias_bins, dataset.in_channels,
                        tuple(dataset.mean), tuple(dataset.std), dataset.class_names, dataset.bias_names)
        algorithm = build_algorithm(config, task).prepare(device)
    else:
        algorithm = restore_algorithm(checkpoint, config, run_dir / CHECKPOINT_NAME).prepare(device)
        try:
            algorithm.load_optimizer_state(checkpoint["optimizers"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{run_dir / CHECKPOINT_NAME} has unusable optimizer state ({exc})") from None
    return RunContext(config, run_dir, device, dataset, algorithm, callbacks or TrainCallbacks(),
                      stop or StopRequest())


def _announce(ctx: RunContext, start_epoch: int) -> None:
    config = ctx.config
    _create_run_dir(ctx.run_dir)
    atomic_write_text(ctx.run_dir / "config.yaml", dump_yaml(config))
    if config.method == "lnl" and config.train.pretrain_epochs >= config.train.epochs:
        ctx.callbacks.on_message(
            f"train.pretrain_epochs={config.train.pretrain_epochs} covers all {config.train.epochs} epochs: "
            "this run never reaches the adversarial phase")
    ctx.callbacks.on_start({
        "run_dir": str(ctx.run_dir), "device": str(ctx.device), "dataset": ctx.dataset.description,
        "train_size": len(ctx.dataset.train), "test_size": len(ctx.dataset.test), "method": config.method,
        "epochs": config.train.epochs, "start_epoch": start_epoch,
    })


def run_training(config: Config, out_dir: Path | None = None, callbacks: TrainCallbacks | None = None,
                 stop: StopRequest | None = None) -> dict[str, Any]:
    """Train `config` into a new run folder; return the summary (also written as summary.json)."""
    run_dir = check_run_dir(out_dir, config)
    ctx = _build(config, run_dir, callbacks, stop)
    _announce(ctx, 0)
    return _loop(ctx, 0, torch.Generator().manual_seed(config.seed))


def resume_training(run_dir: Path, overrides: Iterable[str] | dict[str, Any] = (),
                    callbacks: TrainCallbacks | None = None, stop: StopRequest | None = None) -> dict[str, Any]:
    """Continue a run from its checkpoint: weights, optimizers, epoch, batch order and partial epoch.

    Only keys in RESUME_SAFE_KEYS may change (e.g. more epochs, another device)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_NAME
    checkpoint = load_checkpoint(path)
    stored = checkpoint_config(checkpoint, path)
    config = load_config(None, overrides, base=stored)
    changed = sorted(key for key in SPECS if get_value(config, key) != get_value(stored, key)
                     and key not in RESUME_SAFE_KEYS)
    if changed:
        raise ConfigError(f"cannot resume with changed {', '.join(changed)}; only "
                          f"{', '.join(sorted(RESUME_SAFE_KEYS))} may change on resume")
    start_epoch = int(checkpoint["epoch"])
    partial = checkpoint.get("partial_epoch")
    callbacks = callbacks or TrainCallbacks()
    if start_epoch >= config.train.epochs and partial is None:
        callbacks.on_message(f"{run_dir} already finished its {config.train.epochs} epochs; nothing to do "
                             "(pass train.epochs=N to extend it)")
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"run_dir": str(run_dir)}
        return {**summary, "already_finished": True}
    ctx = _build(config, run_dir, callbacks, stop, checkpoint)
    _announce(ctx, start_epoch)
    generator = torch.Generator()
    generator.set_state(checkpoint["batch_order_state"])
    _restore_rng(checkpoint.get("rng"))
    progress = None
    if partial is not None:
        progress = EpochProgress(partial["order_state"], int(partial["step"]), int(partial["seen"]),
                                 dict(partial["loss_sums"]))
    return _loop(ctx, start_epoch, generator, progress, float(checkpoint.get("train_seconds", 0.0)))


def _restore_rng(rng: dict[str, Any] | None) -> None:
    """Global RNGs as they were at the checkpoint (nothing in training draws from them today, but an
    algorithm that does, e.g. with dropout, resumes exactly too)."""
    if not rng:
        return
    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(rng["python"]), rng["python_position"]))


def _loop(ctx: RunContext, start_epoch: int, generator: torch.Generator, progress: EpochProgress | None = None,
          train_seconds: float = 0.0) -> dict[str, Any]:
    config = ctx.config
    started = time.perf_counter()
    last_eval: dict[str, Any] = {}
    for epoch in range(start_epoch, config.train.epochs):
        epoch_start = time.perf_counter()
        try:
            losses = _train_epoch(ctx, epoch, generator, progress)
        except _Stopped as stopped:
            train_seconds += time.perf_counter() - epoch_start
            _save(ctx, epoch, generator, train_seconds, partial_epoch=stopped.progress.to_dict())
            raise TrainingInterrupted(
                f"interrupted by {ctx.stop.signal_name} in epoch {epoch + 1}, step {stopped.progress.step}; "
                f"checkpoint saved to {ctx.run_dir / CHECKPOINT_NAME}; continue with "
                f"`lnl train --resume {ctx.run_dir}`", ctx.stop.exit_code) from None
        progress = None
        _sync(ctx.device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        record: dict[str, Any] = {"epoch": epoch + 1, **losses, "train_seconds": round(epoch_seconds, 3)}
        if (epoch + 1) % config.train.eval_every == 0 or epoch + 1 == config.train.epochs:
            last_eval = evaluate_split(ctx.algorithm, ctx.dataset.test, ctx.dataset, with_cells=False)
            record.update({f"test_{k}": v for k, v in last_eval.items() if k != "num_samples"})
        record["seconds"] = round(time.perf_counter() - epoch_start, 3)
        append_json_line(ctx.run_dir / "metrics.jsonl", record)
        _save(ctx, epoch + 1, generator, train_seconds)
        ctx.callbacks.on_epoch_end(record)
        if ctx.stop.signal_name is not None and epoch + 1 < config.train.epochs:
            raise TrainingInterrupted(
                f"interrupted by {ctx.stop.signal_name} after epoch {epoch + 1}; checkpoint saved to "
                f"{ctx.run_dir / CHECKPOINT_NAME}; continue with `lnl train --resume {ctx.run_dir}`",
                ctx.stop.exit_code)
    if not last_eval:
        last_eval = evaluate_split(ctx.algorithm, ctx.dataset.test, ctx.dataset, with_cells=False)
    summary = _summary(ctx, last_eval, time.perf_counter() - started, train_seconds)
    atomic_write_json(ctx.run_dir / "summary.json", summary)
    return summary


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save(ctx: RunContext, epochs_done: int, generator: torch.Generator, train_seconds: float,
          partial_epoch: dict[str, Any] | None = None) -> None:
    rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
           "python_position": random.getstate()[2]}
    checkpoint = make_checkpoint(ctx.algorithm, ctx.config, epochs_done, batch_order_state=generator.get_state(),
                                 rng=rng, train_seconds=train_seconds, partial_epoch=partial_epoch)
    save_checkpoint(ctx.run_dir / CHECKPOINT_NAME, checkpoint)


def _summary(ctx: RunContext, final: dict[str, Any], seconds: float, train_seconds: float) -> dict[str, Any]:
    config = ctx.config
    images = len(ctx.dataset.train) * config.train.epochs  # every epoch, resumed ones included
    return {
        "run_dir": str(ctx.run_dir),
        "preset": config.name,
        "method": config.method,
        "dataset": ctx.dataset.description,
        "data_root": str(resolve_data_root(config)),
        "device": str(ctx.device),
        "epochs": config.train.epochs,
        "train_size": len(ctx.dataset.train),
        "test_size": len(ctx.dataset.test),
        "seconds": round(seconds, 2),
        "train_images_per_second": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "test": {k: v for k, v in final.items()},
        "checkpoint": str(ctx.run_dir / CHECKPOINT_NAME),
        "versions": {"lnl": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    }
