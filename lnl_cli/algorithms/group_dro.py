"""Group DRO (Sagawa, Koh, Hashimoto and Liang, "Distributionally Robust Neural Networks for Group
Shifts", ICLR 2020): f and g minimise a weighted sum of the per-group losses, the weights q moving
toward the groups with the highest loss, so that the model is trained for its worst (label, bias) group
instead of the average image.

Every step (their Algorithm 1, in the online form of kohpangwei/group_DRO ``loss.py``): for each group
g in the batch, its mean cross-entropy L_g; q_g <- q_g exp(eta (L_g + C / sqrt(n_g))), then q is
normalised; f and g step on sum_g q_g L_g. ``group_dro.eta`` is the step size (their 0.01), C
``group_dro.adjustment`` (their generalisation adjustment: small groups' losses count more; 0 in most
of their runs, chosen from 0-5). n_g is the group's training images (TaskSpec.group_counts).

Deviations from the reference code: groups absent from a batch keep their weight before normalising
(the reference adds their adjustment term even when absent); groups with no training image start at
weight 0 and stay there (reported by the engine before training). With several processes (torchrun)
the group losses are summed over the global batch before q moves, so q is the same on every process.
The paper's strong weight decay (and early stopping) are train.weight_decay and train.select, not
keys of this method. q is a buffer: saved in checkpoints, restored by a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lnl_cli import distributed
from lnl_cli.algorithms.base import LABEL_LOSS, Algorithm, MethodSpec, TaskSpec
from lnl_cli.data.sampling import group_index
from lnl_cli.schema import option

if TYPE_CHECKING:
    from lnl_cli.config import Config


@dataclass
class GroupDroConfig:
    eta: float = option(0.01, "step size of the group weights q (Sagawa et al.: 0.01)", min=0.0, max=10.0)
    adjustment: float = option(
        0.0, "generalisation adjustment C: each group's loss is raised by C / sqrt(its training images) when q "
             "moves (Sagawa et al. chose it from 0-5; 0: none)", min=0.0, max=100.0)


def initial_weights(task: TaskSpec) -> torch.Tensor:
    """Uniform over the groups that have training images (every group when the task does not say)."""
    if task.group_counts:
        present = torch.tensor(task.group_counts, dtype=torch.float64) > 0
    else:
        present = torch.ones(task.num_groups, dtype=torch.bool)
    weights = present.to(torch.float32)
    return weights / weights.sum().clamp_min(1.0)


def move_weights(weights: torch.Tensor, group_losses: torch.Tensor, present: torch.Tensor, eta: float,
                 adjustment: torch.Tensor) -> torch.Tensor:
    """One exponentiated-gradient step of q toward the groups in the batch (`present`) with high loss."""
    step = torch.where(present, eta * (group_losses + adjustment), torch.zeros_like(group_losses))
    moved = weights * torch.exp(step)
    return moved / moved.sum()


class GroupDRO(Algorithm):
    """Cross-entropy weighted per (label, bias) group by online group weights q (see the module)."""

    def __init__(self, config: Config, task: TaskSpec, load_pretrained: bool = True):
        super().__init__(config, task, load_pretrained)
        self.register_buffer("group_weights", initial_weights(task))
        counts = torch.tensor(task.group_counts or [1] * task.num_groups, dtype=torch.float32)
        self.register_buffer("adjustment", config.group_dro.adjustment / counts.clamp_min(1.0).sqrt(), persistent=False)

    def group_losses(self, losses: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss of every group over the (global) batch, and which groups it held."""
        count = self.task.num_groups
        sums = torch.zeros(count, device=losses.device).index_add(0, groups, losses)
        sizes = torch.zeros(count, device=losses.device).index_add(0, groups, torch.ones_like(losses))
        if distributed.is_distributed():  # one collective; the gradient flows through this process's share
            total = distributed.all_reduce_sum(torch.stack([sums.detach(), sizes]))
            sums, sizes = sums + (total[0] - sums.detach()), total[1]
        return sums / sizes.clamp_min(1.0), sizes > 0

    def update(self, batch) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        losses = F.cross_entropy(self.predict(batch.images).float(), batch.labels, reduction="none")
        group_means, present = self.group_losses(losses, group_index(batch.labels, batch.bias, self.task.num_bias_classes))
        with torch.no_grad():
            self.group_weights.copy_(move_weights(self.group_weights, group_means.detach(), present,
                                                  self.config.group_dro.eta, self.adjustment))
        robust_loss = (self.group_weights * group_means).sum()
        # The gradient is averaged over processes by _step; each process's share of the global group sums
        # gives the global robust loss's gradient when scaled by the world size.
        (robust_loss * distributed.world_size() if distributed.is_distributed() else robust_loss).backward()
        self._step(self.optimizer)
        return {"label_loss": losses.mean().detach(), "robust_loss": robust_loss.detach(),
                "max_group_weight": self.group_weights.max().detach()}


METHOD = MethodSpec(
    GroupDRO, "Sagawa et al. 2020: worst-group training with online group weights",
    sections=(("group_dro", GroupDroConfig),),
    losses={**LABEL_LOSS, "robust_loss": "robust", "max_group_weight": "max_q"},
    compare_keys=("group_dro.eta", "group_dro.adjustment"), uses_groups=True)
