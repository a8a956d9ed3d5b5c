"""The one training loop, shared by every algorithm and every command.

Read :func:`_run` top to bottom: each epoch trains, evaluates, appends its metrics and saves the
checkpoint (in that order; a resume drops a record the checkpoint does not have). It never prints and
never exits: progress goes to a :class:`TrainCallbacks`, failures are raised as the project's
exception types. Where files go is :mod:`lnl_cli.run_folder`'s
business, the device :mod:`lnl_cli.runtime`'s, and what several processes must agree on
:mod:`lnl_cli.distributed`'s.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from lnl_cli import distributed, models, resume_state, run_folder, runtime, tensorboard
from lnl_cli.algorithms import METHODS, Algorithm, TaskSpec, build_algorithm
from lnl_cli.callbacks import CallbackList, TrainCallbacks
from lnl_cli.checkpoint import (Field, check_init_source, initialise_from, load_checkpoint, make_checkpoint,
                                 restore_algorithm, save_checkpoint)
from lnl_cli.config import Config, dump_yaml
from lnl_cli.data import augment as augmentation
from lnl_cli.data import DATASETS, load_dataset, sampling
from lnl_cli.data.base import MIN_BIAS_VALUES, BiasedDataset, Split, iterate_batches, num_batches, resolve_data_root
from lnl_cli.errors import CheckpointError, ConfigError, DataError, OutputError, TrainingDiverged, TrainingInterrupted
from lnl_cli.fileio import expand_path
from lnl_cli.metrics import evaluate_split
from lnl_cli.resume_state import RESUME_SAFE_KEYS, EpochProgress, StartState
from lnl_cli.runtime import StopRequest
from lnl_cli.selection import LAST, VAL_PREFIX, Selection
from lnl_cli.version import JSON_SCHEMA_VERSION, __version__

# Steps between loss reports; the loss sums are checked for NaN (and agreed between processes) there.
PROGRESS_EVERY_STEPS = 20

__all__ = ["RESUME_SAFE_KEYS", "StopRequest", "TrainCallbacks", "resume_training", "run_training"]


@dataclass
class RunContext:
    config: Config
    run_dir: Path
    device: torch.device
    dataset: BiasedDataset
    algorithm: Algorithm
    callbacks: TrainCallbacks
    stop: StopRequest = field(default_factory=StopRequest)
    val_split: Split | None = None   # this process's part of the validation split (None: there is none)
    test_split: Split | None = None  # this process's part of the test set, read once at the end


class _Stopped(Exception):
    """A stop request inside an epoch; carries where the epoch stopped."""

    def __init__(self, progress: EpochProgress):
        self.progress = progress


# ---------------------------------------------------------------------------- entry points


def run_training(config: Config, out_dir: Path | None = None, callbacks: TrainCallbacks | None = None,
                 stop: StopRequest | None = None, claim_token: str | None = None) -> dict[str, Any]:
    """Train `config` into a new run folder; return the summary (also written as summary.json).

    Rank 0 claims the folder before the data loads (`claim_token`: adopt the claim a launcher made for
    this run) and gives it back if the run ends without a checkpoint, so a run that fails on its data,
    its first epoch or a full disk leaves nothing behind."""
    check_before_training(config)
    held = run_folder.claim(out_dir, config.name, config.method, claim_token) if distributed.is_main() else None
    run_dir = held.path if held else run_folder.resolve_run_dir(out_dir, config.name, config.method)

    def body() -> dict[str, Any]:
        ctx = _build(config, run_dir, callbacks, stop)
        with _closing(ctx.callbacks):
            return _run(ctx, StartState(0, torch.Generator().manual_seed(config.seed),
                                        Selection(config.train.select)))

    try:
        return distributed.run_in_group(body)
    except BaseException:
        if held is not None:
            run_folder.release(held)
        raise
    finally:
        if held is not None:
            run_folder.let_go(held)  # the folder's lock: held while training, never after


def check_before_training(config: Config) -> None:
    """What can be refused before any data loads or any folder is claimed (by `lnl train` and by its
    --dry-run alike): a train.init_from that is missing or of other data or another backbone, model
    selection on a validation split that the config leaves out, and pretrained weights whose package is
    not installed."""
    models.check_weights_installed(config)
    given = config.train.init_from
    if given:
        path = run_folder.model_checkpoint(expand_path(given))
        if not path.is_file():
            raise ConfigError(f"train.init_from: no checkpoint at {given} (give a run's last.pt or best.pt, or its "
                              "folder)")
        check_init_source(config, path)
    if config.train.select != LAST and DATASETS[config.data.type].has_validation(config) is False:
        raise ConfigError(_no_validation(config))


def preflight(config: Config) -> list[str]:
    """What `lnl train --dry-run` finds beyond :func:`check_before_training`, without training: the data
    on disk (MNIST's files, each manifest or folder and its first images) and a weights file, which raise
    what the run would raise; and what the run would only warn about (a schedule that never reaches its
    adversarial phase), returned."""
    check_before_training(config)
    DATASETS[config.data.type].preflight(config)
    weights = config.model.pretrained
    if weights is not None and weights != models.IMAGENET and not expand_path(weights).is_file():
        raise ConfigError(f"model.pretrained: no weights file at {weights}")
    return [message for message in [_schedule_warning(config, build_algorithm(config, _PREFLIGHT_TASK, False))]
            if message]


# Networks sized for a schedule question only: their shapes do not matter.
_PREFLIGHT_TASK = TaskSpec(num_classes=2, num_bias_classes=2, bias_bins=8)


def _schedule_warning(config: Config, algorithm: Algorithm) -> str | None:
    start = algorithm.first_adversarial_epoch()
    if start is not None and start >= config.train.epochs:
        return (f"{' + '.join(algorithm.warm_up_keys)} = {start} covers all {config.train.epochs} epochs: this run "
                "never reaches the adversarial phase")
    return None


def _no_validation(config: Config) -> str:
    return (f"train.select={config.train.select} needs a validation split, and this {config.data.type} data has "
            "none; give it one (see the README) or use train.select=last")


def resume_training(run_dir: Path, overrides: Iterable[str] | dict[str, Any] = (),
                    callbacks: TrainCallbacks | None = None, stop: StopRequest | None = None) -> dict[str, Any]:
    """Continue a run from its checkpoint: weights, optimizers, epoch, batch order and partial epoch.

    Only keys in RESUME_SAFE_KEYS may change (e.g. more epochs, another device). Rank 0 holds the
    folder's lock throughout: a second resume of the same folder is refused, not a second writer."""
    run_dir = Path(run_dir)
    with run_folder.locked(run_dir) if distributed.is_main() else contextlib.nullcontext():
        return _resume(run_dir, overrides, callbacks, stop)


def _resume(run_dir: Path, overrides: Iterable[str] | dict[str, Any], callbacks: TrainCallbacks | None,
            stop: StopRequest | None) -> dict[str, Any]:
    path = run_folder.resume_checkpoint(run_dir)
    run_folder.check_resumable(run_dir)
    checkpoint = load_checkpoint(path)
    callbacks = callbacks or TrainCallbacks()
    config = resume_state.resume_config(checkpoint, path, overrides, callbacks)
    start = resume_state.start_state(checkpoint, config, path)
    resume_state.check_epochs(config, start, run_dir)
    if start.epoch >= config.train.epochs and start.partial_epoch is None:
        callbacks.on_message(f"{run_dir} already finished its {config.train.epochs} epochs; nothing to do "
                             "(pass train.epochs=N to extend it)")
        return {**(run_folder.read_summary(run_dir) or {"run_dir": str(run_dir)}), "already_finished": True}
    if distributed.is_main():
        resume_state.trim_metrics(run_dir, start.epoch, callbacks)
        run_folder.remove_stale_temp_files(run_dir)

    def body() -> dict[str, Any]:
        ctx = _build(config, run_dir, callbacks, stop, checkpoint)
        resume_state.restore_rng(checkpoint.get(Field.RNG))
        with _closing(ctx.callbacks):
            return _run(ctx, start)

    return distributed.run_in_group(body)


# ---------------------------------------------------------------------------- the loop


def _run(ctx: RunContext, start: StartState) -> dict[str, Any]:
    """Epochs from `start` to train.epochs: train, validate, record, save (and keep the selected model);
    then the selected model is tested, once, and the summary written."""
    config = ctx.config
    _announce(ctx, start.epoch)
    started = time.perf_counter()
    train_seconds, progress, selection = start.train_seconds, start.partial_epoch, start.selection
    for epoch in range(start.epoch, config.train.epochs):
        epoch_start = time.perf_counter()
        checks: dict[str, float] = {}

        def check_inside_epoch(epoch_progress: EpochProgress, epoch=epoch, epoch_start=epoch_start,
                               checks=checks) -> None:
            """A validation check after `epoch_progress.step` batches; a winner is saved (a resumable
            mid-epoch last.pt) and becomes best.pt."""
            distributed.average_buffers(ctx.algorithm)  # as at an epoch's end: one model, the same on every rank
            value = _evaluate(ctx, ctx.val_split).get(selection.metric.removeprefix(VAL_PREFIX))
            ctx.algorithm.train()
            checks[check_key(selection.metric, epoch_progress.step)] = value
            if selection.offer({"epoch": epoch + 1, "step": epoch_progress.step, selection.metric: value}):
                _save(ctx, epoch, start.batch_order, train_seconds + time.perf_counter() - epoch_start, selection,
                      partial_epoch=epoch_progress.to_dict())
                if distributed.is_main():
                    run_folder.mark_best(ctx.run_dir)

        try:
            losses = _train_epoch(ctx, epoch, start.batch_order, progress,
                                  check_inside_epoch if _checks_inside(ctx, epoch) else None)
        except _Stopped as stopped:
            train_seconds += time.perf_counter() - epoch_start
            distributed.average_buffers(ctx.algorithm)
            _save(ctx, epoch, start.batch_order, train_seconds, selection, partial_epoch=stopped.progress.to_dict())
            raise _interrupted(ctx, f"in epoch {epoch + 1}, step {stopped.progress.step}") from None
        progress = None
        distributed.average_buffers(ctx.algorithm)  # one model to evaluate and save, the same on every rank
        runtime.synchronize(ctx.device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        record: dict[str, Any] = {"epoch": epoch + 1, **losses, **checks, "train_seconds": round(epoch_seconds, 3)}
        if ctx.val_split is not None and ((epoch + 1) % config.train.eval_every == 0
                                          or epoch + 1 == config.train.epochs):
            record.update({VAL_PREFIX + k: v for k, v in _evaluate(ctx, ctx.val_split).items() if k != "num_samples"})
        record["seconds"] = round(time.perf_counter() - epoch_start, 3)
        _record_epoch(ctx, record, start.batch_order, train_seconds, selection)
        ctx.callbacks.on_epoch_end(record)
        if distributed.stop_agreed(ctx.stop) and epoch + 1 < config.train.epochs:
            raise _interrupted(ctx, f"after epoch {epoch + 1}")
    _load_selected(ctx, selection)
    summary = _summary(ctx, _evaluate(ctx, ctx.test_split), time.perf_counter() - started, train_seconds,
                       selection)
    if distributed.is_main():
        run_folder.write_summary(ctx.run_dir, summary)
    return summary


def _load_selected(ctx: RunContext, selection: Selection) -> None:
    """Put the selected epoch's weights (best.pt) into the algorithm when they are not the last ones."""
    if selection.epoch == 0:
        ctx.callbacks.on_message(f"no epoch had a value of {selection.metric} (e.g. a group without validation "
                                 "images); the last epoch's model is tested")
        return
    if selection.at_end_of == ctx.config.train.epochs:
        return
    if distributed.is_main():
        checkpoint = load_checkpoint(run_folder.best_checkpoint_path(ctx.run_dir))
        ctx.algorithm.load_state_dict(checkpoint[Field.MODEL])
    distributed.broadcast_state(ctx.algorithm)


def _record_epoch(ctx: RunContext, record: dict[str, Any], generator: torch.Generator,
                  train_seconds: float, selection: Selection) -> None:
    """The epoch's metrics record, then its checkpoint (also best.pt when the epoch is selected). In this
    order a crash between the two leaves one record too many, which a resume drops (the other order
    would lose the record for good); a save that fails takes the record back at once, so metrics.jsonl
    and last.pt stay a matching pair."""
    epoch = record["epoch"]
    if distributed.is_main():
        run_folder.append_metrics(ctx.run_dir, record)
    try:
        selected = selection.offer(record)
        _save(ctx, epoch, generator, train_seconds, selection)
        if selected and distributed.is_main():
            run_folder.mark_best(ctx.run_dir)
    except OutputError:
        try:
            run_folder.trim_metrics(ctx.run_dir, epoch - 1)
        except OutputError:
            pass  # the resume trims it
        raise


def _checks_inside(ctx: RunContext, epoch: int) -> bool:
    """Whether `epoch` (0-based) gets validation checks inside it: an evaluated epoch past every warm-up
    (the algorithm says which: CSAD has three), whose model is not what a debiasing run selects."""
    train = ctx.config.train
    return (ctx.val_split is not None and train.val_checks_per_epoch > 1
            and epoch >= ctx.algorithm.first_selectable_epoch()
            and ((epoch + 1) % train.eval_every == 0 or epoch + 1 == train.epochs))


def check_steps(steps: int, checks_per_epoch: int) -> set[int]:
    """The batches after which an epoch of `steps` batches is checked on validation, besides its end:
    evenly spaced, at most one per batch."""
    return {round(steps * k / checks_per_epoch) for k in range(1, checks_per_epoch)} - {0, steps}


def check_key(metric: str, step: int) -> str:
    """The epoch record's name of a check inside the epoch (e.g. val_accuracy@step107)."""
    return f"{metric}@step{step}"


def _train_epoch(ctx: RunContext, epoch: int, generator: torch.Generator,
                 progress: EpochProgress | None = None,
                 check: Callable[[EpochProgress], None] | None = None) -> dict[str, Any]:
    """One pass over the training set (or what is left of it); the epoch's mean losses and its phase.

    Loss sums stay on the device between checks. Every PROGRESS_EVERY_STEPS steps, and at once when a
    stop is requested, they are agreed between processes and checked for NaN. `check` (validation
    inside the epoch) is called after each of `check_steps`, with the epoch's progress so far."""
    config, algorithm, split = ctx.config, ctx.algorithm, ctx.dataset.train
    steps = num_batches(sampling.epoch_size(split.labels, split.bias, config.train.sampler), config.train.batch_size,
                        distributed.world_size())
    checked_at = check_steps(steps, config.train.val_checks_per_epoch) if check else set()
    resumed = progress is not None
    progress = progress or EpochProgress(generator.get_state())
    generator.set_state(progress.order_state)
    phase = algorithm.begin_epoch(epoch, resumed)
    ctx.callbacks.on_epoch_start(epoch, config.train.epochs, phase, steps)
    algorithm.train()
    tally = _LossTally.resumed(progress, split.labels.device)
    batches = iterate_batches(split, config.train.batch_size, ctx.dataset.mean, ctx.dataset.std, generator,
                              start_batch=progress.step, shard=(distributed.rank(), distributed.world_size()),
                              sampler=config.train.sampler)
    augment = augmentation.enabled(config.data.augment)
    for step, batch in enumerate(batches, start=progress.step + 1):
        algorithm.begin_step(step)
        if augment:
            seed = augmentation.batch_seed(config.seed, epoch, step, distributed.rank())
            batch = augmentation.augment_batch(batch, config.data.augment, seed)
        tally.add(algorithm.update(batch), len(batch.labels))
        ctx.callbacks.on_steps(step, steps)
        if step in checked_at:
            tally.agree(ctx.stop)
            check(EpochProgress(progress.order_state, step, tally.total_seen, tally.total_floats()))
        report = step % PROGRESS_EVERY_STEPS == 0 or step == steps
        stop_now = ctx.stop.requested and distributed.world_size() == 1
        if not (report or stop_now):
            continue
        tally.agree(ctx.stop)
        _check_finite(tally.totals, epoch, step, ctx.run_dir)
        if report:
            ctx.callbacks.on_losses(tally.means())
        if ctx.stop.requested and step < steps:
            raise _Stopped(EpochProgress(progress.order_state, step, tally.total_seen, tally.total_floats()))
    return tally.means() | {"phase": phase}


class _LossTally:
    """Per-loss sums weighted by batch size, on the device; `totals` are the last agreed global sums."""

    def __init__(self, sums: dict[str, torch.Tensor], seen: int):
        self.sums, self.seen = sums, seen
        self.totals, self.total_seen = sums, seen

    @classmethod
    def resumed(cls, progress: EpochProgress, device: torch.device) -> "_LossTally":
        """A resumed epoch's stored (global) sums are counted once: by rank 0."""
        stored = progress.loss_sums if distributed.is_main() else {}
        seen = progress.seen if distributed.is_main() else 0
        return cls({name: torch.tensor(value, device=device) for name, value in stored.items()}, seen)

    def add(self, losses: dict[str, torch.Tensor], n: int) -> None:
        self.seen += n
        for name, value in losses.items():
            self.sums[name] = self.sums[name] + value * n if name in self.sums else value * n

    def agree(self, stop: StopRequest) -> None:
        self.totals, self.total_seen = distributed.agree(self.sums, self.seen, stop)

    def total_floats(self) -> dict[str, float]:
        return {name: float(total) for name, total in self.totals.items()}

    def means(self) -> dict[str, float]:
        return {name: float(total) / self.total_seen for name, total in self.totals.items()}


def _check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int, run_dir: Path) -> None:
    """TrainingDiverged at a NaN or infinite loss, saying truthfully what is left: the last checkpoint,
    or, when none was saved yet, nothing (the run's folder is given back)."""
    for name, total in sums.items():
        value = float(total)
        if not math.isfinite(value):
            kept = run_folder.checkpoint_path(run_dir)
            left = (f"the last checkpoint saved, {kept}, is kept" if kept.exists() else
                    "no checkpoint had been saved yet, so nothing is kept; lower train.lr or check the data")
            raise TrainingDiverged(f"{name} became {value} in epoch {epoch + 1} by step {step}; {left}")


def _interrupted(ctx: RunContext, where: str) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"interrupted by {ctx.stop.signal_name} {where}; checkpoint saved to "
        f"{run_folder.checkpoint_path(ctx.run_dir)}; continue with `lnl train --resume {ctx.run_dir}`",
        ctx.stop.exit_code)


