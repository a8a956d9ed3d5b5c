"""Learning Not to Learn (Kim et al., CVPR 2019).

f and g minimise the label loss plus lambda times the negative entropy of h's prediction
(so f makes the bias unpredictable); h minimises its bias loss while f receives that loss's
gradient reversed and scaled by ``lnl.grl_scale`` (so f removes what h can read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

import torch
import torch.nn.functional as F
from torch import nn

from lnl_cli import distributed
from lnl_cli.algorithms.base import HEAD_LOSS, LABEL_LOSS, Algorithm, MethodSpec, TaskSpec, make_optimizer, phase_lr, set_lr
from lnl_cli.algorithms.grad_reverse import grad_reverse
from lnl_cli.data import DATASETS
from lnl_cli.data.base import IGNORE_INDEX, Batch
from lnl_cli.models import PIXEL_HEAD, CategoricalBiasHead, ColorBiasHead, bias_head_kind
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config


@dataclass
class LnlConfig:
    # `lambda` is a Python keyword, so the attribute is `lambda_`; its config key is `lnl.lambda`.
    lambda_: float = option(0.01, "weight of the negative-entropy (mutual-information) term", min=0.0, key="lambda")
    grl_scale: float = option(0.1, "scale of the reversed bias gradient that reaches f", min=0.0)
    step: Literal["alternating", "single_pass"] = option(
        "alternating", "alternating: the paper's two passes per batch; single_pass: one forward of f, the same "
                       "gradients routed in one update")
    conditional: bool = option(
        False, "h predicts the bias given the label (one set of bias logits per class, the analogue of DomainBed's "
               "CDANN; not in the paper), so f is asked to hide only the bias the label does not explain")


MAX_HEAD_STEPS = 1000  # lnl_probe.head_steps: a typo, not a schedule, beyond this


@dataclass
class LnlProbeConfig:
    """The second adversary of method=lnl_probe (not in the paper): a linear bias classifier on f's flattened
    features, the view probe-bias reads. The lnl section still sets the paper's own h."""

    head_steps: int = option(
        5, "updates of the linear probe head per batch of the game, on f's detached features, before f's "
           "update (more: closer to a probe trained to convergence)", min=1, max=MAX_HEAD_STEPS)
    lambda_: float = option(
        1.0, "weight in f's loss of the negative entropy of the probe head's prediction", min=0.0, key="lambda")
    grl_scale: float = option(
        0.0, "scale of the probe head's reversed cross-entropy in f's loss (0: entropy only; the reversed "
             "cross-entropy of a linear head is unbounded, and at 1.0 training diverged within 20 steps)",
        min=0.0)
    head_lr: Union[float, None] = option(
        None, "learning rate of the probe head; default: the phase's rate, as the paper's h", min_exclusive=0.0)


@dataclass
class BlindEyeConfig:
    confusion_weight: float = option(
        0.1, "weight of the confusion loss (h's prediction vs uniform) in f and g's loss", min=0.0)


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over samples and pixels of sum_k p_k log p_k over the bin axis (dim 1).

    Minimising it maximises the entropy of h's prediction. log_softmax keeps it finite where
    the official code's log(softmax) gives NaN for saturated probabilities.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * log_p).sum(dim=1).mean()


def bias_loss(logits: torch.Tensor, targets: torch.Tensor, heads: int = 1) -> torch.Tensor:
    """Cross-entropy of h, summed over its heads: the colour heads' loss over stroke pixels counts once
    per head as in the official code (every head sees the same pixels); a categorical head has one."""
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX) * heads


def build_bias_head(config: Config, task: TaskSpec, in_channels: int) -> torch.nn.Module:
    """h; with lnl.conditional, num_classes times as many outputs, label-major (see label_slice)."""
    kind = bias_head_kind(config)
    copies = task.num_classes if config.lnl.conditional else 1
    if kind == PIXEL_HEAD:
        return ColorBiasHead(task.bias_bins * copies, in_channels)
    return CategoricalBiasHead(task.num_bias_classes * copies, in_channels, kind, config.model.bias_head_width)


