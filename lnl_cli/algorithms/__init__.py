"""Registry of training algorithms; ``method`` in the config picks one by name."""

from __future__ import annotations

from lnl_cli.algorithms.base import Algorithm, Baseline, TaskSpec
from lnl_cli.algorithms.lnl import LearningNotToLearn
from lnl_cli.config import Config

ALGORITHMS: dict[str, type[Algorithm]] = {
    "baseline": Baseline,
    "lnl": LearningNotToLearn,
}


def build_algorithm(config: Config, task: TaskSpec) -> Algorithm:
    return ALGORITHMS[config.method](config, task)


__all__ = ["ALGORITHMS", "Algorithm", "Baseline", "LearningNotToLearn", "TaskSpec", "build_algorithm"]
