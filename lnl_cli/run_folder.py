"""The run folder: what `lnl train` writes, under which names, and how the other commands read it.

    runs/<preset>-<method>-N/
      config.yaml      the resolved config
      metrics.jsonl    one JSON record per finished epoch
      results.csv      the same records as a table (one row per epoch), for spreadsheets and pandas
      checkpoint.pt    weights, optimizers, epoch, RNG states (resume and inference)
      summary.json     final metrics and timings of a finished run
      probe.json       the last `lnl probe-bias` report of this run's checkpoint
      losses.png, accuracy.png   training plots
      tensorboard/     TensorBoard event files (train.tensorboard=true)

Every file name lives here; the engine, compare, plots and probe ask this module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lnl_cli.errors import ConfigError
from lnl_cli.fileio import append_json_line, atomic_write_json, atomic_write_text, csv_text
from lnl_cli.safe_yaml import YamlError, load_yaml

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.csv"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
PROBE_FILE = "probe.json"
LOSSES_PLOT = "losses.png"
ACCURACY_PLOT = "accuracy.png"
RUNS_FOLDER = Path("runs")


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def next_run_dir(base: Path, name: str, method: str) -> Path:
    """runs/<preset>-<method>-N with the first free N."""
    prefix = f"{name}-{method}-"
    taken = [int(m.group(1)) for p in base.glob(prefix + "*")
             if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", p.name))]
    return base / f"{prefix}{max(taken, default=0) + 1}"


def resolve_run_dir(out_dir: Path | None, name: str, method: str) -> Path:
    """`out_dir`, or the next free runs/<name>-<method>-N."""
    return Path(out_dir) if out_dir is not None else next_run_dir(RUNS_FOLDER, name, method)


def check_run_dir(out_dir: Path | None, name: str, method: str) -> Path:
    """The run folder to use; refused if it already holds a run. Created only once training starts
    (:func:`create`), so a run that fails on bad data or config leaves nothing behind."""
    run_dir = resolve_run_dir(out_dir, name, method)
    if checkpoint_path(run_dir).exists() or (run_dir / METRICS_FILE).exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} is a file")
    return run_dir


def create(run_dir: Path, config_yaml: str) -> None:
    """Make the folder and write the resolved config into it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None
    atomic_write_text(run_dir / CONFIG_FILE, config_yaml)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """One more epoch in metrics.jsonl, and results.csv rewritten from all of them (a few hundred rows
    at most, so rewriting keeps the table whole and its columns the union of every epoch's)."""
    append_json_line(run_dir / METRICS_FILE, record)
    atomic_write_text(run_dir / RESULTS_FILE, csv_text(read_metrics(run_dir)))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(run_dir / SUMMARY_FILE, summary)


def write_probe(run_dir: Path, report: dict[str, Any]) -> None:
    atomic_write_json(run_dir / PROBE_FILE, report)


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


def read_config_tree(run_dir: Path) -> dict[str, Any]:
    """config.yaml as a plain nested dict (empty when missing, unreadable or not a mapping)."""
    try:
        tree = load_yaml((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, YamlError):
        return {}
    return tree if isinstance(tree, dict) else {}


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records, oldest first (blank lines skipped)."""
    text = metrics_path(run_dir).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