def _evaluate(ctx: RunContext, split: Split) -> dict[str, Any]:
    """Metrics from per-(label, bias) counts summed over the processes' shards: identical on all."""
    return evaluate_split(ctx.algorithm, split, ctx.dataset, with_cells=False,
                          reduce_counts=distributed.all_reduce_dict)


# ---------------------------------------------------------------------------- setting up


def _build(config: Config, run_dir: Path, callbacks: TrainCallbacks | None, stop: StopRequest | None,
           checkpoint: dict[str, Any] | None = None) -> RunContext:
    """Data on the device, the process group, and the algorithm: new, or restored from `checkpoint`."""
    runtime.apply_threads(config.train.num_threads)
    device = distributed.local_device(runtime.select_device(config.device))
    if callbacks is not None and distributed.is_main():
        callbacks.on_status(f"loading {config.data.type} data")
    dataset = load_dataset(config).to(device)
    if config.train.select != LAST and dataset.val is None:
        raise ConfigError(_no_validation(config))
    _check_bias_values(config, dataset)
    distributed.setup(config.dist.backend, device)  # after the data: a data error needs no process group
    stop = stop or StopRequest()
    stop.armed = True  # from here on a stop is agreed on at a step boundary and saved
    torch.manual_seed(config.seed)
    if checkpoint is None:
        counts = sampling.group_counts(dataset.train.labels, dataset.train.bias, dataset.num_classes,
                                       dataset.num_bias_classes)
        task = TaskSpec(dataset.num_classes, dataset.num_bias_classes, dataset.bias_bins, dataset.in_channels,
                        tuple(dataset.mean), tuple(dataset.std), dataset.class_names, dataset.bias_names,
                        tuple(counts.flatten().tolist()))
        algorithm = build_algorithm(config, task).prepare(device)
        if config.train.init_from:
            epoch = initialise_from(algorithm, config, run_folder.model_checkpoint(expand_path(config.train.init_from)))
            if callbacks is not None and distributed.is_main():
                callbacks.on_message(f"f and g start from {config.train.init_from} (epoch {epoch}); "
                                     "the bias head and the optimizers start fresh")
    else:
        algorithm = _restore(checkpoint, config, run_folder.checkpoint_path(run_dir), device)
    if config.train.sync_batchnorm:
        distributed.convert_sync_batchnorm(algorithm)
    distributed.broadcast_state(algorithm)
    return RunContext(config, run_dir, device, dataset, algorithm, _callbacks(config, run_dir, callbacks),
                      stop, None if dataset.val is None else _shard(dataset.val), _shard(dataset.test))


