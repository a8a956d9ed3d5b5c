"""TensorBoard event files for a run (``train.tensorboard: true``), written from the loop's callbacks.

Optional: needs the ``tensorboard`` package (``pip install 'lnl[tensorboard]'``); the config check
refuses ``train.tensorboard=true`` without it, before any work starts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lnl_cli.callbacks import TrainCallbacks

# Record entries that are not per-epoch scalars.
NOT_SCALARS = frozenset({"epoch", "phase"})


def available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardCallbacks(TrainCallbacks):
    """Every numeric entry of an epoch's record as a scalar at that epoch (losses, test metrics, seconds)."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        for name, value in record.items():
            if name not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
