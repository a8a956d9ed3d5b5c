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
from typing import Any, Callable, Iterable

import torch

from lnl_cli import __version__, distributed
from lnl_cli.algorithms import Algorithm, TaskSpec, build_algorithm
from lnl_cli.checkpoint import (checkpoint_config, load_checkpoint, make_checkpoint, restore_algorithm,
                                save_checkpoint)
from lnl_cli.config import SPECS, Config, dump_yaml, get_value, load_config
from lnl_cli.data.base import (BiasedDataset, Split, iterate_batches, load_dataset, num_batches,
                               resolve_data_root)
from lnl_cli.errors import (EXIT_SIGINT, EXIT_SIGTERM, CheckpointError, ConfigError, TrainingDiverged,
                            TrainingInterrupted)
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
    test_shard: Split | None = None  # this process's disjoint part of the test set (None: all of it)


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
    world = distributed.world_size()
    steps = num_batches(len(split), config.train.batch_size, world)
    progress = progress or EpochProgress(generator.get_state())
    generator.set_state(progress.order_state)
    phase = algorithm.begin_epoch(epoch)
    ctx.callbacks.on_epoch_start(epoch, config.train.epochs, phase, steps)
    algorithm.train()
    device = split.labels.device
    # A resumed epoch's stored (global) sums are counted once: by rank 0.
    stored = progress.loss_sums if distributed.is_main() else {}
    sums = {name: torch.tensor(value, device=device) for name, value in stored.items()}
    seen = progress.seen if distributed.is_main() else 0
    batches = iterate_batches(split, config.train.batch_size, ctx.dataset.mean, ctx.dataset.std, generator,
                              start_batch=progress.step, shard=(distributed.rank(), world))
    totals, total_seen = sums, seen
    for step, batch in enumerate(batches, start=progress.step + 1):
        losses = algorithm.update(batch)
        n = len(batch.labels)
        seen += n
        for name, value in losses.items():
            sums[name] = sums[name] + value * n if name in sums else value * n
        report = step % PROGRESS_EVERY_STEPS == 0 or step == steps
        if not (report or (ctx.stop.signal_name is not None and world == 1)):
            continue
        totals, total_seen = _agree(ctx, sums, seen)
        _check_finite(totals, epoch, step)
        if report:
            ctx.callbacks.on_steps(step, steps)
        if ctx.stop.signal_name is not None and step < steps:
            raise _Stopped(EpochProgress(progress.order_state, step, total_seen,
                                         {name: float(total) for name, total in totals.items()}))
    return {name: float(total) / total_seen for name, total in totals.items()} | {"phase": phase}


def _agree(ctx: RunContext, sums: dict[str, torch.Tensor], seen: int) -> tuple[dict[str, torch.Tensor], int]:
    """Loss sums and sample count over all processes, and a stop every process agrees on.

    One all-reduce at the points where the losses are checked anyway (every PROGRESS_EVERY_STEPS
    steps): a NaN on any process makes the sums NaN everywhere, so all processes raise together,
    and a signal that reached any process stops all of them at the same step."""
    if distributed.world_size() == 1:
        return sums, seen
    device = next(iter(sums.values())).device
    local = {f"loss/{name}": value for name, value in sums.items()}
    local.update({name: torch.tensor(value, dtype=torch.float64, device=device)
                  for name, value in {"seen": seen, **_stop_flags(ctx.stop)}.items()})
    total = distributed.all_reduce_dict(local)
    _take_agreed_stop(ctx.stop, {name: float(total[name]) for name in _stop_flags(ctx.stop)})
    return {name: total[f"loss/{name}"] for name in sums}, int(total["seen"])


def _stop_flags(stop: StopRequest) -> dict[str, float]:
    return {"stop/SIGINT": float(stop.signal_name == "SIGINT"),
            "stop/SIGTERM": float(stop.signal_name not in (None, "SIGINT"))}


def _take_agreed_stop(stop: StopRequest, counts: dict[str, float]) -> None:
    """Every process takes the same stop, and so exits with the same code: SIGINT if any process
    got one, else SIGTERM if any process got a signal."""
    if counts["stop/SIGINT"] > 0:
        stop.request("SIGINT", EXIT_SIGINT)
    elif counts["stop/SIGTERM"] > 0:
        stop.request("SIGTERM", EXIT_SIGTERM)


def _stop_agreed(stop: StopRequest) -> bool:
    """Between epochs: has any process been asked to stop? (One small all-reduce when distributed.)"""
    if distributed.world_size() > 1:
        counts = distributed.all_reduce_dict({k: torch.tensor(v) for k, v in _stop_flags(stop).items()})
        _take_agreed_stop(stop, {k: float(v) for k, v in counts.items()})
    return stop.signal_name is not None


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
    device = distributed.local_device(select_device(config.device))
    dataset = load_dataset(config).to(device)
    distributed.setup(config.dist.backend, device)  # after the data: a data error needs no process group
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
    if config.train.sync_batchnorm:
        distributed.convert_sync_batchnorm(algorithm)
    distributed.broadcast_state(algorithm)
    if not distributed.is_main():
        callbacks = None  # only rank 0 reports progress
    return RunContext(config, run_dir, device, dataset, algorithm, callbacks or TrainCallbacks(),
                      stop or StopRequest(), _test_shard(dataset.test))