def _callbacks(config: Config, run_dir: Path, given: TrainCallbacks | None) -> TrainCallbacks:
    """Only rank 0 reports progress; with train.tensorboard it also goes to TensorBoard."""
    if not distributed.is_main():
        return TrainCallbacks()
    if config.train.tensorboard:
        board = tensorboard.TensorBoardCallbacks(run_dir / run_folder.TENSORBOARD_FOLDER)
        return CallbackList(*(c for c in (given, board) if c is not None))
    return given or TrainCallbacks()


@contextlib.contextmanager
def _closing(callbacks: TrainCallbacks) -> Iterator[None]:
    try:
        yield
    finally:
        callbacks.close()


def _restore(checkpoint: dict[str, Any], config: Config, path: Path, device: torch.device) -> Algorithm:
    algorithm = restore_algorithm(checkpoint, config, path).prepare(device)
    try:
        algorithm.load_optimizer_state(checkpoint[Field.OPTIMIZERS])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} has unusable optimizer state ({exc})") from None
    return algorithm


def _shard(split: Split) -> Split:
    """This process's disjoint, strided part of an evaluation split (no padding, no duplicates)."""
    if distributed.world_size() == 1:
        return split
    return split.subset(torch.arange(distributed.rank(), len(split), distributed.world_size(),
                                     device=split.labels.device))


