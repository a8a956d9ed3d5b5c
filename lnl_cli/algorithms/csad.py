"""Cross-Sample Adversarial Debiasing, CSAD (Zhu et al., ICCV 2021, "Learning Bias-Invariant Representation
by Cross-Sample Mutual Information Minimization"; official code: github.com/zwvews/csad, built on the
official LNL code).

Networks. f (the backbone's feature extractor) feeds two branches and an estimator:

- the target branch is g (the backbone's classifier); its embedding (g without its last linear layer,
  the input of the label logits) is the target feature z_t;
- the bias branch: an encoder E_b (f's feature map average-pooled to ``csad.bias_pool`` squared cells,
  then one linear layer to ``csad.feature_width``: the bias feature z_b) and a classifier C_b (per head:
  linear -> leaky ReLU -> linear) that predicts the bias from z_b: on data with per-pixel colour targets
  (Colored-MNIST) each image's colour bin per RGB channel, three heads as in the official code; elsewhere
  the image's bias class;
- the cross-sample mutual-information estimator M: two projections (linear -> leaky ReLU -> linear ->
  leaky ReLU -> linear, L2-normalised) u of z_t and v of z_b. For every pair (i, j) of a batch M scores
  s_ij = <u_i, v_j> (content) + the structural term (P_t log P_b^T + P_b log P_t^T)_ij / 2, where P_t and
  P_b are the batch's similarity graphs of u and of v (a softmax with a learnable temperature,
  symmetrised, propagated by a random walk with restart (1 - c)(I - cA)^-1, symmetrised and
  row-normalised again). Pairs whose images share the bias are positives, the others negatives, and M
  minimises

      L = log(1 + sum_pos exp(-w_p s)) / w_p + log(1 + sum_neg exp(w_n s)) / w_n

  with learnable w_p and w_n: M learns to tell from z_t of one image and z_b of another whether the two
  share the bias, which it can only do as far as z_t carries the bias.

Per batch of the game, in the official order:

1. f, g <- cross-entropy of the label;
2. ``csad.bias_steps`` updates of E_b and C_b <- bias cross-entropy (the heads' mean) on f's features
   of step 1, detached;
3. z_t and z_b from f after step 1; ``csad.mi_steps`` updates of M <- L on them, detached;
4. f alone <- -``csad.lambda`` * L through z_t and z_b (g, E_b and M stay fixed): f maximises the
   estimator's loss, so that the target feature no longer tells which samples share the bias.

Phases by epoch: ``train.pretrain_epochs`` of plain cross-entropy of f and g at ``train.lr`` (the official
baseline pretraining); ``csad.bias_warmup_epochs`` training only the bias branch on f's features at
``train.lr`` (the official bias-branch pretraining; its loss is the heads' sum there, as in the official
code); ``csad.mi_warmup_epochs`` training only M (the official MI pretraining); then the game. The MI
warm-up and the game run at ``train.adversarial_lr``, and every optimizer starts afresh with the MI warm-up,
as the official code creates new optimizers after its pretraining.

Deviations from the official code (also in the CHANGELOG):

- f and g are the configured backbone, split at ``model.feature_layer`` (on Colored-MNIST the LNL paper's
  convnet), not the official CSAD convnet (two 5x5 convolutions of 64 channels with max-pooling, a
  1024-d output, no BatchNorm) with a separate target encoder (linear 1024 -> 128) and target classifier
  (128 -> 64 -> classes): g plays both, and z_t is g's embedding (64-d on the paper convnet), so that
  predictions, probes, exports and ``train.init_from`` see the same f and g as every other method;
- E_b reads f's map average-pooled to ``csad.bias_pool`` x ``csad.bias_pool`` cells (the official encoder
  reads the flattened 4 x 4 map of its own f), so that it fits any backbone and image size;
- an image's colour bin per channel is the floor of the mean of that channel's per-pixel bins over the
  pixels where the channel is non-zero, computed per channel (the official ``view(3, -1)`` assumes equal
  counts in the three channels); a channel that is zero everywhere has bin 0;
- steps 3 and 4 share one forward of f, g's embedding and E_b (the official code recomputes the same
  features for step 4: the same values, but BatchNorm running statistics, which the official networks
  do not have, move once fewer per batch);
- the MI warm-up is ``csad.mi_warmup_epochs`` epochs of its own, counted in ``train.epochs`` and followed
  by the game's learning-rate schedule (official: 2 passes of at most 1,001 batches inside the game's
  first epoch); the bias warm-up follows ``train.pretrain_lr_decay_epochs`` (official: no decay);
- in the bias and estimator warm-ups f runs in training mode without being updated, so its BatchNorm
  running statistics (the official f has no BatchNorm) still follow the batches;
- the optimizer is ``train.optimizer`` (the official code uses Adam: the colored-mnist-csad preset sets it;
  the code default for every method is SGD);
- under bf16 autocast the networks run in bf16, the estimator's similarities, propagation and loss in fp32;
- under torchrun every process pairs the samples of its own share of the batch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lnl_cli.algorithms.base import HEAD_LOSS, LABEL_LOSS, Algorithm, MethodSpec, TaskSpec, make_optimizer, phase_lr, set_lr
from lnl_cli.data import DATASETS
from lnl_cli.data.base import IGNORE_INDEX, Batch
from lnl_cli.models.heads import COLOR_CHANNELS, MAX_HEAD_WIDTH
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config

MAX_POOL_SIDE = 16  # csad.bias_pool: far above the official 4 x 4, far below a linear layer too large to build


@dataclass
class CsadConfig:
    """CSAD (method=csad, Zhu et al., ICCV 2021); every default is the official code's (zwvews/csad: main.py,
    trainer.py, models.py and the README's command)."""

    lambda_: float = option(
        1.0, "weight of the adversarial term: f maximises the cross-sample MI estimator's loss times this "
             "(official --lambda_ 1)", min=0.0, key="lambda")
    alpha: float = option(
        1.0, "initial value of the estimator's learnable weights of positive and negative pairs (official "
             "--alpha 1)", min_exclusive=0.0)
    tau: float = option(
        10.0, "initial value of the estimator's learnable softmax temperatures of the structural similarity "
              "(official --tau 10)", min_exclusive=0.0)
    propagation: float = option(
        0.5, "c of the structural similarity's random walk with restart, (1 - c)(I - cA)^-1 (official 0.5)",
        min=0.0, max_exclusive=1.0)
    bias_steps: int = option(
        10, "updates of the bias branch (encoder and classifier) per batch of the game (official 10)", min=1)
    mi_steps: int = option(10, "updates of the MI estimator per batch of the game (official 10)", min=1)
    bias_warmup_epochs: int = option(
        20, "epochs after train.pretrain_epochs that train only the bias branch on f's features, at train.lr "
            "(official: 20 epochs at the pretraining rate)", min=0)
    mi_warmup_epochs: int = option(
        2, "epochs after the bias warm-up that train only the MI estimator, at train.adversarial_lr (official: "
           "2 passes over the data before the game)", min=0)
    feature_width: int = option(
        128, "width of the bias feature, the bias encoder's output (official 128)", min=1, max=MAX_HEAD_WIDTH)
    bias_pool: int = option(
        4, "f's feature map is average-pooled to this many cells a side before the bias encoder's linear layer "
           "(the official encoder reads its f's 4 x 4 map)", min=1, max=MAX_POOL_SIDE)
    bias_classifier_width: int = option(
        64, "hidden width of each bias-classifier head (official 64)", min=1, max=MAX_HEAD_WIDTH)
    mi_hidden_width: int = option(
        128, "first hidden width of the estimator's two projections (official 128)", min=1, max=MAX_HEAD_WIDTH)
    mi_width: int = option(
        64, "second hidden width and output width of the estimator's projections (official 64)", min=1,
        max=MAX_HEAD_WIDTH)
    bias_target: Literal["auto", "color_bins", "class"] = option(
        "auto", "what the bias branch predicts and which pairs share the bias: color_bins (each image's colour "
                "bin per RGB channel, three heads: the official Colored-MNIST targets), class (the bias class); "
                "auto: color_bins where the data has per-pixel colour targets (colored_mnist), else class")
    same_color_distance: float = option(
        4.0, "color_bins: two images share the bias when the squared distance of their colour-bin vectors is "
             "below this (official 4)", min_exclusive=0.0)


