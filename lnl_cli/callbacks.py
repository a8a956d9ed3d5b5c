"""How the training loop reports progress: a :class:`TrainCallbacks` receives it; the CLI renders it,
TensorBoard records it, a notebook shows it. The loop itself never prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lnl_cli.sweep import Point


class TrainCallbacks:
    """Receives progress; every method is optional."""

    def on_status(self, text: str) -> None:
        """What the run is doing before training starts (e.g. loading data)."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None: ...

    def on_steps(self, done: int, steps: int) -> None:
        """After every training step: cheap to call, so displays can refresh on their own clock."""

    def on_losses(self, losses: dict[str, float]) -> None:
        """The epoch's running mean losses so far, every few steps (where they are checked anyway)."""

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...
    def on_message(self, text: str) -> None: ...
    def close(self) -> None:
        """The run ended (finished, stopped or failed): release files and displays."""


class CallbackList(TrainCallbacks):
    """Several receivers, called in order."""

    def __init__(self, *callbacks: TrainCallbacks):
        self.callbacks = callbacks

    def on_status(self, text: str) -> None:
        for callback in self.callbacks:
            callback.on_status(text)

    def on_start(self, info: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_start(info)

    def on_epoch_start(self, epoch: int, epochs: int, phase: str, steps: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_start(epoch, epochs, phase, steps)

    def on_steps(self, done: int, steps: int) -> None:
        for callback in self.callbacks:
            callback.on_steps(done, steps)

    def on_losses(self, losses: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_losses(losses)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(record)

    def on_message(self, text: str) -> None:
        for callback in self.callbacks:
            callback.on_message(text)

    def close(self) -> None:
        for callback in self.callbacks:
            callback.close()


class SweepCallbacks:
    """Receives an `lnl sweep`'s progress, one call per point; every method is optional."""

    def on_point_start(self, point: "Point", total: int, log: Path | None) -> None:
        """A point starts training or resuming (point.action); `log`: where its process's stderr goes
        when it runs in a process of its own."""

    def on_point_end(self, point: "Point", total: int) -> None:
        """A point finished, failed, was interrupted or was skipped as finished before (point.status,
        point.exit_code, point.error, point.result)."""