def _check_bias_values(config: Config, dataset: BiasedDataset) -> None:
    """A method with a bias head (every debiasing one) needs a bias with two values or more to remove."""
    if METHODS[config.method].algorithm.has_bias_head and dataset.num_bias_classes < MIN_BIAS_VALUES:
        names = ", ".join(dataset.bias_names) or "one value"
        raise DataError(f"method={config.method} removes a bias, and this data has {dataset.num_bias_classes} bias "
                        f"value ({names}); give it a bias attribute with at least {MIN_BIAS_VALUES} values (data.type="
                        f"folder: data.bias_from) or use method=baseline")


MAX_GROUPS_SHOWN = 4  # empty groups named in the warning; summary.json lists them all


def train_groups(dataset: BiasedDataset) -> dict[str, Any]:
    """The (label, bias) groups of the training split: how many there are, how many hold images, and the
    empty ones by name (label, bias), which no group-aware method can balance or weight."""
    counts = sampling.group_counts(dataset.train.labels, dataset.train.bias, dataset.num_classes,
                                   dataset.num_bias_classes)
    labels = dataset.class_names or tuple(str(i) for i in range(dataset.num_classes))
    bias = dataset.bias_names or tuple(str(i) for i in range(dataset.num_bias_classes))
    empty = [[labels[int(i)], bias[int(j)]] for i, j in (counts == 0).nonzero().tolist()]
    return {"groups": counts.numel(), "with_images": counts.numel() - len(empty), "empty": empty}


