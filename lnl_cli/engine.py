"""The one training loop, shared by every algorithm and every command.

It never prints and never exits: progress goes to a :class:`TrainCallbacks`, failures are
raised as the project's exception types.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lnl_cli import __version__
from lnl_cli.algorithms import Algorithm, TaskSpec, build_algorithm
from lnl_cli.checkpoint import make_checkpoint, save_checkpoint
from lnl_cli.config import Config, dump_yaml
from lnl_cli.data.base import BiasedDataset, iterate_batches, load_dataset, num_batches, resolve_data_root
from lnl_cli.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from lnl_cli.fileio import append_json_line, atomic_write_json, atomic_write_text
from lnl_cli.metrics import evaluate_split

CHECKPOINT_NAME = "checkpoint.pt"
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


def prepare_run_dir(out_dir: Path | None, config: Config) -> Path:
    run_dir = Path(out_dir) if out_dir is not None else next_run_dir(Path("runs"), config.name, config.method)
    if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None
    return run_dir


def apply_threads(config: Config) -> None:
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)


def _train_epoch(ctx: RunContext, epoch: int, generator: torch.Generator) -> dict[str, float]:
    """One pass over the training set; loss sums stay on the device until the epoch ends."""
    config, algorithm = ctx.config, ctx.algorithm
    split = ctx.dataset.train
    steps = num_batches(len(split), config.train.batch_size)
    phase = algorithm.begin_epoch(epoch)
    ctx.callbacks.on_epoch_start(epoch, config.train.epochs, phase, steps)
    algorithm.train()
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    for step, batch in enumerate(iterate_batches(split, config.train.batch_size, ctx.dataset.mean,
                                                 ctx.dataset.std, generator), start=1):
        losses = algorithm.update(batch)
        n = len(batch.labels)
        seen += n
        for name, value in losses.items():
            sums[name] = sums[name] + value * n if name in sums else value * n
        if step % PROGRESS_EVERY_STEPS == 0 or step == steps:
            _check_finite(sums, epoch, step)
            ctx.callbacks.on_steps(step, steps)
        if ctx.stop.signal_name is not None:
            raise _Stopped(epoch, step)
    return {name: float(total) / seen for name, total in sums.items()} | {"phase": phase}


class _Stopped(Exception):
    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step


def _check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for name, total in sums.items():
        value = float(total)
        if not math.isfinite(value):
            raise TrainingDiverged(f"{name} became {value} in epoch {epoch + 1} by step {step}")


def run_training(config: Config, out_dir: Path | None = None, callbacks: TrainCallbacks | None = None,
                 stop: StopRequest | None = None) -> dict[str, Any]:
    """Train `config` into a run folder; return the summary (also written as summary.json)."""
    callbacks = callbacks or TrainCallbacks()
    apply_threads(config)
    device = select_device(config.device)
    dataset = load_dataset(config).to(device)
    run_dir = prepare_run_dir(out_dir, config)
    torch.manual_seed(config.seed)
    task = TaskSpec(dataset.num_classes, dataset.num_bias_classes, dataset.bias_bins,
                    int(dataset.train.images.shape[1]))
    algorithm = build_algorithm(config, task).prepare(device)
    ctx = RunContext(config, run_dir, device, dataset, algorithm, callbacks, stop or StopRequest())
    atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    if config.method == "lnl" and config.train.pretrain_epochs >= config.train.epochs:
        callbacks.on_message(
            f"train.pretrain_epochs={config.train.pretrain_epochs} covers all {config.train.epochs} epochs: "
            "this run never reaches the adversarial phase")
    callbacks.on_start({
        "run_dir": str(run_dir), "device": str(device), "dataset": dataset.description,
        "train_size": len(dataset.train), "test_size": len(dataset.test), "method": config.method,
        "epochs": config.train.epochs,
    })
    return _loop(ctx)


def _loop(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    train_seconds = 0.0
    last_eval: dict[str, Any] = {}
    for epoch in range(config.train.epochs):
        epoch_start = time.perf_counter()
        try:
            losses = _train_epoch(ctx, epoch, generator)
        except _Stopped as stopped:
            _save(ctx, epoch, interrupted_at_step=stopped.step)
            raise TrainingInterrupted(
                f"interrupted by {ctx.stop.signal_name} in epoch {epoch + 1}, step {stopped.step}; "
                f"checkpoint saved to {ctx.run_dir / CHECKPOINT_NAME}", ctx.stop.exit_code) from None
        _sync(ctx.device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        record: dict[str, Any] = {"epoch": epoch + 1, **losses, "train_seconds": round(epoch_seconds, 3)}
        if (epoch + 1) % config.train.eval_every == 0 or epoch + 1 == config.train.epochs:
            last_eval = evaluate_split(ctx.algorithm, ctx.dataset.test, ctx.dataset, with_cells=False)
            record.update({f"test_{k}": v for k, v in last_eval.items() if k != "num_samples"})
        record["seconds"] = round(time.perf_counter() - epoch_start, 3)
        append_json_line(ctx.run_dir / "metrics.jsonl", record)
        _save(ctx, epoch + 1)
        ctx.callbacks.on_epoch_end(record)
    summary = _summary(ctx, last_eval, time.perf_counter() - started, train_seconds)
    atomic_write_json(ctx.run_dir / "summary.json", summary)
    return summary


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save(ctx: RunContext, epochs_done: int, **extra: Any) -> None:
    checkpoint = make_checkpoint(ctx.algorithm, ctx.config, epochs_done, **extra)
    save_checkpoint(ctx.run_dir / CHECKPOINT_NAME, checkpoint)


def _summary(ctx: RunContext, final: dict[str, Any], seconds: float, train_seconds: float) -> dict[str, Any]:
    config = ctx.config
    images = len(ctx.dataset.train) * config.train.epochs
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
