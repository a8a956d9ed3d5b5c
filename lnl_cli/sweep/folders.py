"""What a run folder holds when a sweep wants to train into it, and the lock of a sweep folder.

A sweep never trains over a run it did not ask for. Before anything trains, each point's folder is read
(nothing there yet, a checkpoint but no summary, a finished run) and the config stored there compared
with the config asked for, so that running a sweep again skips what is done, resumes what was cut and
refuses a folder that holds another config. :func:`check_folder` knows nothing of grids or points: a
script that reuses run folders the way a sweep does (benchmarks/reproduce.py) calls it too, through
:func:`lnl_cli.api.check_folder`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from lnl_cli import config as config_module
from lnl_cli import run_folder
from lnl_cli.config import SPECS, Config, get_value
from lnl_cli.errors import ConfigError, shown
from lnl_cli.fileio import output_errors
from lnl_cli.result_keys import RESULT_NEUTRAL_KEYS
from lnl_cli.sweep.grid import canonical_key

LOCK_FILE = ".lnl-sweep.lock"
TRAIN, RESUME, SKIP = "train", "resume", "skip"


@dataclass
class FolderCheck:
    """What a run folder holds, against the config asked for it."""

    action: str                      # TRAIN (nothing there yet), RESUME (a checkpoint, no summary), SKIP (finished)
    stored: Config | None = None     # the config of the run there (None for TRAIN, or no config.yaml to read)
    # the compared keys whose stored value is not the one asked: key -> (stored value, asked value)
    differ: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # RESULT_NEUTRAL_KEYS asked otherwise than stored: what a resume of the run there takes from the asking
    resume_overrides: dict[str, Any] = field(default_factory=dict)


def check_folder(folder: Path, config: Config, label: str, keys: Iterable[str] | None = None,
                 free: Iterable[str] = RESULT_NEUTRAL_KEYS, partial: bool = False) -> FolderCheck:
    """Read `folder` for a run of `config`. `differ` holds the `keys` (default: every config key) outside
    `free` whose value stored there differs from `config`'s; a finished point stored with other values of
    RESULT_NEUTRAL_KEYS is still the same point, and a resumed one takes the values asked now (they are
    RESUME_SAFE_KEYS too, by their definition).

    A ConfigError, its message starting with `label`, when the folder cannot be used: a file, a folder an
    lnl process is training in, metrics but no checkpoint, no config.yaml beside a checkpoint or summary,
    or one that is not a valid config. With `partial`, config.yaml may name only some keys (one written by
    another tool): the keys it leaves out count as asked, and a folder without one is not compared (its
    `stored` is None). Writes nothing."""
    compared = SPECS if keys is None else dict.fromkeys(canonical_key(key) for key in keys)
    unknown = [key for key in compared if key not in SPECS]
    if unknown:
        raise ConfigError([f"{shown(key)} is not a config key" for key in unknown])
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{label}: {folder} is a file")
    if run_folder.in_use(folder):
        raise ConfigError(f"{label}: {folder} is in use: an lnl process is training in it (a run "
                          "started outside this sweep, or a point of another one); wait for it or stop it")
    finished = (folder / run_folder.SUMMARY_FILE).exists()
    checkpoint = run_folder.resume_checkpoint(folder).exists()
    if not finished and not checkpoint:
        if run_folder.metrics_path(folder).exists():
            raise ConfigError(f"{label}: {folder} holds metrics but no checkpoint (a run that never "
                              "saved one); remove the folder to train this point again")
        return FolderCheck(TRAIN)
    action = SKIP if finished else RESUME
    stored = stored_config(folder, label, config if partial else None)
    if stored is None:
        return FolderCheck(action)
    free = frozenset(free)
    differ = {key: (get_value(stored, key), get_value(config, key)) for key in compared
              if key not in free and get_value(stored, key) != get_value(config, key)}
    resume_overrides = {key: get_value(config, key) for key in sorted(RESULT_NEUTRAL_KEYS)
                        if get_value(stored, key) != get_value(config, key)}
    return FolderCheck(action, stored, differ, resume_overrides)


def stored_config(folder: Path, label: str, partial_over: Config | None = None) -> Config | None:
    """The config of the run in `folder`, from its config.yaml; a ConfigError (starting with `label`) when
    that is missing, unreadable or not a valid config. With `partial_over`, config.yaml may name only some
    keys: those it leaves out take `partial_over`'s values, and a folder without one gives None."""
    tree = run_folder.read_config_tree(folder)
    path = Path(folder) / run_folder.CONFIG_FILE
    if not tree:
        if partial_over is not None:
            return None
        raise ConfigError(f"{label}: {path} is missing or unreadable, so the run there cannot be "
                          "checked against this point; remove the folder to train it again")
    try:
        if partial_over is not None:
            return config_module.overlay(partial_over, tree, str(path))
        return config_module.from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {path} is not a valid config ({exc})") from None


def point_result(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """What sweep.json keeps of a run's summary.json: its test metrics, selected epoch and training time."""
    if not isinstance(summary, dict):
        return None
    test = summary.get("test") if isinstance(summary.get("test"), dict) else {}
    selected = summary.get("selected") if isinstance(summary.get("selected"), dict) else {}
    return {"accuracy": test.get("accuracy"), "aligned_accuracy": test.get("aligned_accuracy"),
            "conflicting_accuracy": test.get("conflicting_accuracy"),
            "worst_group_accuracy": test.get("worst_group_accuracy"), "selected_epoch": selected.get("epoch"),
            "seconds": summary.get("train_seconds", summary.get("seconds"))}


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold DIR/.lnl-sweep.lock for the sweep: a second sweep into DIR is refused while this one runs.
    The lock is the kernel's (flock): it goes with the process, however it ends."""
    path = out_dir / LOCK_FILE
    with output_errors(path):
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise ConfigError(f"another lnl sweep is running into {out_dir}" + (f" (pid {holder})" if holder else "")
                              + "; wait for it, or give this sweep its own --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