def _empty_groups_warning(config: Config, dataset: BiasedDataset) -> str | None:
    """A group-aware run (a method that weights groups, or the group-balanced sampler) is told which
    groups it cannot act on: they have no training image."""
    if not (METHODS[config.method].uses_groups or config.train.sampler == sampling.GROUP_BALANCED):
        return None
    groups = train_groups(dataset)
    if not groups["empty"]:
        return None
    shown = ", ".join("/".join(pair) for pair in groups["empty"][:MAX_GROUPS_SHOWN])
    more = len(groups["empty"]) - MAX_GROUPS_SHOWN
    return (f"{len(groups['empty'])} of {groups['groups']} (label, bias) groups have no training image ({shown}"
            f"{f' and {more} more' if more > 0 else ''}); method={config.method} train.sampler={config.train.sampler} "
            "cannot weight or draw them (summary.json: train_groups)")


def _announce(ctx: RunContext, start_epoch: int) -> None:
    """Write the resolved config (rank 0) and tell the callbacks what is about to run."""
    config = ctx.config
    if distributed.is_main():
        run_folder.write_config(ctx.run_dir, dump_yaml(config))
    for warning in (_schedule_warning(config, ctx.algorithm), _empty_groups_warning(config, ctx.dataset)):
        if warning:
            ctx.callbacks.on_message(warning)
    ctx.callbacks.on_start({
        "run_dir": str(ctx.run_dir), "device": str(ctx.device), "dataset": ctx.dataset.description,
        "train_size": len(ctx.dataset.train), "test_size": len(ctx.dataset.test), "method": config.method,
        "val_size": None if ctx.dataset.val is None else len(ctx.dataset.val),
        "epochs": config.train.epochs, "start_epoch": start_epoch, "processes": distributed.world_size(),
        "num_classes": ctx.dataset.num_classes,
    })