COLOR_TARGETS = "color_bins"
CLASS_TARGETS = "class"
# Added before the logarithm of the propagated similarities, as the official code does (its 1e-7).
LOG_FLOOR = 1e-7

WARM_UP, BIAS_WARM_UP, MI_WARM_UP, GAME = "warm-up", "bias-warm-up", "mi-warm-up", "adversarial"


def bias_target_kind(config: Config) -> str:
    """csad.bias_target with `auto` resolved: colour bins where the data has per-pixel colour targets."""
    kind = config.csad.bias_target
    if kind != "auto":
        return kind
    return COLOR_TARGETS if DATASETS[config.data.type].pixel_bias_targets else CLASS_TARGETS


def check_config(config: Config) -> list[str]:
    """Problems of the csad section against the data (a config choosing method=csad)."""
    if config.csad.bias_target == COLOR_TARGETS and not DATASETS[config.data.type].pixel_bias_targets:
        fitting = [name for name, spec in DATASETS.items() if spec.pixel_bias_targets]
        return [f"csad.bias_target: {COLOR_TARGETS} needs per-pixel colour targets (data.type="
                f"{'|'.join(fitting)}); use class or auto"]
    return []


def image_color_bins(pixel_targets: torch.Tensor) -> torch.Tensor:
    """N x C x h x w per-pixel colour bins (IGNORE_INDEX where ignored) -> N x C: per channel, the floor of
    the mean bin over that channel's valid pixels; 0 for a channel without any (it is zero everywhere)."""
    valid = pixel_targets != IGNORE_INDEX
    total = pixel_targets.masked_fill(~valid, 0).sum(dim=(2, 3))
    count = valid.sum(dim=(2, 3)).clamp(min=1)
    return torch.div(total, count, rounding_mode="floor")


