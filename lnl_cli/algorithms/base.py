"""What every training algorithm is: it owns its networks and optimizers and exposes
``update(batch) -> losses`` and ``predict(images)`` (the DomainBed shape)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn

from lnl_cli import distributed
from lnl_cli.data.base import IGNORE_INDEX, Batch
from lnl_cli.errors import shown
from lnl_cli.models import build_backbone, keep_norm_statistics, parameter_groups

if TYPE_CHECKING:
    from lnl_cli.config import Config


# What a stored task may ask for: far above any real dataset, far below an allocation that cannot succeed.
MAX_CLASSES = 1 << 16
MAX_BIAS_BINS = 256
MAX_IN_CHANNELS = 16


@dataclass(frozen=True)
class TaskSpec:
    """What the networks need to know of the data; stored in checkpoints."""

    num_classes: int
    num_bias_classes: int
    bias_bins: int
    in_channels: int = 3
    input_mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # normalisation of the inputs the networks see
    input_std: tuple[float, ...] = (1.0, 1.0, 1.0)
    class_names: tuple[str, ...] = ()  # for reports; empty: class indices
    bias_names: tuple[str, ...] = ()
    # Training images per (label, bias) group, label-major (data.sampling.group_index); empty: not recorded
    # (checkpoints of earlier versions). What group-aware methods size their group weights by.
    group_counts: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, values: dict) -> "TaskSpec":
        """A stored task, checked field by field (types and ranges) before any network is sized by it;
        a ValueError or TypeError names the first bad field."""
        if not isinstance(values, dict):
            raise TypeError(f"expected a mapping, got {type(values).__name__}")
        values = dict(values)
        for key in ("input_mean", "input_std", "class_names", "bias_names", "group_counts"):
            if key in values:
                if not isinstance(values[key], (list, tuple)):
                    raise ValueError(f"task.{key} must be a list, got {shown(values[key])}")
                values[key] = tuple(values[key])
        task = cls(**values)
        task._check()
        return task

    def _check(self) -> None:
        for name, low, high in (("num_classes", 1, MAX_CLASSES), ("num_bias_classes", 1, IGNORE_INDEX - 1),
                                ("bias_bins", 0, MAX_BIAS_BINS), ("in_channels", 1, MAX_IN_CHANNELS)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"task.{name} must be an integer in {low}..{high}, got {shown(value)}")
        for name in ("input_mean", "input_std"):
            value = getattr(self, name)
            if len(value) != self.in_channels or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                raise ValueError(f"task.{name} must be {self.in_channels} finite numbers, got {shown(value)}")
        if any(v <= 0 for v in self.input_std):
            raise ValueError(f"task.input_std must be positive, got {shown(self.input_std)}")
        for name, count in (("class_names", self.num_classes), ("bias_names", self.num_bias_classes)):
            value = getattr(self, name)
            if value and (len(value) != count or not all(isinstance(v, str) for v in value)):
                raise ValueError(f"task.{name} must be empty or {count} strings, got {shown(value)}")

        counts = self.group_counts
        if counts and (len(counts) != self.num_classes * self.num_bias_classes or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts)):
            raise ValueError(f"task.group_counts must be empty or {self.num_classes * self.num_bias_classes} "
                             f"counts, got {shown(counts)}")

    @property
    def num_groups(self) -> int:
        return self.num_classes * self.num_bias_classes

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


# Losses update() reports, with their short names in progress lines: f and g's cross-entropy, h's bias loss.
LABEL_LOSS = {"label_loss": "loss"}
HEAD_LOSS = {"bias_loss": "h_loss"}


def no_problems(config: Config) -> list[str]:
    return []


@dataclass(frozen=True)
class MethodSpec:
    """What ``method=<name>`` is, declared by the algorithm's own module (as a dataset's DatasetSpec):
    adding a method means writing its module and one registry line in :mod:`lnl_cli.algorithms`.

    `sections` are the config sections it reads, each a key and the options dataclass declaring its keys
    (several methods may share one, e.g. ``lnl``, with the same class); the config builds them from the
    registry. `losses` maps every loss `update` reports to its short name in progress lines; plots draw
    them. `check` returns the problems of a config choosing this method; `compare_keys` are the config
    keys `lnl compare` shows for its runs; `uses_groups` marks a group-aware method."""

    algorithm: type["Algorithm"]
    summary: str
    sections: tuple[tuple[str, type], ...] = ()
    losses: dict[str, str] = field(default_factory=lambda: dict(LABEL_LOSS))
    check: Callable[["Config"], list[str]] = no_problems
    compare_keys: tuple[str, ...] = ()
    # Weights or draws per (label, bias) group: a group without training images is warned about.
    uses_groups: bool = False


def make_optimizer(params, config: Config) -> torch.optim.Optimizer:
    """train.optimizer over `params` (parameters or param groups) at train.lr (begin_epoch sets each phase's rate): SGD with
    train.momentum (the official LNL code's), or Adam with torch's default betas (0.9, 0.999), as the
    official CSAD code; both add train.weight_decay to the gradient (L2, not AdamW's decoupled decay)."""
    train = config.train
    if train.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    set_lr(optimizer, train.lr)  # groups with an lr_scale (see models.parameter_groups) start scaled too
    return optimizer


def phase_lr(config: Config, epochs_into_phase: int, warm_up: bool = False) -> float:
    """Step decay counted from the start of the current phase, as the official code restarts its
    scheduler when the adversarial phase starts from a baseline checkpoint."""
    train = config.train
    period = (train.pretrain_lr_decay_epochs or train.lr_decay_epochs) if warm_up else train.lr_decay_epochs
    base = train.lr if warm_up or train.adversarial_lr is None else train.adversarial_lr
    return base * train.lr_decay_rate ** (epochs_into_phase // period)


def _allow_compiled_backward_twice() -> None:
    """LNL's single-pass step back-propagates through h's graph twice (retain_graph=True), which a
    compiled backward refuses while it donates its saved buffers; turn the donation off (what torch's
    own error message advises). Process-wide, and only when train.compile is on."""
    functorch_config = getattr(getattr(torch, "_functorch", None), "config", None)
    if functorch_config is not None and hasattr(functorch_config, "donated_buffer"):
        functorch_config.donated_buffer = False


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr`, times its ``lr_scale`` where it has one (model.pretrained_lr_scale's group)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def native_bf16(device: torch.device) -> bool:
    """bf16 pays off on CUDA (Ampere and newer) and on CPUs with AVX512-BF16 or AMX; elsewhere it is emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


class LearningRateRamp:
    """Steps 1..`steps` of a run's first epoch train at step/steps of the rates the phase set (read from
    the optimizers once, before the first step); from step `steps` on, at those rates. The factor depends
    on the step alone, so a run resumed inside the ramp continues it exactly."""

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer], steps: int):
        self.steps = steps
        self.groups = [(group, group["lr"]) for optimizer in optimizers for group in optimizer.param_groups] if steps else []

    def before(self, step: int) -> None:
        if step <= self.steps:
            for group, lr in self.groups:
                group["lr"] = lr * step / self.steps


class Algorithm(nn.Module):
    """Base: f and g trained with cross-entropy. Subclasses add a bias head and their own update."""

    has_bias_head = False
    # The config keys whose epochs precede the adversarial game (see first_adversarial_epoch).
    warm_up_keys: tuple[str, ...] = ("train.pretrain_epochs",)

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        """`load_pretrained=False` when a checkpoint supplies the weights (model.pretrained is not read)."""
        super().__init__()
        self.config = config
        self.task = task
        self.featurizer, self.classifier = build_backbone(config, task.num_classes, task.in_channels,
                                                          load_pretrained)
        self.optimizer = make_optimizer(parameter_groups(config, self.featurizer, self.classifier), config)
        self.label_loss = nn.CrossEntropyLoss()
        self.device_type = "cpu"
        self.autocast_dtype: torch.dtype | None = None
        self.channels_last = False
        self._ramp = LearningRateRamp((), 0)

    def prepare(self, device: torch.device) -> "Algorithm":
        """Move to `device` and pick the fast path there: bf16 autocast where the hardware runs it
        natively, channels-last layout, optional torch.compile."""
        train = self.config.train
        self.to(device)
        self.device_type = device.type
        bf16 = train.precision == "bf16" or (train.precision == "auto" and native_bf16(device))
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.channels_last = train.channels_last
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if train.compile:
            _allow_compiled_backward_twice()
            for module in self.networks():
                module.compile()
        return self

    def networks(self) -> list[nn.Module]:
        return [self.featurizer, self.classifier]

    def train(self, mode: bool = True) -> "Algorithm":
        """Training mode, except the batch norms that keep their statistics (model.bn_eval, frozen stages)."""
        super().train(mode)
        if mode:
            keep_norm_statistics(self.config, self.featurizer, self.classifier)
        return self

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    # -- the interface the engine uses ---------------------------------------------------
    def begin_epoch(self, epoch: int, resumed: bool = False) -> str:
        """Set every learning rate for `epoch` (0-based; `resumed`: the epoch was begun before a resume and
        its optimizer state is the saved one) and return the phase name for logs. The algorithm owns its
        rates: the phase's (:meth:`set_phase`) and, in a run's first epoch, the train.lr_ramp_steps ramp
        that :meth:`begin_step` applies; the engine never touches ``param_groups``."""
        phase = self.set_phase(epoch, resumed)
        self._ramp = LearningRateRamp(self.optimizers().values(), self.config.train.lr_ramp_steps if epoch == 0 else 0)
        return phase

    def begin_step(self, step: int) -> None:
        """Before batch `step` (1-based) of the epoch begun last: the warm-up ramp's rate, if any."""
        self._ramp.before(step)

    def set_phase(self, epoch: int, resumed: bool) -> str:
        """The phase of `epoch` and its rates (see begin_epoch). A baseline run is one long plain
        cross-entropy phase, scheduled like LNL's warm-up."""
        set_lr(self.optimizer, phase_lr(self.config, epoch, warm_up=True))
        return "baseline"

    def first_adversarial_epoch(self) -> int | None:
        """The epoch at which the adversarial game starts (after every warm-up); None: a method without one."""
        return None

    def first_selectable_epoch(self) -> int:
        """The first epoch whose models train.select may choose inside the epoch: after every warm-up, whose
        model is not what a debiasing run is for (a method without a game: after train.pretrain_epochs)."""
        start = self.first_adversarial_epoch()
        return self.config.train.pretrain_epochs if start is None else start

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.classifier(self.features(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The representation the bias is removed from (what the bias head reads)."""
        with self.autocast():
            return self.featurizer(self._input(images))

    def bias_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The bias head's logits of these features (methods with has_bias_head); `labels` for a head
        that predicts the bias given the label."""
        return self.bias_head(features)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def optimizer_state(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers().items()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])

    # -- shared step pieces -------------------------------------------------------------
    @staticmethod
    def _step(*optimizers: torch.optim.Optimizer) -> None:
        """Average the optimizers' gradients over processes (one collective; a no-op in one process),
        then step: each parameter's gradient is averaged exactly once per step, however many backward
        passes built it."""
        distributed.average_gradients(p for opt in optimizers for group in opt.param_groups for p in group["params"])
        for optimizer in optimizers:
            optimizer.step()

    def _classification_step(self, batch: Batch) -> torch.Tensor:
        """One plain cross-entropy step of f and g; returns the (detached) label loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.label_loss(self.predict(batch.images).float(), batch.labels)
        loss.backward()
        self._step(self.optimizer)
        return loss.detach()


class Baseline(Algorithm):
    """Plain cross-entropy on labels: learns whatever predicts them, colour included."""

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"label_loss": self._classification_step(batch)}


# ITU-R BT.601 luma weights, the usual RGB -> gray conversion (PIL's "L" mode uses them too).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class Gray(Baseline):
    """The baseline trained and tested on grayscale copies: hue is gone, brightness remains."""

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        super().__init__(config, task, load_pretrained)
        shape = (1, task.in_channels, 1, 1)
        self.register_buffer("input_mean", torch.tensor(task.input_mean).view(shape), persistent=False)
        self.register_buffer("input_std", torch.tensor(task.input_std).view(shape), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        raw = images * self.input_std + self.input_mean
        gray = (raw * self.luma).sum(dim=1, keepdim=True)
        return super()._input((gray - self.input_mean) / self.input_std)


BASELINE = MethodSpec(Baseline, "cross-entropy")
GRAY = MethodSpec(Gray, "baseline on grayscale copies")
