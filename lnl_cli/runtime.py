"""Where and how this process computes: the device, CPU threads, and stop requests from signals.

Shared by training, evaluation and probing, so none of them needs the training engine. torch is
imported where a device is used, so that the CLI's fast paths (`--version`, `presets`) never load it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lnl_cli.errors import ConfigError

if TYPE_CHECKING:
    import torch

# Set by a process that starts `lnl train` children (`lnl sweep --jobs N`) to its pid: a child whose parent
# is gone kills itself instead of training on as an orphan beside the trainer a rerun starts.
PARENT_PID_ENV = "LNL_PARENT_PID"
PARENT_CHECK_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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


# ---------------------------------------------------------------------------- children die with their parent


def die_with_parent(parent_pid: int) -> None:
    """In a child between fork and exec (Popen's preexec_fn): ask Linux to SIGKILL this process when its
    parent dies (PR_SET_PDEATHSIG); if the parent died before that took effect, die now. Elsewhere
    nothing happens here, and :func:`watch_parent` in the child does the same job by polling."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


def watch_parent() -> None:
    """When :data:`PARENT_PID_ENV` names this process's parent, SIGKILL this process as soon as that
    parent is gone (checked every PARENT_CHECK_SECONDS by a daemon thread): the fallback where
    PR_SET_PDEATHSIG is not available, and a second guard where it is."""
    text = os.environ.pop(PARENT_PID_ENV, "")  # not for this process's own children (torchrun's workers)
    if not text.isdigit():
        return
    parent = int(text)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while not _stopped.wait(PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lnl-parent-watch", daemon=True).start()


_stopped = threading.Event()  # never set: the watch lasts as long as the process