def _kaiming(module: nn.Module) -> None:
    """The official initialisation of the CSAD heads: He-normal weights (fan-in) of every linear map."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")


class BiasEncoder(nn.Module):
    """E_b: f's map average-pooled to pool x pool cells, flattened, one linear layer to `width`."""

    def __init__(self, in_channels: int, pool: int, width: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.linear = nn.Linear(in_channels * pool * pool, width)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        return self.pool(features).flatten(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pooled(features))


class BiasClassifier(nn.Module):
    """C_b: per head linear -> leaky ReLU -> linear, the heads computed as one wide linear layer and one
    grouped 1x1 convolution (the same functions as separate heads). Logits N x classes x heads for
    several heads (cross-entropy over dim 1 takes N x heads targets), N x classes for one."""

    def __init__(self, in_features: int, hidden: int, classes: int, heads: int):
        super().__init__()
        self.heads, self.classes = heads, classes
        self.hidden = nn.Linear(in_features, heads * hidden)
        self.out = nn.Conv1d(heads * hidden, heads * classes, kernel_size=1, groups=heads)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.out(F.leaky_relu(self.hidden(z)).unsqueeze(-1)).view(-1, self.heads, self.classes)
        return logits.transpose(1, 2) if self.heads > 1 else logits[:, 0]


class BiasBranch(nn.Module):
    """E_b then C_b: f's features -> bias logits (what lnl's metrics call the bias head)."""

    def __init__(self, encoder: BiasEncoder, classifier: BiasClassifier):
        super().__init__()
        self.encoder, self.classifier = encoder, classifier

    @property
    def num_heads(self) -> int:
        return self.classifier.heads

    def from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder.linear(pooled))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(features))


def _projection(in_features: int, hidden: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.LeakyReLU(), nn.Linear(hidden, width), nn.LeakyReLU(),
                         nn.Linear(width, width))


def propagate(similarity: torch.Tensor, c: float) -> torch.Tensor:
    """Random walk with restart over a symmetric similarity graph, (1 - c)(I - cA)^-1, symmetrised and
    row-normalised."""
    eye = torch.eye(similarity.shape[0], device=similarity.device, dtype=similarity.dtype)
    walk = torch.linalg.solve(eye - c * similarity, (1 - c) * eye)
    walk = (walk + walk.T) / 2
    return walk / walk.sum(dim=1, keepdim=True)


def _log_one_plus_sum_exp(values: torch.Tensor) -> torch.Tensor:
    """log(1 + sum(exp(values))), stable, and 0 (with zero gradients) when every value is -inf."""
    return torch.logsumexp(torch.cat([values.new_zeros(1), values.flatten()]), dim=0)