def _test_shard(split: Split) -> Split | None:
    """This process's disjoint, strided part of the test set (no padding, no duplicates)."""
    if distributed.world_size() == 1:
        return None
    return split.subset(torch.arange(distributed.rank(), len(split), distributed.world_size(),
                                     device=split.labels.device))


def _evaluate(ctx: RunContext) -> dict[str, Any]:
    """Test metrics from per-(label, bias) counts summed over the processes' shards: identical on all."""
    return evaluate_split(ctx.algorithm, ctx.test_shard or ctx.dataset.test, ctx.dataset, with_cells=False,
                          reduce_counts=distributed.all_reduce_dict)


def _announce(ctx: RunContext, start_epoch: int) -> None:
    config = ctx.config
    if distributed.is_main():
        _create_run_dir(ctx.run_dir)
        atomic_write_text(ctx.run_dir / "config.yaml", dump_yaml(config))
    if config.method == "lnl" and config.train.pretrain_epochs >= config.train.epochs:
        ctx.callbacks.on_message(
            f"train.pretrain_epochs={config.train.pretrain_epochs} covers all {config.train.epochs} epochs: "
            "this run never reaches the adversarial phase")
    ctx.callbacks.on_start({
        "run_dir": str(ctx.run_dir), "device": str(ctx.device), "dataset": ctx.dataset.description,
        "train_size": len(ctx.dataset.train), "test_size": len(ctx.dataset.test), "method": config.method,
        "epochs": config.train.epochs, "start_epoch": start_epoch, "processes": distributed.world_size(),
    })


def run_training(config: Config, out_dir: Path | None = None, callbacks: TrainCallbacks | None = None,
                 stop: StopRequest | None = None) -> dict[str, Any]:
    """Train `config` into a new run folder; return the summary (also written as summary.json)."""
    run_dir = check_run_dir(out_dir, config)

    def body() -> dict[str, Any]:
        ctx = _build(config, run_dir, callbacks, stop)
        _announce(ctx, 0)
        return _loop(ctx, 0, torch.Generator().manual_seed(config.seed))

    return _in_process_group(body)


def _in_process_group(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `body`, then leave the process group (if any) together.

    Processes wait for each other before tearing down: one that closes its connections while a peer is
    still finishing can make gloo abort that peer. A finished run and an agreed stop (a signal or a NaN:
    every process raises it at the same step) reach the barrier on every process; any other error may
    be one process's alone, so it leaves without waiting (torchrun then ends the job)."""
    try:
        result = body()
        distributed.finish()
        return result
    except (TrainingInterrupted, TrainingDiverged):
        distributed.finish()
        raise
    finally:
        distributed.teardown()


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

    def body() -> dict[str, Any]:
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

    return _in_process_group(body)


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
            distributed.average_buffers(ctx.algorithm)
            _save(ctx, epoch, generator, train_seconds, partial_epoch=stopped.progress.to_dict())
            raise TrainingInterrupted(
                f"interrupted by {ctx.stop.signal_name} in epoch {epoch + 1}, step {stopped.progress.step}; "
                f"checkpoint saved to {ctx.run_dir / CHECKPOINT_NAME}; continue with "
                f"`lnl train --resume {ctx.run_dir}`", ctx.stop.exit_code) from None
        progress = None
        distributed.average_buffers(ctx.algorithm)  # one model to evaluate and save, the same on every rank
        _sync(ctx.device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        record: dict[str, Any] = {"epoch": epoch + 1, **losses, "train_seconds": round(epoch_seconds, 3)}
        if (epoch + 1) % config.train.eval_every == 0 or epoch + 1 == config.train.epochs:
            last_eval = _evaluate(ctx)
            record.update({f"test_{k}": v for k, v in last_eval.items() if k != "num_samples"})
        record["seconds"] = round(time.perf_counter() - epoch_start, 3)
        if distributed.is_main():
            append_json_line(ctx.run_dir / "metrics.jsonl", record)
        _save(ctx, epoch + 1, generator, train_seconds)
        ctx.callbacks.on_epoch_end(record)
        if _stop_agreed(ctx.stop) and epoch + 1 < config.train.epochs:
            raise TrainingInterrupted(
                f"interrupted by {ctx.stop.signal_name} after epoch {epoch + 1}; checkpoint saved to "
                f"{ctx.run_dir / CHECKPOINT_NAME}; continue with `lnl train --resume {ctx.run_dir}`",
                ctx.stop.exit_code)
    if not last_eval:
        last_eval = _evaluate(ctx)
    summary = _summary(ctx, last_eval, time.perf_counter() - started, train_seconds)
    if distributed.is_main():
        atomic_write_json(ctx.run_dir / "summary.json", summary)
    return summary


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save(ctx: RunContext, epochs_done: int, generator: torch.Generator, train_seconds: float,
          partial_epoch: dict[str, Any] | None = None) -> None:
    """Rank 0 writes; the weights are the same on every process."""
    if not distributed.is_main():
        return
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
        "processes": distributed.world_size(),
        "epochs": config.train.epochs,
        "train_size": len(ctx.dataset.train),
        "test_size": len(ctx.dataset.test),
        "seconds": round(seconds, 2),
        "train_images_per_second": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "test": {k: v for k, v in final.items()},
        "checkpoint": str(ctx.run_dir / CHECKPOINT_NAME),
        "versions": {"lnl": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    }
