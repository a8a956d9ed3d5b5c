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
    """The best epoch so far by `metric` (1-based; 0: none yet) and its value (None for `last`).

    `step` is 0 when the model is the one at the end of `epoch`; a check inside an epoch
    (``train.val_checks_per_epoch``) that wins records the batches of `epoch` trained before it."""

    metric: str = LAST
    epoch: int = 0
    value: float | None = None
    step: int = 0

    def offer(self, record: dict[str, Any]) -> bool:
        """Take `record` (one epoch's metrics, or a check inside epoch `record["epoch"]` after
        `record["step"]` batches) if it beats the best so far; True when it does.

        `last` takes every epoch. A metric takes a record only when it has a value for it (an
        epoch without evaluation, or a group with no images, has none); ties keep the earlier one."""
        step = int(record.get("step", 0))
        if self.metric == LAST:
            self.epoch, self.step = int(record["epoch"]), step
            return True
        value = record.get(self.metric)
        if value is None or (self.value is not None and value <= self.value):
            return False
        self.epoch, self.value, self.step = int(record["epoch"]), float(value), step
        return True

    @property
    def at_end_of(self) -> int:
        """The epoch whose final model was selected; 0 when a check inside an epoch was."""
        return 0 if self.step else self.epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any] | None, metric: str) -> "Selection":
        """The saved selection of a resumed run (a checkpoint from before selection existed: none yet)."""
        if not stored or stored.get("metric") != metric:
            return cls(metric)
        value = stored.get("value")
        return cls(metric, int(stored.get("epoch", 0)), None if value is None else float(value),
                   int(stored.get("step", 0)))


def selected_model_text(selected: dict[str, Any]) -> str:
    """Where a summary's selected model comes from: "epoch 3", or "epoch 3, step 107" for a check inside
    the epoch (train.val_checks_per_epoch)."""
    step = selected.get("step") or 0
    return f"epoch {selected.get('epoch')}" + (f", step {step}" if step else "")
