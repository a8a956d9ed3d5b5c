"""Where and how this process computes: the device, CPU threads, and stop requests from signals.

Shared by training, evaluation and probing, so none of them needs the training engine. torch is
imported where a device is used, so that the CLI's fast paths (`--version`, `presets`) never load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lnl_cli.errors import ConfigError

if TYPE_CHECKING:
    import torch


def select_device(requested: str) -> "torch.device":
    """`device` from the config: auto picks CUDA when there is one."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def apply_threads(num_threads: int | None) -> None:
    """train.num_threads, when set; else torch's default (all cores)."""
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


def synchronize(device: "torch.device") -> None:
    """Wait for queued GPU work, so that a wall-clock time measures it."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


@dataclass
class StopRequest:
    """Set from a signal handler; the training loop stops at the next step boundary and saves.

    `armed` turns true once the training loop is set up to honour a request (data loaded, every process
    in the group); before that there is nothing to save, and a signal handler may stop at once instead."""

    signal_name: str | None = None
    exit_code: int = 0
    armed: bool = False

    def request(self, signal_name: str, exit_code: int) -> None:
        self.signal_name, self.exit_code = signal_name, exit_code

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
