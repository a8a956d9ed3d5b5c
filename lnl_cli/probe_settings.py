"""What a bias-leakage probe is asked to do: its settings and their checks.

Apart from the probing itself (:mod:`lnl_cli.probe`, which needs torch), so that the CLI can offer
these defaults without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lnl_cli.errors import ConfigError, shown
from lnl_cli.schema import MAX_SEED

LAYERS = ("features", "embedding", "input")
DEFAULT_LAYER = "features"  # what LNL's bias head reads


@dataclass(frozen=True)
class ProbeSettings:
    kind: str = "linear"          # linear | mlp
    layer: str = DEFAULT_LAYER
    seeds: int = 3
    split_seed: int = 0           # fixes the stratified train/held-out split
    source: str = "test"          # which split supplies the (bias-independent) probe data
    steps: int = 600              # optimizer steps per probe, whatever the sample count
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-3
    mlp_hidden: int = 256

    def check(self, max_leakage: float | None = None) -> None:
        """ConfigError listing every bad setting (and a bad gate threshold) together."""
        problems = []
        if max_leakage is not None and not (isinstance(max_leakage, (int, float)) and math.isfinite(max_leakage)
                                            and 0.0 <= max_leakage <= 1.0):
            problems.append(f"--max-leakage must be a number from 0 to 1 (normalised leakage), got {max_leakage!r}")
        if self.kind not in ("linear", "mlp"):
            problems.append(f"--probe must be linear or mlp, got {self.kind!r}")
        if self.layer not in LAYERS:
            problems.append(f"--layer must be one of {', '.join(LAYERS)}, got {self.layer!r}")
        if self.source not in ("test", "train"):
            problems.append(f"--source must be test or train, got {self.source!r}")
        for name in ("seeds", "steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.split_seed <= MAX_SEED:
            problems.append(f"--split-seed must be in 0..{MAX_SEED}, got {shown(self.split_seed)}")
        if problems:
            raise ConfigError(problems)
