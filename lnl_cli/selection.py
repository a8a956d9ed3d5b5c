"""Model selection on the validation split: which epoch's model becomes best.pt.

``train.select`` names a validation metric to maximise, or ``last``. The choice is made from the
per-epoch records only (validation metrics); the test set is read once, at the end, on the model chosen
here, so nothing about training is decided by looking at it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

LAST = "last"
# Per-epoch metrics are the validation split's, recorded under this prefix (val_accuracy, ...).
VAL_PREFIX = "val_"


@dataclass
class Selection:
    """The best epoch so far by `metric` (1-based; 0: none yet) and its value (None for `last`)."""

    metric: str = LAST
    epoch: int = 0
    value: float | None = None

    def offer(self, record: dict[str, Any]) -> bool:
        """Take `record` (one epoch's metrics) if it beats the best so far; True when it does.

        `last` takes every epoch. A metric takes an epoch only when the record has a value for it (an
        epoch without evaluation, or a group with no images, has none); ties keep the earlier epoch."""
        if self.metric == LAST:
            self.epoch = int(record["epoch"])
            return True
        value = record.get(self.metric)
        if value is None or (self.value is not None and value <= self.value):
            return False
        self.epoch, self.value = int(record["epoch"]), float(value)
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any] | None, metric: str) -> "Selection":
        """The saved selection of a resumed run (a checkpoint from before selection existed: none yet)."""
        if not stored or stored.get("metric") != metric:
            return cls(metric)
        value = stored.get("value")
        return cls(metric, int(stored.get("epoch", 0)), None if value is None else float(value))