# ---------------------------------------------------------------------------- saving


def _save(ctx: RunContext, epochs_done: int, generator: torch.Generator, train_seconds: float,
          selection: Selection, partial_epoch: dict[str, Any] | None = None) -> None:
    """Rank 0 writes; the weights are the same on every process."""
    if not distributed.is_main():
        return
    checkpoint = make_checkpoint(ctx.algorithm, ctx.config, epochs_done, batch_order_state=generator.get_state(),
                                 rng=resume_state.capture_rng(), train_seconds=train_seconds, partial_epoch=partial_epoch,
                                 selection=selection.to_dict())
    save_checkpoint(run_folder.checkpoint_path(ctx.run_dir), checkpoint)


def _summary(ctx: RunContext, final: dict[str, Any], seconds: float, train_seconds: float,
             selection: Selection) -> dict[str, Any]:
    config = ctx.config
    train = ctx.dataset.train  # every epoch's draws (train.sampler), resumed epochs included
    images = sampling.epoch_size(train.labels, train.bias, config.train.sampler) * config.train.epochs
    return {
        "schema_version": JSON_SCHEMA_VERSION,
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
        "train_seconds": round(train_seconds, 2),  # every segment of a resumed run
        "train_images_per_second": round(images / train_seconds, 1) if train_seconds > 0 else None,
        "val_size": None if ctx.dataset.val is None else len(ctx.dataset.val),
        "train_groups": train_groups(ctx.dataset),
        "selected": selection.to_dict(),  # the epoch whose model was tested (and is best.pt)
        "test": dict(final),              # the selected model on the test set: read once, here
        "checkpoint": str(run_folder.best_checkpoint_path(ctx.run_dir)),
        "last_checkpoint": str(run_folder.checkpoint_path(ctx.run_dir)),
        "versions": {"lnl": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    }