def label_slice(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each sample's own class's bias logits from a conditional head's N x (classes * K) x ... output:
    N x K x ... (what h predicts of the bias given the label)."""
    n, width = logits.shape[:2]
    grouped = logits.reshape(n, num_classes, width // num_classes, *logits.shape[2:])
    return grouped[torch.arange(n, device=logits.device), labels]


def confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between h's prediction and the uniform distribution (Alvi et al., 2018),
    averaged over samples and pixels: lowest when h cannot tell the bins apart."""
    return -F.log_softmax(logits.float(), dim=1).mean(dim=1).mean()


class LearningNotToLearn(Algorithm):
    has_bias_head = True
    feature_term_name = "neg_entropy"

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        super().__init__(config, task, load_pretrained)
        self.bias_head = build_bias_head(config, task, self.featurizer.out_channels)
        self.bias_optimizer = make_optimizer(self.bias_head.parameters(), config)
        self.adversarial = False

    def set_phase(self, epoch: int, resumed: bool = False) -> str:
        warmup = self.config.train.pretrain_epochs
        self.adversarial = epoch >= warmup
        if warmup and epoch == warmup and not resumed:
            # The official LNL phase starts from the baseline's weights with new optimizers: no momentum
            # carried over from the warm-up.
            self.optimizer.state.clear()
        phase_epoch = epoch - warmup if self.adversarial else epoch
        lr = phase_lr(self.config, phase_epoch, warm_up=not self.adversarial)
        set_lr(self.optimizer, lr)
        set_lr(self.bias_optimizer, lr)
        return "adversarial" if self.adversarial else "warm-up"

    def first_adversarial_epoch(self) -> int:
        return self.config.train.pretrain_epochs

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer, "bias_optimizer": self.bias_optimizer}

    def networks(self) -> list[torch.nn.Module]:
        return [self.featurizer, self.classifier, self.bias_head]

    # What f and g add to the label loss (weighted), and how strongly f climbs h's loss.
    def feature_term(self, head_logits: torch.Tensor) -> torch.Tensor:
        return negative_entropy(head_logits)

    @property
    def feature_term_weight(self) -> float:
        return self.config.lnl.lambda_

    @property
    def reversal_scale(self) -> float:
        return self.config.lnl.grl_scale

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.adversarial:
            return {"label_loss": self._classification_step(batch)}
        if self.config.lnl.step == "single_pass":
            label_loss, feature_term, head_loss = self._single_pass_step(batch)
        else:
            label_loss, feature_term = self._feature_step(batch)
            head_loss = self._bias_step(batch)
        return {
            "label_loss": label_loss,
            self.feature_term_name: feature_term,
            "bias_loss": head_loss / self.bias_head.num_heads,  # per head, as the official log
        }

    def bias_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """h's logits of the bias (given each sample's label with lnl.conditional)."""
        logits = self.bias_head(features)
        return label_slice(logits, labels, self.task.num_classes) if self.config.lnl.conditional else logits

    def bias_targets(self, batch: Batch, head_logits: torch.Tensor) -> torch.Tensor:
        return self.bias_head.targets(batch.bias, batch.bias_targets, head_logits)

    def head_loss(self, head_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """h's loss; under torchrun a mean over the valid targets (stroke pixels, or images) of the whole
        global batch: shares hold different numbers of stroke pixels, so plain averaging would weight
        them wrongly."""
        targets = self.bias_targets(batch, head_logits)
        loss = bias_loss(head_logits, targets, self.bias_head.num_heads)
        if not distributed.is_distributed():
            return loss
        return distributed.global_mean(loss, (targets != IGNORE_INDEX).sum())

    def _feature_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(a) f, g <- CE(y) + lambda * feature term (LNL: negative entropy) of h(f(x)); h stays fixed."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bias_head.requires_grad_(False)  # gradients flow through h to f, not into h
        with self.autocast():
            features = self.features(batch.images)
        self.train_extra_adversary(features.detach(), batch)
        with self.autocast():
            label_logits = self.classifier(features)
            head_logits = self.bias_logits(features, batch.labels)
        label_loss = self.label_loss(label_logits.float(), batch.labels)
        term = self.feature_term(head_logits)
        extra = self.extra_adversary_loss(features, batch)
        (label_loss + self.feature_term_weight * term + extra).backward()
        self.bias_head.requires_grad_(True)
        self._step(self.optimizer)
        return label_loss.detach(), term.detach()

    def _bias_step(self, batch: Batch) -> torch.Tensor:
        """(b) h <- its bias loss on f(x) recomputed after (a); f receives the reversed gradient."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bias_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            features = self.features(batch.images)
            features = grad_reverse(features, self.reversal_scale) if self.reversal_scale else features.detach()
            head_logits = self.bias_logits(features, batch.labels)
        loss = self.head_loss(head_logits, batch)
        loss.backward()
        self._step(self.optimizer, self.bias_optimizer)
        return loss.detach()

    def _single_pass_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both updates from one forward of f and h.

        f's gradient is that of CE + lambda * negative entropy minus grl_scale times that of the bias
        loss; h's gradient is that of the bias loss alone; g's that of CE. h is run once on detached
        features so the two upstream gradients can be pulled back through it separately (one full
        and one input-only backward through h), then f is back-propagated once with their sum.
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.bias_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            features = self.features(batch.images)
        self.train_extra_adversary(features.detach(), batch)
        with self.autocast():
            label_logits = self.classifier(features)
            head_input = features.detach().requires_grad_(True)
            head_logits = self.bias_logits(head_input, batch.labels)
        label_loss = self.label_loss(label_logits.float(), batch.labels)
        term = self.feature_term(head_logits)
        head_loss = self.head_loss(head_logits, batch)
        extra = self.extra_adversary_loss(features, batch)
        head_params = [p for p in self.bias_head.parameters() if p.requires_grad]
        torch.autograd.backward(head_loss, inputs=head_params + [head_input], retain_graph=True)
        (term_grad,) = torch.autograd.grad(self.feature_term_weight * term, head_input)
        feature_grad = term_grad - self.reversal_scale * head_input.grad
        torch.autograd.backward([label_loss + extra, features], [None, feature_grad.to(features.dtype)])
        self._step(self.optimizer, self.bias_optimizer)
        return label_loss.detach(), term.detach(), head_loss.detach()

    # -- a second adversary (LearningNotToLearnWithProbe): nothing in the paper's LNL ----------
    def train_extra_adversary(self, features: torch.Tensor, batch: Batch) -> None:
        """Train any further adversary on f's detached features of this batch, before f's update."""

    def extra_adversary_loss(self, features: torch.Tensor, batch: Batch) -> torch.Tensor | float:
        """What any further adversary adds to f's loss (its parameters stay fixed); 0 for the paper's LNL."""
        return 0.0


class BlindEye(LearningNotToLearn):
    """Turning a Blind Eye (Alvi et al., 2018): h learns the bias from f's features without touching
    f; f and g minimise the label loss plus a confusion loss that makes h's prediction uniform.
    No gradient reversal. Same schedule, warm-up and step modes as LNL."""

    feature_term_name = "confusion"

    def feature_term(self, head_logits: torch.Tensor) -> torch.Tensor:
        return confusion_loss(head_logits)

    @property
    def feature_term_weight(self) -> float:
        return self.config.blind_eye.confusion_weight

    @property
    def reversal_scale(self) -> float:
        return 0.0


class LinearProbeHead(nn.Module):
    """A linear classifier of the bias class on f's whole flattened feature map: exactly what `probe-bias`
    trains afresh to measure leakage."""

    def __init__(self, classes: int, feature_shape: torch.Size):
        super().__init__()
        self.linear = nn.Linear(feature_shape.numel(), classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1))


def feature_shape(featurizer: nn.Module, config: Config, in_channels: int) -> torch.Size:
    """Shape of f's output for one image of the configured size (the dataset's rule says which), read
    from a forward pass of a blank image in eval mode: BatchNorm statistics and the RNG stay untouched."""
    side = DATASETS[config.data.type].image_size(config)
    was_training = featurizer.training
    featurizer.eval()
    with torch.no_grad():
        shape = featurizer(torch.zeros(1, in_channels, side, side)).shape[1:]
    featurizer.train(was_training)
    return shape


class LearningNotToLearnWithProbe(LearningNotToLearn):
    """LNL with a probe in the loop (not in the paper; method=lnl_probe).

    The paper's LNL, unchanged (its h, step, lambda and reversal), plus a second adversary: a linear
    classifier of the bias class on f's flattened features, the very view `probe-bias` reads. Every batch
    of the game it takes ``lnl_probe.head_steps`` steps on f's detached features before f's update, so
    that it stays close to a probe trained to convergence; f then minimises ``lnl_probe.lambda`` times the
    negative entropy of its prediction minus ``lnl_probe.grl_scale`` times its cross-entropy (the reversed
    gradient; the probe is not updated by f's loss). Why: LNL's own h sits near chance while a fresh probe
    still reads the bias from f (issue 18); an adversary of the probe's form and strength aims at that.
    """

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        super().__init__(config, task, load_pretrained)
        self.probe_head = LinearProbeHead(task.num_bias_classes,
                                          feature_shape(self.featurizer, config, task.in_channels))
        self.probe_optimizer = make_optimizer(self.probe_head.parameters(), config)
        self._probe_loss = torch.zeros(())

    def set_phase(self, epoch: int, resumed: bool = False) -> str:
        phase = super().set_phase(epoch, resumed)
        set_lr(self.probe_optimizer, self.config.lnl_probe.head_lr or self.optimizer.param_groups[0]["lr"])
        return phase

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "probe_optimizer": self.probe_optimizer}

    def networks(self) -> list[torch.nn.Module]:
        return [*super().networks(), self.probe_head]

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        losses = super().update(batch)
        if self.adversarial:
            losses["probe_loss"] = self._probe_loss
        return losses

    def _probe_cross_entropy(self, features: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.probe_head(features)
        return logits, F.cross_entropy(logits.float(), batch.bias, ignore_index=IGNORE_INDEX)

    def train_extra_adversary(self, features: torch.Tensor, batch: Batch) -> None:
        for _ in range(self.config.lnl_probe.head_steps):
            self.probe_optimizer.zero_grad(set_to_none=True)
            _, loss = self._probe_cross_entropy(features, batch)
            loss.backward()
            self._step(self.probe_optimizer)
        self._probe_loss = loss.detach()

    def extra_adversary_loss(self, features: torch.Tensor, batch: Batch) -> torch.Tensor:
        settings = self.config.lnl_probe
        self.probe_head.requires_grad_(False)  # f's loss moves f only
        logits, loss = self._probe_cross_entropy(features, batch)
        self.probe_head.requires_grad_(True)
        return settings.lambda_ * negative_entropy(logits) - settings.grl_scale * loss


LNL_COMPARED = ("lnl.lambda", "lnl.grl_scale", "lnl.step", "lnl.conditional")

LNL = MethodSpec(LearningNotToLearn, "Kim et al. 2019", sections=(("lnl", LnlConfig),),
                 losses={**LABEL_LOSS, "neg_entropy": "neg_entropy", **HEAD_LOSS}, compare_keys=LNL_COMPARED)
LNL_PROBE = MethodSpec(
    LearningNotToLearnWithProbe, "lnl plus a linear probe of f's features as a second adversary; not in the paper",
    sections=(("lnl", LnlConfig), ("lnl_probe", LnlProbeConfig)),
    losses={**LABEL_LOSS, "neg_entropy": "neg_entropy", **HEAD_LOSS, "probe_loss": "probe_loss"},
    compare_keys=(*LNL_COMPARED, "lnl_probe.lambda", "lnl_probe.grl_scale", "lnl_probe.head_steps"))
BLIND_EYE = MethodSpec(BlindEye, "Alvi et al. 2018", sections=(("lnl", LnlConfig), ("blind_eye", BlindEyeConfig)),
                       losses={**LABEL_LOSS, "confusion": "confusion", **HEAD_LOSS},
                       compare_keys=("lnl.step", "lnl.conditional", "blind_eye.confusion_weight"))
