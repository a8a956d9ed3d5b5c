"""One row per run folder: key config values and final metrics, for `lnl compare`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lnl_cli import run_folder
from lnl_cli.errors import ConfigError
from lnl_cli.fileio import file_sha256
from lnl_cli.metric_names import SPLIT_METRICS

# The run's own settings; then come what each registered method declares it is compared by (lnl.lambda, ...).
RUN_COLUMNS = ("method", "data.color_var", "seed", "train.epochs", "train.pretrain_epochs", "train.optimizer",
               "train.lr", "train.adversarial_lr", "train.sampler", "train.select")
# The test metrics are the selected model's (selected_epoch: which epoch train.select chose).
METRIC_COLUMNS = (*SPLIT_METRICS, "selected_epoch", "leakage", "leakage_ci_high", "relative_leakage",
                  "probe_split", "probe_stale", "seconds")
SUMMARY_METRICS = SPLIT_METRICS  # read from summary.json's test metrics


def config_columns() -> tuple[str, ...]:
    """The run's settings and every registered method's compare keys (the registry loads torch, which
    `lnl --help` must not: asked for when comparing)."""
    from lnl_cli.algorithms import compare_keys

    return (*RUN_COLUMNS, *compare_keys())


def columns() -> tuple[str, ...]:
    return ("run", *config_columns(), *METRIC_COLUMNS)


def shown_columns(rows: list[dict[str, Any]]) -> list[str]:
    """What a table of `rows` needs: the run, config columns whose values differ between the runs (the
    rest is common to all), and metric columns that any run has."""
    def varies(column: str) -> bool:
        return len({repr(row[column]) for row in rows}) > 1

    def present(column: str) -> bool:
        return any(row[column] is not None for row in rows)

    config = [c for c in config_columns() if varies(c)] or (["method"] if rows else [])
    return ["run", *config, *(c for c in METRIC_COLUMNS if present(c))]


def _dotted(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _number(value: Any) -> float | int | None:
    """A metric as a finite number; anything else a hand-edited or foreign file holds is no value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def run_row(run_dir: Path, probe_split: str | None = None) -> dict[str, Any]:
    """`run_dir`'s config values and metrics; its leakage is the latest probe's, or with `probe_split` that
    split's latest probe (none when it was not probed)."""
    summary = run_folder.read_summary(run_dir)
    if summary is None:
        raise ConfigError(f"{run_dir} has no readable {run_folder.SUMMARY_FILE} (not a finished lnl run)")
    config = run_folder.read_config_tree(run_dir)
    row: dict[str, Any] = {"run": str(run_dir)}
    row.update({key: _dotted(config, key) for key in config_columns()})
    row.update({key: _number(_dotted(summary, f"test.{key}")) for key in SUMMARY_METRICS})
    row["selected_epoch"] = _number(_dotted(summary, "selected.epoch"))
    probe = _probe_record(run_dir, probe_split)
    row["probe_split"] = (probe.get("split") or probe.get("source")) if probe else None
    row["leakage"] = _number(_dotted(probe, "leakage.mean"))
    row["leakage_ci_high"] = _number(_dotted(probe, "leakage.ci_high"))
    row["relative_leakage"] = _number(_dotted(probe, "relative_leakage.mean"))
    row["probe_stale"] = probe_is_stale(run_dir, probe) if probe else None
    # Training time of the whole run, resumed segments included (older summaries: the last segment's wall time).
    row["seconds"] = _number(summary.get("train_seconds", summary.get("seconds")))
    return row


def _probe_record(run_dir: Path, split: str | None) -> dict[str, Any]:
    """The latest probe report, or the latest record of `split` (named) from probe_splits.json."""
    if split is None:
        return run_folder.read_probe(run_dir) or {}
    record = run_folder.read_probe_splits(run_dir).get(split)
    return {**record, "split": split} if record else {}


def probe_is_stale(run_dir: Path, probe: dict[str, Any]) -> bool | None:
    """Whether a probe report measured other weights than its checkpoint file holds now: True when the
    file's SHA-256 differs from the one the report recorded, or the file is gone; None when the report
    recorded none (written by an older lnl, or by hand), as nothing can be said then."""
    recorded = probe.get("checkpoint_sha256")
    if not isinstance(recorded, str):
        return None
    return file_sha256(run_folder.probed_checkpoint(run_dir, probe)) != recorded


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value, then anything else by its text: one order even for hand-edited files."""
    number = _number(value)
    return (0, number) if number is not None else (1, str(value))


def compare_runs(run_dirs: list[Path], sort_by: str | None = None, descending: bool = True,
                 probe_split: str | None = None) -> list[dict[str, Any]]:
    if sort_by is not None and sort_by not in columns():
        raise ConfigError(f"cannot sort by '{sort_by}'; columns: {', '.join(columns())}")
    rows = [run_row(run, probe_split) for run in _expand_sweeps([Path(d) for d in run_dirs])]
    if sort_by is not None:
        present = [r for r in rows if r[sort_by] is not None]
        missing = [r for r in rows if r[sort_by] is None]
        rows = sorted(present, key=lambda r: _sort_key(r[sort_by]), reverse=descending) + missing
    return rows


def _expand_sweeps(paths: list[Path]) -> list[Path]:
    """Each path as given, except an `lnl sweep` folder (sweep.json, no summary.json): its finished points."""
    runs: list[Path] = []
    for path in paths:
        points = None if (path / run_folder.SUMMARY_FILE).exists() else run_folder.sweep_points(path)
        if points is None:
            runs.append(path)
        elif not points:
            raise ConfigError(f"{path} is a sweep without a finished point yet")
        else:
            runs.extend(points)
    return runs
