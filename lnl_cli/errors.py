"""The project's exception types.

The core raises these and never prints or exits; the CLI maps each to a one-line
``Error: ...`` on stderr and the exit code below (documented in the README).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_CHECKPOINT = 4
EXIT_DIVERGED = 5
EXIT_INTERNAL = 70
EXIT_IO = 74  # sysexits' EX_IOERR
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class LnlError(Exception):
    """Base of every error a user can cause; carries the exit code the CLI uses."""

    exit_code = EXIT_INTERNAL


class ConfigError(LnlError):
    """A preset, override or flag is wrong. All problems are collected into one message."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} config problems: " + "; ".join(self.problems)
        super().__init__(message)


class DataError(LnlError):
    """The dataset is missing, unreadable or inconsistent."""

    exit_code = EXIT_DATA


class CheckpointError(LnlError):
    """A checkpoint is missing, truncated, untrusted or incompatible."""

    exit_code = EXIT_CHECKPOINT


class OutputError(LnlError):
    """A result could not be written: disk full, read-only file system, stdout closed. Nothing
    half-written is left behind."""

    exit_code = EXIT_IO


class TrainingDiverged(LnlError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = EXIT_DIVERGED


class TrainingInterrupted(LnlError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved at a step boundary."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint holds NaN or infinite weights: what it predicts means nothing. A warning, not an
    error, so that such a checkpoint can still be inspected (`lnl evaluate` prints it as one line)."""