class CrossSampleEstimator(nn.Module):
    """M: scores every (target feature of i, bias feature of j) pair of a batch; its loss is low when the
    pairs that share the bias score high and the others low (see the module docstring)."""

    def __init__(self, target_width: int, bias_width: int, hidden: int, width: int, tau: float, alpha: float,
                 propagation: float):
        super().__init__()
        self.target = _projection(target_width, hidden, width)
        self.bias = _projection(bias_width, hidden, width)
        # Learnable, as in the official code: the softmax temperatures of the two similarity graphs and the
        # weights of the positive and negative pairs.
        self.target_temperature = nn.Parameter(torch.tensor(float(tau)))
        self.bias_temperature = nn.Parameter(torch.tensor(float(tau)))
        self.positive_weight = nn.Parameter(torch.tensor(float(alpha)))
        self.negative_weight = nn.Parameter(torch.tensor(float(alpha)))
        self.propagation = propagation

    def _graph(self, embedding: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        graph = F.softmax(temperature * embedding @ embedding.T, dim=1)
        return propagate((graph + graph.T) / 2, self.propagation)

    def forward(self, target_features: torch.Tensor, bias_features: torch.Tensor,
                same_bias: torch.Tensor) -> torch.Tensor:
        """The estimator's loss over the batch; `same_bias`: N x N, True where images i and j share the bias."""
        u, v = self.target(target_features), self.bias(bias_features)  # in autocast's dtype, if any
        with torch.autocast(u.device.type, enabled=False):
            u, v = F.normalize(u.float(), dim=1), F.normalize(v.float(), dim=1)
            content = u @ v.T
            walk_t = self._graph(u, self.target_temperature)
            walk_b = self._graph(v, self.bias_temperature)
            structural = (walk_t @ torch.log(walk_b.T + LOG_FLOOR) + walk_b @ torch.log(walk_t.T + LOG_FLOOR)) / 2
            score = content + structural
            w_pos, w_neg = self.positive_weight, self.negative_weight
            excluded = torch.full_like(score, float("-inf"))
            positives = _log_one_plus_sum_exp(torch.where(same_bias, -w_pos * score, excluded)) / w_pos
            negatives = _log_one_plus_sum_exp(torch.where(same_bias, excluded, w_neg * score)) / w_neg
            return positives + negatives


class CrossSampleAdversarialDebiasing(Algorithm):
    """CSAD: f is trained so that a cross-sample estimator cannot match target features to the bias
    features of other samples that share their bias. See the module docstring."""

    has_bias_head = True
    warm_up_keys = ("train.pretrain_epochs", "csad.bias_warmup_epochs", "csad.mi_warmup_epochs")

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        super().__init__(config, task, load_pretrained)
        csad = config.csad
        self.target_kind = bias_target_kind(config)
        if self.target_kind == COLOR_TARGETS:
            classes, heads = task.bias_bins, COLOR_CHANNELS
        else:
            classes, heads = task.num_bias_classes, 1
        self.bias_head = BiasBranch(BiasEncoder(self.featurizer.out_channels, csad.bias_pool, csad.feature_width),
                                    BiasClassifier(csad.feature_width, csad.bias_classifier_width, classes, heads))
        self.estimator = CrossSampleEstimator(self.classifier.layers[-1].in_features, csad.feature_width,
                                              csad.mi_hidden_width, csad.mi_width, csad.tau, csad.alpha,
                                              csad.propagation)
        _kaiming(self.bias_head)
        _kaiming(self.estimator)
        self.bias_optimizer = make_optimizer(self.bias_head.parameters(), config)
        self.estimator_optimizer = make_optimizer(self.estimator.parameters(), config)
        self.phase = WARM_UP

    # -- schedule ------------------------------------------------------------------------
    def _phase_starts(self) -> tuple[int, int, int]:
        """First epoch of the bias warm-up, of the MI warm-up and of the game."""
        bias_start = self.config.train.pretrain_epochs
        mi_start = bias_start + self.config.csad.bias_warmup_epochs
        return bias_start, mi_start, mi_start + self.config.csad.mi_warmup_epochs

    def first_adversarial_epoch(self) -> int:
        return self._phase_starts()[2]

    def set_phase(self, epoch: int, resumed: bool = False) -> str:
        bias_start, mi_start, game_start = self._phase_starts()
        if epoch < bias_start:
            self.phase, lr = WARM_UP, phase_lr(self.config, epoch, warm_up=True)
        elif epoch < mi_start:
            self.phase, lr = BIAS_WARM_UP, phase_lr(self.config, epoch - bias_start, warm_up=True)
        elif epoch < game_start:
            self.phase, lr = MI_WARM_UP, phase_lr(self.config, epoch - mi_start, warm_up=False)
        else:
            self.phase, lr = GAME, phase_lr(self.config, epoch - game_start, warm_up=False)
        if epoch == mi_start and not resumed:
            # The official code creates new optimizers when its pretraining ends.
            for optimizer in self.optimizers().values():
                optimizer.state.clear()
        for optimizer in self.optimizers().values():
            set_lr(optimizer, lr)
        return self.phase

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer, "bias_optimizer": self.bias_optimizer,
                "estimator_optimizer": self.estimator_optimizer}

    def networks(self) -> list[nn.Module]:
        return [self.featurizer, self.classifier, self.bias_head, self.estimator]

    # -- targets -------------------------------------------------------------------------
    def bias_targets(self, batch: Batch, head_logits: torch.Tensor | None = None) -> torch.Tensor:
        """What C_b predicts: N x 3 colour bins, or the N bias classes."""
        if self.target_kind == COLOR_TARGETS:
            return image_color_bins(batch.bias_targets)
        return batch.bias

    def same_bias(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
        """N x N: whether images i and j share the bias: colour-bin vectors closer than
        csad.same_color_distance (squared, as the official code), or the same bias class."""
        if self.target_kind == COLOR_TARGETS:
            bins = targets.float()
            return (bins[:, None, :] - bins[None, :, :]).pow(2).sum(dim=2) < self.config.csad.same_color_distance
        return targets[:, None] == targets[None, :]

    # -- steps ---------------------------------------------------------------------------
    def target_features(self, features: torch.Tensor) -> torch.Tensor:
        """z_t: g's embedding of f's features (g without its last linear layer)."""
        return self.classifier.layers[:-1](features)

    def _fit_bias(self, pooled: torch.Tensor, targets: torch.Tensor, steps: int, sum_heads: bool) -> torch.Tensor:
        """`steps` updates of E_b and C_b on fixed pooled features of f; the last loss (mean per head)."""
        for _ in range(steps):
            self.bias_optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                logits = self.bias_head.from_pooled(pooled)
            loss = F.cross_entropy(logits.float(), targets)
            (loss * self.bias_head.num_heads if sum_heads else loss).backward()
            self._step(self.bias_optimizer)
        return loss.detach()

    def _fit_estimator(self, z_t: torch.Tensor, z_b: torch.Tensor, same: torch.Tensor, steps: int) -> torch.Tensor:
        """`steps` updates of M on fixed features; the last loss."""
        for _ in range(steps):
            self.estimator_optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.estimator(z_t, z_b, same)
            loss.backward()
            self._step(self.estimator_optimizer)
        return loss.detach()

    def _branch_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)
        with self.autocast():
            return self.target_features(features), self.bias_head.encoder(features)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.phase == WARM_UP:
            return {"label_loss": self._classification_step(batch)}
        targets = self.bias_targets(batch)
        if self.phase == BIAS_WARM_UP:
            with torch.no_grad():
                pooled = self.bias_head.encoder.pooled(self.features(batch.images))
            return {"bias_loss": self._fit_bias(pooled, targets, 1, sum_heads=True)}
        same = self.same_bias(batch, targets)
        if self.phase == MI_WARM_UP:
            with torch.no_grad():
                z_t, z_b = self._branch_features(batch.images)
            return {"mi_loss": self._fit_estimator(z_t, z_b, same, 1)}
        return self._game_step(batch, targets, same)

    def _game_step(self, batch: Batch, targets: torch.Tensor, same: torch.Tensor) -> dict[str, torch.Tensor]:
        csad = self.config.csad
        # 1. f, g <- cross-entropy.
        self.optimizer.zero_grad(set_to_none=True)
        features = self.features(batch.images)
        with self.autocast():
            label_logits = self.classifier(features)
        label_loss = self.label_loss(label_logits.float(), batch.labels)
        label_loss.backward()
        self._step(self.optimizer)
        # 2. E_b, C_b <- bias cross-entropy on step 1's features (before its update, as the official code).
        with torch.no_grad():
            pooled = self.bias_head.encoder.pooled(features.detach())
        bias_loss = self._fit_bias(pooled, targets, csad.bias_steps, sum_heads=False)
        # 3. M <- its loss on the features of the updated f, E_b.
        z_t, z_b = self._branch_features(batch.images)
        self._fit_estimator(z_t.detach(), z_b.detach(), same, csad.mi_steps)
        # 4. f alone <- -lambda * M's loss (gradient ascent on what M can tell).
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            mi_loss = self.estimator(z_t, z_b, same)
        inputs = [p for p in self.featurizer.parameters() if p.requires_grad]
        torch.autograd.backward(-csad.lambda_ * mi_loss, inputs=inputs)
        self._step(self.optimizer)
        return {"label_loss": label_loss.detach(), "bias_loss": bias_loss, "mi_loss": mi_loss.detach()}


METHOD = MethodSpec(CrossSampleAdversarialDebiasing, "Zhu et al. 2021: cross-sample mutual information",
                    sections=(("csad", CsadConfig),),
                    losses={**LABEL_LOSS, **HEAD_LOSS, "mi_loss": "mi_loss"},
                    check=check_config, compare_keys=("csad.lambda",))
