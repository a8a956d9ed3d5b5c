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


# glibc's mallopt parameters (malloc.h) and the values the training process sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 64 << 20   # tensors below this come from the heap, not from fresh zeroed pages
TRIM_THRESHOLD_BYTES = 512 << 20  # freed heap memory kept up to this, for the next step's tensors


def retain_freed_memory() -> bool:
    """Let glibc reuse the memory of freed tensors instead of handing it back to the kernel.

    A training step allocates and frees tens of megabytes of activations and gradients. With glibc's
    adaptive defaults a varying part of them came back as fresh pages every step (0 to about 18,000 page
    faults per LNL step on the paper's convnet, batch 128), each one a kernel trap that zeroes a page;
    with these settings none do, and the step runs about 7% faster on average on a 2-core CPU. Costs
    memory only up to what the process already peaked at. Process-wide, Linux with glibc only; returns
    whether it was applied."""
    import ctypes
    import platform
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


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
