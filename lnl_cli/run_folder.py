"""The run folder: what `lnl train` writes, under which names, and how the other commands read it.

    runs/<preset>-<method>-N/
      .lnl-claim       made first, exclusively: the folder belongs to this run
      config.yaml      the resolved config
      metrics.jsonl    one JSON record per finished epoch
      results.csv      the same records as a table (one row per epoch), for spreadsheets and pandas
      last.pt          weights, optimizers, epoch, RNG states, selection so far: what --resume continues
      best.pt          the same for the epoch train.select chose: what evaluate, probe-bias, export use
      summary.json     final metrics and timings of a finished run
      probe.json       the last `lnl probe-bias` report of this run's checkpoint (with its hash: stale once it changes)
      probe_splits.json  the last probe record of each split probed (`lnl compare --probe-split`)
      losses.png, accuracy.png   training plots
      tensorboard/     TensorBoard event files (train.tensorboard=true)
      train.log        stderr of a run that `lnl sweep --jobs N` started in a process of its own

While a run trains in a folder it holds a lock on the folder itself (``flock`` on the directory): a
second `lnl train --resume` of it, or a run into it, is refused, and the lock dies with its holder
however it ends (``kill -9`` included), so a claim whose folder nobody holds is stale and is taken over.

Every file name lives here; the engine, compare, plots and probe ask this module. A write that fails
(disk full, read-only folder) is an OutputError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lnl_cli.errors import CheckpointError, ConfigError, OutputError
from lnl_cli.fileio import (NEW_FILE_MODE, append_json_line, atomic_write_json, atomic_write_text, csv_text,
                            output_errors, unshare, write_target)
from lnl_cli.safe_yaml import YamlError, load_yaml

CLAIM_FILE = ".lnl-claim"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.csv"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINT_FILE = "last.pt"   # the latest state: what --resume continues
BEST_FILE = "best.pt"         # the model train.select chose: what evaluate, probe-bias and export use
LEGACY_CHECKPOINT_FILE = "checkpoint.pt"  # the one checkpoint of run folders from before best.pt/last.pt
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"        # what a sweep's `lnl train` subprocess wrote to stderr (appended on resume)
SWEEP_FILE = "sweep.json"     # in an `lnl sweep` folder, beside its points' run folders
PROBE_FILE = "probe.json"
PROBE_SPLITS_FILE = "probe_splits.json"  # the latest probe of each split (see write_probe)
LOSSES_PLOT = "losses.png"
ACCURACY_PLOT = "accuracy.png"
RUNS_FOLDER = Path("runs")
# What a run that never finished an epoch may have written; a released claim removes these.
_UNFINISHED_FILES = (CONFIG_FILE, METRICS_FILE, RESULTS_FILE, SUMMARY_FILE, LOSSES_PLOT, ACCURACY_PLOT)
# Auto-numbered folders taken by concurrent runs before this one gives up (it never should).
MAX_CLAIM_ATTEMPTS = 1000


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def best_checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / BEST_FILE


def resume_checkpoint(run_dir: Path) -> Path:
    """What --resume continues: last.pt (or the checkpoint.pt of a run folder from an older lnl)."""
    last, legacy = checkpoint_path(run_dir), Path(run_dir) / LEGACY_CHECKPOINT_FILE
    return legacy if not last.exists() and legacy.exists() else last


def model_checkpoint(path: Path) -> Path:
    """The checkpoint a command given `path` should read: the file itself, or for a run folder its
    best.pt (else last.pt, else an older lnl's checkpoint.pt)."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidates = (best_checkpoint_path(path), checkpoint_path(path), path / LEGACY_CHECKPOINT_FILE)
    return next((candidate for candidate in candidates if candidate.exists()), candidates[0])


def mark_best(run_dir: Path) -> None:
    """Make best.pt the checkpoint just saved as last.pt: a hard link (no second write; last.pt is
    replaced by a rename later, so the link keeps this epoch's file), or a copy where links fail."""
    last, best = checkpoint_path(run_dir), best_checkpoint_path(run_dir)
    staged = best.with_name(f".{best.name}.tmp")
    with output_errors(best):
        _unlink(staged)
        try:
            os.link(last, staged)
        except OSError:
            shutil.copyfile(last, staged)
        os.replace(staged, best)


def next_run_dir(base: Path, name: str, method: str) -> Path:
    """runs/<preset>-<method>-N with N one more than the highest taken (none taken: 1)."""
    prefix = f"{name}-{method}-"
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    names = [p.name for p in base.iterdir()] if base.is_dir() else []
    taken = [int(m.group(1)) for n in names if (m := pattern.fullmatch(n))]
    return base / f"{prefix}{max(taken, default=0) + 1}"


def resolve_run_dir(out_dir: Path | None, name: str, method: str) -> Path:
    """`out_dir`, or the next free runs/<name>-<method>-N."""
    return Path(out_dir) if out_dir is not None else next_run_dir(RUNS_FOLDER, name, method)


def check_run_dir(out_dir: Path | None, name: str, method: str) -> Path:
    """The run folder to use; refused if it already holds a run. Only a check: :func:`claim` takes the
    folder, atomically, when training starts."""
    run_dir = resolve_run_dir(out_dir, name, method)
    _refuse_taken(run_dir)
    return run_dir


def _refuse_taken(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} is a file")
    if resume_checkpoint(run_dir).exists() or (run_dir / METRICS_FILE).exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; choose another --out")


# ---------------------------------------------------------------------------- the folder lock


class FolderLock:
    """An exclusive ``flock`` on a run folder's directory, held while a run trains in it. The kernel
    drops it when its holder dies, however it dies, so a lock never outlives its run."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def close(self) -> None:
        """Let go of the lock (idempotent: the descriptor is closed once, never a reused number)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def try_lock(run_dir: Path) -> FolderLock | None:
    """The folder's lock, or None when another process holds it. Where the file system cannot lock,
    a lock that locks nothing: the claim file still keeps two new runs apart."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputError(f"cannot open run folder {run_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            return None
    return FolderLock(fd)


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds `run_dir`'s lock (is training in it) right now."""
    if not Path(run_dir).is_dir():
        return False
    held = try_lock(Path(run_dir))
    if held is None:
        return True
    held.close()
    return False


def _in_use_error(run_dir: Path) -> ConfigError:
    return ConfigError(f"run folder {run_dir} is in use: another lnl process is training in it; wait for it to "
                       "end (or stop it), then try again")


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s lock for a resume: a second resume of the same folder, concurrent or by an orphaned
    sweep point, is a ConfigError instead of a second writer. A folder that does not exist is left to
    the caller to report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        yield
        return
    held = try_lock(run_dir)
    if held is None:
        raise _in_use_error(run_dir)
    try:
        yield
    finally:
        held.close()


# ---------------------------------------------------------------------------- claiming a folder


@dataclass(frozen=True)
class RunClaim:
    """A run folder this process holds: its claim file carries `token`. `created`: the outermost folder
    the claim made (the run folder, or a parent it had to make too), which releasing it removes again;
    None when the folder was there already."""

    path: Path
    token: str
    created: Path | None
    lock: FolderLock = field(default_factory=lambda: FolderLock(None), compare=False, repr=False)


def claim(out_dir: Path | None, name: str, method: str, token: str | None = None) -> RunClaim:
    """Take a run folder for one run before anything is written into it: `out_dir`, or the next free
    runs/<name>-<method>-N. The claim file is created exclusively, so of two runs started into the same
    folder exactly one gets it; an auto-numbered run that loses moves on to the next number.

    `token` adopts a claim made for this run by another process (`lnl train --nproc-per-node` claims
    before it starts the workers); any other claimed folder is refused."""
    if out_dir is None:
        return _claim_next(RUNS_FOLDER, name, method)
    run_dir = Path(out_dir)
    _refuse_taken(run_dir)
    created = _make_folder(run_dir, exclusive=False)
    if token is not None and _claim_token(run_dir) == token:
        return RunClaim(run_dir, token, created=None)  # the launcher that made the claim holds the lock
    lock = try_lock(run_dir)
    if lock is None:
        raise _taken_error(run_dir)
    new = RunClaim(run_dir, token or uuid.uuid4().hex, created, lock)
    if not _write_claim_file(new) and not _take_over_stale_claim(new):
        lock.close()
        raise _taken_error(run_dir)
    return new


def _taken_error(run_dir: Path) -> ConfigError:
    return ConfigError(f"run folder {run_dir} is already taken by another run ({run_dir / CLAIM_FILE} exists "
                       "and a live lnl process holds the folder); choose another --out")


def _take_over_stale_claim(new: RunClaim) -> bool:
    """Replace a claim file that no live run stands behind: this process holds the folder's lock and
    the folder holds neither checkpoint nor metrics (checked before), so the run that claimed it died
    before its first checkpoint (``kill -9``, a power cut). False if the claim file cannot be replaced."""
    path = new.path / CLAIM_FILE
    try:
        atomic_write_text(path, _claim_content(new))
    except OSError:
        return False
    return True


def _claim_content(new: RunClaim) -> str:
    return json.dumps({"token": new.token, "pid": os.getpid(), "host": socket.gethostname()}) + "\n"


def _claim_next(base: Path, name: str, method: str) -> RunClaim:
    for _ in range(MAX_CLAIM_ATTEMPTS):
        run_dir = next_run_dir(base, name, method)
        created = _make_folder(run_dir, exclusive=True)
        if created is None:
            continue  # another run made it first
        lock = try_lock(run_dir) or FolderLock(None)  # a folder this process just made: nobody else holds it
        new = RunClaim(run_dir, uuid.uuid4().hex, created, lock)
        if _write_claim_file(new):
            return new
        lock.close()
    raise OutputError(f"no free run folder {base / (name + '-' + method + '-N')} after {MAX_CLAIM_ATTEMPTS} tries")


def _make_folder(run_dir: Path, exclusive: bool) -> Path | None:
    """Make `run_dir` and any missing parents; return the outermost folder made, None if `run_dir` was
    there already (for `exclusive`, a sign that another run made it first)."""
    outermost = run_dir
    while not outermost.parent.exists() and outermost.parent != outermost:
        outermost = outermost.parent
    try:
        run_dir.mkdir(parents=True)
        return outermost
    except FileExistsError:
        if not exclusive and not run_dir.is_dir():
            raise ConfigError(f"run folder {run_dir} is a file") from None
        return None
    except OSError as exc:
        raise OutputError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None


def _write_claim_file(new: RunClaim) -> bool:
    """Create the claim file exclusively; False if another run holds it. On a write error the folder
    is left as it was found."""
    path = new.path / CLAIM_FILE
    content = _claim_content(new)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        _remove_folder(new)
        raise OutputError(f"cannot claim run folder {new.path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
    except OSError as exc:
        _unlink(path)
        _remove_folder(new)
        raise OutputError(f"cannot claim run folder {new.path}: {exc.strerror or exc}") from None
    return True


def _claim_token(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / CLAIM_FILE).read_text())["token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def release(held: RunClaim) -> None:
    """Give back a claim whose run ended without a checkpoint (bad data, a failed write, a NaN in the
    first epoch): remove what the run wrote, and the folder if the claim made it. A folder with a
    checkpoint is kept (it can be resumed or evaluated), and so are files this run did not write.
    Best effort: it runs while another error is on its way to the user. The folder's lock goes too."""
    try:
        _release(held)
    finally:
        held.lock.close()


def let_go(held: RunClaim) -> None:
    """The run is over (finished, interrupted or failed): give up the folder's lock, keep its files."""
    held.lock.close()


def _release(held: RunClaim) -> None:
    if checkpoint_path(held.path).exists():
        return
    owner = _claim_token(held.path)
    if owner == held.token:
        for name in _UNFINISHED_FILES:
            _unlink(held.path / name)
        _remove_tree(held.path / TENSORBOARD_FOLDER)
        _unlink(held.path / CLAIM_FILE)
    elif owner is not None:
        return  # another run holds the folder now
    _remove_folder(held)


def _remove_folder(held: RunClaim) -> None:
    """rmdir the run folder and the parents the claim made, innermost first; rmdir only removes empty
    folders, so nothing this run did not write goes."""
    if held.created is None:
        return
    folder = held.path
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == held.created or folder.parent == folder:
            return
        folder = folder.parent


def _remove_tree(folder: Path) -> None:
    """The TensorBoard event files of a run that never finished an epoch; best effort."""
    shutil.rmtree(folder, ignore_errors=True)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# ---------------------------------------------------------------------------- files other commands write


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a run (claimed, or with a checkpoint or metrics): its files are the run's."""
    folder = Path(folder)
    return any((folder / name).exists() for name in (CLAIM_FILE, CHECKPOINT_FILE, BEST_FILE, LEGACY_CHECKPOINT_FILE,
                                                     METRICS_FILE, SUMMARY_FILE))


def looks_like_checkpoint(path: Path) -> bool:
    """Whether `path` is a torch.save archive (a checkpoint's format) rather than, say, an exported
    TorchScript model, which carries its code. A cheap look at the zip's names, nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return any(name.endswith("/data.pkl") for name in names) and not any("/code/" in name for name in names)


def check_output_file(path: Path, what: str = "--out", force: bool = False) -> Path:
    """The file `lnl export` or `lnl predict --out` may write: refused (ConfigError, exit 2) when it is a
    folder, and, unless `force`, when it would replace a checkpoint or any file of a run folder (a model
    exported over best.pt destroyed the run's selected model). A new file in a run folder is fine."""
    path = Path(path)
    target = write_target(path)
    if target.is_dir():
        raise ConfigError(f"{what} {path} is a folder (an empty {what} means the current one); name a file")
    if force or not target.is_file():
        return path
    if is_run_folder(target.parent):
        raise ConfigError(f"{what} {path} would overwrite {target.name} of the run folder {target.parent}; write "
                          "elsewhere, or pass --force to replace it")
    if looks_like_checkpoint(target):
        raise ConfigError(f"{what} {path} would overwrite the checkpoint {target}; write elsewhere, or pass --force "
                          "to replace it")
    return path


# ---------------------------------------------------------------------------- resuming


def check_resumable(run_dir: Path) -> None:
    """A CheckpointError that says what to do when `run_dir` has nothing to resume: no folder, or a
    folder whose run stopped (was killed) before its first checkpoint, which `lnl train --out` reuses."""
    run_dir = Path(run_dir)
    if resume_checkpoint(run_dir).exists() or not run_dir.is_dir():
        return  # a checkpoint to read, or no folder: the checkpoint loader reports that
    if (run_dir / CLAIM_FILE).exists() or (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir} has no checkpoint to resume: its run stopped before its first epoch "
                              f"finished; train it again with `lnl train --out {run_dir} ...` (the folder is "
                              "taken over) or remove it")


# What an atomic write leaves behind when it is killed mid-write: .<name>.<random>.tmp (and best.pt's staged link).
_TEMP_PREFIXES = tuple(f".{name}." for name in (CHECKPOINT_FILE, BEST_FILE, CONFIG_FILE, RESULTS_FILE,
                                                  SUMMARY_FILE, PROBE_FILE, LOSSES_PLOT, ACCURACY_PLOT,
                                                  CLAIM_FILE))


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temp files of writes that a kill cut short (``.last.pt.x1y2.tmp``, hundreds of MB for
    a large model). Only called under the folder's lock, when no write of this run can be in flight."""
    removed = []
    for path in Path(run_dir).glob(".*.tmp"):
        if path.name.startswith(_TEMP_PREFIXES) and path.is_file():
            _unlink(path)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------- writing


def write_config(run_dir: Path, config_yaml: str) -> None:
    """The resolved config, beside the results (the folder is already claimed)."""
    path = Path(run_dir) / CONFIG_FILE
    with output_errors(path):
        atomic_write_text(path, config_yaml)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """One more epoch in metrics.jsonl, and results.csv rewritten from all of them."""
    path = metrics_path(run_dir)
    with output_errors(path):
        append_json_line(path, record)
    write_results(run_dir)


def write_results(run_dir: Path) -> None:
    """results.csv from metrics.jsonl: a few hundred rows at most, so rewriting it keeps the table whole,
    its columns the union of every epoch's, and it never disagrees with metrics.jsonl."""
    path = Path(run_dir) / RESULTS_FILE
    with output_errors(path):
        atomic_write_text(path, csv_text(read_metrics(run_dir)))


def trim_metrics(run_dir: Path, last_epoch: int) -> int:
    """Cut metrics.jsonl back to the records of epochs up to `last_epoch` (the checkpoint's); return how
    many records were dropped.

    Each epoch's record is appended before its checkpoint is saved, so a crash between the two leaves
    one record the checkpoint does not have; resuming would add it a second time. Everything from the
    first record past `last_epoch` (or the first unreadable line) on goes, in one truncate, which
    needs no free space."""
    path = metrics_path(run_dir)
    if not path.is_file():
        return 0
    with output_errors(path):
        data = path.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        if line.strip() and not _record_within(line, last_epoch):
            break
        keep += len(line)
    dropped = sum(1 for line in data[keep:].splitlines() if line.strip())
    if keep < len(data):
        with output_errors(path):
            unshare(path)  # a hard-linked copy's metrics must not cut the original's
            os.truncate(path, keep)
        write_results(run_dir)
    return dropped


def _record_within(line: bytes, last_epoch: int) -> bool:
    """A whole record (newline-terminated JSON) of an epoch up to `last_epoch`."""
    try:
        return line.endswith(b"\n") and int(json.loads(line)["epoch"]) <= last_epoch
    except (ValueError, KeyError, TypeError):
        return False


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    path = Path(run_dir) / SUMMARY_FILE
    with output_errors(path):
        atomic_write_json(path, summary)


# What probe_splits.json keeps of each split's latest report (probe.json is the whole latest report).
PROBE_RECORD_KEYS = ("checkpoint", "checkpoint_epoch", "checkpoint_sha256", "source", "layer", "probe", "leakage",
                     "relative_leakage", "input_ceiling", "label_bias_dependence", "gate", "passed")


def write_probe(run_dir: Path, report: dict[str, Any]) -> None:
    """probe.json: the latest report; probe_splits.json: the latest record of every split probed so far
    (a probe of EB2 does not erase the balanced split's), so that `lnl compare` can say which split a
    figure comes from. A report without "split" (an older lnl's) is recorded under its source."""
    splits_path = Path(run_dir) / PROBE_SPLITS_FILE
    records = read_probe_splits(run_dir)
    split = report.get("split") or report.get("source") or "test"
    records[split] = {key: report[key] for key in PROBE_RECORD_KEYS if key in report}
    path = Path(run_dir) / PROBE_FILE
    with output_errors(path):
        atomic_write_json(path, report)
    with output_errors(splits_path):
        atomic_write_json(splits_path, records)


def read_probe_splits(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Split name -> the latest probe record of that split (empty when none was kept)."""
    records = _read_json_object(Path(run_dir) / PROBE_SPLITS_FILE) or {}
    return {name: record for name, record in records.items() if isinstance(record, dict)}


def _read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file holding an object, or None when it is missing, unreadable, or anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8
        return None
    return data if isinstance(data, dict) else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """summary.json of a finished run, or None."""
    return _read_json_object(Path(run_dir) / SUMMARY_FILE)


def read_probe(run_dir: Path) -> dict[str, Any] | None:
    """The last probe-bias report kept beside the checkpoint, or None."""
    return _read_json_object(Path(run_dir) / PROBE_FILE)


def probed_checkpoint(run_dir: Path, report: dict[str, Any]) -> Path:
    """The checkpoint file that `report`, the probe.json of `run_dir`, measured.

    `lnl probe-bias` keeps its report in the folder of the checkpoint it probed, so that is the file of
    the recorded checkpoint's name in `run_dir` (a run folder may hold more than one checkpoint); a report
    that names none measured the run's checkpoint."""
    recorded = report.get("checkpoint")
    name = Path(recorded).name if isinstance(recorded, str) else ""
    return Path(run_dir) / name if name else checkpoint_path(run_dir)


def read_config_tree(run_dir: Path) -> dict[str, Any]:
    """config.yaml as a plain nested dict (empty when missing, unreadable or not a mapping)."""
    try:
        tree = load_yaml((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, YamlError):
        return {}
    return tree if isinstance(tree, dict) else {}


def read_config_edits(run_dir: Path) -> dict[str, Any]:
    """config.yaml as a nested dict for resume, which applies what was edited in it: empty when the file
    is missing, a ConfigError when it cannot be read (a broken edit must not be ignored in silence)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        tree = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except YamlError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix or remove it") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return tree


def sweep_points(folder: Path) -> list[Path] | None:
    """The run folders of the finished points of the sweep in `folder` (in grid order), or None when
    `folder` holds no readable sweep.json."""
    data = _read_json_object(Path(folder) / SWEEP_FILE)
    points = data.get("points") if data is not None else None
    if not isinstance(points, list):
        return None
    names = [point.get("name") for point in points if isinstance(point, dict)]
    runs = [Path(folder) / name for name in names if isinstance(name, str) and name and "/" not in name]
    return [run for run in runs if (run / SUMMARY_FILE).is_file()]


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records, oldest first (blank lines skipped)."""
    text = metrics_path(run_dir).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
