"""Registry of training methods; ``method`` in the config picks one by name.

Adding a method means writing its module (the algorithm, its options, checks and loss names in one
:class:`~lnl_cli.algorithms.base.MethodSpec`) and one line here: the config, ``lnl config keys``,
progress lines, plots and ``lnl compare`` read everything else from the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnl_cli.algorithms import base, csad, group_dro, lnl
from lnl_cli.algorithms.base import Algorithm, Baseline, Gray, MethodSpec, TaskSpec
from lnl_cli.algorithms.csad import CrossSampleAdversarialDebiasing
from lnl_cli.algorithms.lnl import BlindEye, LearningNotToLearn, LearningNotToLearnWithProbe

if TYPE_CHECKING:
    from lnl_cli.config import Config

METHODS: dict[str, MethodSpec] = {
    "baseline": base.BASELINE,
    "lnl": lnl.LNL,
    "lnl_probe": lnl.LNL_PROBE,
    "gray": base.GRAY,
    "blind_eye": lnl.BLIND_EYE,
    "csad": csad.METHOD,
    "group_dro": group_dro.METHOD,
}

ALGORITHMS: dict[str, type[Algorithm]] = {name: spec.algorithm for name, spec in METHODS.items()}


def method_sections() -> dict[str, type]:
    """Every method's config sections, key -> options class, in registry order; a section shared by
    several methods (lnl) must be declared with the same class by each."""
    sections: dict[str, type] = {}
    for name, spec in METHODS.items():
        for key, options in spec.sections:
            if sections.setdefault(key, options) is not options:
                raise TypeError(f"method {name} declares section {key} with another options class")
    return sections


def loss_names() -> dict[str, str]:
    """Every loss a registered method reports, name -> short name, in registry order."""
    return {name: short for spec in METHODS.values() for name, short in spec.losses.items()}


def compare_keys() -> tuple[str, ...]:
    """The method config keys `lnl compare` shows, in registry order, each once."""
    return tuple(dict.fromkeys(key for spec in METHODS.values() for key in spec.compare_keys))


def build_algorithm(config: "Config", task: TaskSpec, load_pretrained: bool = True) -> Algorithm:
    return METHODS[config.method].algorithm(config, task, load_pretrained)


__all__ = ["ALGORITHMS", "METHODS", "Algorithm", "Baseline", "BlindEye", "CrossSampleAdversarialDebiasing", "Gray",
           "LearningNotToLearn", "LearningNotToLearnWithProbe", "MethodSpec", "TaskSpec", "build_algorithm",
           "compare_keys", "loss_names", "method_sections"]
