"""Registry of training algorithms; ``method`` in the config picks one by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnl_cli.algorithms.base import Algorithm, Baseline, Gray, TaskSpec
from lnl_cli.algorithms.csad import CrossSampleAdversarialDebiasing
from lnl_cli.algorithms.lnl import BlindEye, LearningNotToLearn, LearningNotToLearnWithProbe

if TYPE_CHECKING:
    from lnl_cli.config import Config

ALGORITHMS: dict[str, type[Algorithm]] = {
    "baseline": Baseline,
    "lnl": LearningNotToLearn,
    "lnl_probe": LearningNotToLearnWithProbe,
    "gray": Gray,
    "blind_eye": BlindEye,
    "csad": CrossSampleAdversarialDebiasing,
}


def build_algorithm(config: "Config", task: TaskSpec, load_pretrained: bool = True) -> Algorithm:
    return ALGORITHMS[config.method](config, task, load_pretrained)


__all__ = ["ALGORITHMS", "Algorithm", "Baseline", "BlindEye", "CrossSampleAdversarialDebiasing", "Gray",
           "LearningNotToLearn", "LearningNotToLearnWithProbe", "TaskSpec", "build_algorithm"]
