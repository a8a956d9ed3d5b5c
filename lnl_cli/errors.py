"""The project's exception types.

The core raises these and never prints or exits; the CLI maps each to a one-line
``Error: ...`` on stderr and the exit code below. This module owns the exit codes: `lnl --help` and
docs/cli.md are written from :data:`ALL_EXIT_CODES`.
"""

from __future__ import annotations

import reprlib
from typing import Any, NamedTuple

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


class ExitCode(NamedTuple):
    value: int
    name: str      # the constant's name above
    summary: str   # a few words, for `lnl --help`
    meaning: str   # the whole rule, for docs/cli.md


ALL_EXIT_CODES = tuple(ExitCode(value, name, summary, meaning) for value, name, summary, meaning in (
    (EXIT_OK, "EXIT_OK", "success", "success"),
    (EXIT_GATE_FAILED, "EXIT_GATE_FAILED", "probe-bias gate failed",
     "`probe-bias` gate failed (the upper 95% bound of leakage above `--max-leakage`, or of relative leakage "
     "above `--max-relative-leakage`); never used for anything else"),
    (EXIT_USAGE, "EXIT_USAGE", "usage or config error",
     "usage or config error (unknown key, bad value, unknown preset, bad flag, run folder taken or empty; for "
     "`sweep`: any point's, a point folder holding a run of another config, another sweep running into the folder)"),
    (EXIT_DATA, "EXIT_DATA", "data error",
     "data error (MNIST missing, unreadable or corrupt; a manifest's CSV, column, row or image; CelebA files)"),
    (EXIT_CHECKPOINT, "EXIT_CHECKPOINT", "checkpoint error",
     "checkpoint error (missing, truncated, unsafe, incompatible, or with fields out of type or range)"),
    (EXIT_DIVERGED, "EXIT_DIVERGED", "training diverged (NaN/inf loss)", "training diverged (NaN or infinite loss)"),
    (EXIT_INTERNAL, "EXIT_INTERNAL", "internal error",
     "internal error (a bug: please report it; `LNL_DEBUG=1` shows the traceback)"),
    (EXIT_IO, "EXIT_IO", "output error",
     "output error: a file or stdout could not be written (disk full, read-only file system, closed stdout, "
     "broken pipe); nothing is left half-written; wins over 1 when probe-bias cannot deliver its verdict"),
    (EXIT_SIGINT, "EXIT_SIGINT", "interrupted (SIGINT)",
     "interrupted by SIGINT (Ctrl-C; a checkpoint is saved first; before training starts nothing is written)"),
    (EXIT_SIGTERM, "EXIT_SIGTERM", "terminated (SIGTERM)", "terminated by SIGTERM (as SIGINT)"),
))
HELP_ON_EXIT_CODES = "Exit codes: " + "; ".join(f"{code.value} {code.summary}" for code in ALL_EXIT_CODES) + "."


# Messages stay one readable line whatever the input: a value is shown in at most MAX_SHOWN characters,
# a config problem in MAX_PROBLEM, at most MAX_PROBLEMS problems are listed, a whole message is at most
# MAX_MESSAGE characters. Longer text ends with an ellipsis.
MAX_SHOWN = 500
MAX_PROBLEM = 800
MAX_PROBLEMS = 20
MAX_MESSAGE = 4000
ELLIPSIS = "..."

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxset = 3, 12, 12, 12, 12
_repr.maxstring, _repr.maxlong, _repr.maxother = MAX_SHOWN, 60, 120


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[:max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def one_line(text: str) -> str:
    """`text` with its line breaks made spaces: an error is one line, whatever a file or value holds."""
    return " ".join(text.splitlines())


def shown(value: Any) -> str:
    """A value as an error message shows it: its repr, bounded without walking all of a huge value."""
    try:
        text = _repr.repr(value)
    except Exception:  # a value whose repr fails is still an input to report, not a crash
        text = f"<{type(value).__name__}>"
    return clip(text, MAX_SHOWN)


class LnlError(Exception):
    """Base of every error a user can cause; carries the exit code the CLI uses."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str = ""):
        super().__init__(clip(one_line(str(message)), MAX_MESSAGE))


class ConfigError(LnlError):
    """A preset, override or flag is wrong. All problems are collected into one message."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str):
        listed = [problems] if isinstance(problems, str) else list(problems)
        self.problems = [clip(str(problem), MAX_PROBLEM) for problem in listed]
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} config problems: " + "; ".join(self.problems[:MAX_PROBLEMS])
            if len(self.problems) > MAX_PROBLEMS:
                message += f"; and {len(self.problems) - MAX_PROBLEMS} more"
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


class PointsFailed(LnlError):
    """Some points of an `lnl sweep` failed (the others were trained); the exit code is the first failed
    point's, in grid order."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint holds NaN or infinite weights: what it predicts means nothing. A warning, not an
    error, so that such a checkpoint can still be inspected (`lnl evaluate` prints it as one line)."""


class SubsetEvaluationWarning(UserWarning):
    """An evaluation scores a random subset of the test split because the training run asked for one
    (data.test_size): said aloud, as the figure is not the whole split's."""


class LabelBiasDependenceWarning(UserWarning):
    """The probe data's label and bias are strongly dependent: a probe that reads the label scores as
    bias leakage there, so the figure overstates what the features keep of the bias itself."""
