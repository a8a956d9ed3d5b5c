"""What a bias-leakage probe is asked to do: its settings and their checks.

Apart from the probing itself (:mod:`lnl_cli.probe`, which needs torch), so that the CLI can offer
these defaults without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lnl_cli.errors import ConfigError, shown
from lnl_cli.schema import MAX_SEED

LAYERS = ("features", "embedding", "input")
DEFAULT_LAYER = "features"  # what LNL's bias head reads
INPUT_LAYER = "input"       # the images themselves: the ceiling of what any layer can leak
# "val" is offered on every dataset and refused, with a clear error, by those without a validation split.
SOURCES = ("test", "train", "val")
PROBE_KINDS = ("linear", "mlp")
# The level of the bootstrap intervals; the gate compares the upper end of this interval with its threshold.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ProbeSettings:
    kind: str = "linear"          # linear | mlp
    layer: str = DEFAULT_LAYER
    seeds: int = 3
    split_seed: int = 0           # fixes the stratified train/held-out split
    split_seeds: int = 1          # how many splits: split_seed, split_seed + 1, ...
    source: str = "test"          # which split supplies the (bias-independent) probe data
    steps: int = 600              # optimizer steps per probe, whatever the sample count
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    mlp_hidden: int = 256
    # Gate on probe data whose label and bias are strongly dependent (a probe reading the label scores
    # as leakage there): refused unless asked for.
    allow_dependent: bool = False

    @property
    def split_seed_list(self) -> list[int]:
        return list(range(self.split_seed, self.split_seed + self.split_seeds))

    def check(self, max_leakage: Any = None, max_relative_leakage: Any = None) -> None:
        """ConfigError listing every bad setting (and bad gate thresholds) together."""
        problems = []
        for flag, value, meaning in (("--max-leakage", max_leakage, "normalised leakage"),
                                     ("--max-relative-leakage", max_relative_leakage, "leakage / input ceiling")):
            if value is not None and not is_threshold(value):
                problems.append(f"{flag} must be a number from 0 to 1 ({meaning}), got {shown(value)}")
        if self.kind not in PROBE_KINDS:
            problems.append(f"--probe must be {' or '.join(PROBE_KINDS)}, got {self.kind!r}")
        if self.layer not in LAYERS:
            problems.append(f"--layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        if self.source not in SOURCES:
            problems.append(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        for name in ("seeds", "split_seeds", "steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.split_seed <= MAX_SEED:
            problems.append(f"--split-seed must be in 0..{MAX_SEED}, got {shown(self.split_seed)}")
        elif self.split_seeds >= 1 and self.split_seed + self.split_seeds - 1 > MAX_SEED:
            problems.append(f"--split-seed + --split-seeds - 1 must be at most {MAX_SEED}")
        if problems:
            raise ConfigError(problems)


def is_threshold(value: Any) -> bool:
    """A gate threshold: a finite real number from 0 to 1 (leakage is normalised to that range), not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)
