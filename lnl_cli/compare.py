"""One row per run folder: key config values and final metrics, for `lnl compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lnl_cli.errors import ConfigError

PROBE_FILE = "probe.json"
CONFIG_COLUMNS = ("method", "data.color_var", "seed", "train.epochs", "train.pretrain_epochs", "train.lr",
                  "lnl.lambda", "lnl.grl_scale", "lnl.step")
METRIC_COLUMNS = ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy",
                  "bias_head_accuracy", "leakage", "seconds")
COLUMNS = ("run",) + CONFIG_COLUMNS + METRIC_COLUMNS


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _dotted(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def run_row(run_dir: Path) -> dict[str, Any]:
    summary = _read_json(run_dir / "summary.json")
    if summary is None:
        raise ConfigError(f"{run_dir} has no readable summary.json (not a finished lnl run)")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    row: dict[str, Any] = {"run": str(run_dir)}
    row.update({key: _dotted(config, key) for key in CONFIG_COLUMNS})
    row.update({key: summary.get("test", {}).get(key) for key in METRIC_COLUMNS[:5]})
    probe = _read_json(run_dir / PROBE_FILE)
    row["leakage"] = probe["leakage"]["mean"] if probe else None
    row["seconds"] = summary.get("seconds")
    return row


def compare_runs(run_dirs: list[Path], sort_by: str | None = None, descending: bool = True) -> list[dict[str, Any]]:
    if sort_by is not None and sort_by not in COLUMNS:
        raise ConfigError(f"cannot sort by '{sort_by}'; columns: {', '.join(COLUMNS)}")
    rows = [run_row(Path(d)) for d in run_dirs]
    if sort_by is not None:
        present = [r for r in rows if r[sort_by] is not None]
        missing = [r for r in rows if r[sort_by] is None]
        rows = sorted(present, key=lambda r: r[sort_by], reverse=descending) + missing
    return rows
