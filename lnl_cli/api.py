"""The public Python API; the CLI commands are thin wrappers over these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from lnl_cli import config as _config
from lnl_cli.config import Config


def load_config(preset: str | Path | None = None, overrides: Iterable[str] | dict[str, Any] = (),
                base: Config | None = None) -> Config:
    """Code defaults (or `base`) < preset (built-in name or YAML path) < overrides (``key=value`` or dotted dict)."""
    return _config.load_config(preset, overrides, base)


def train(config: Config, out_dir: str | Path | None = None, callbacks=None, stop=None) -> dict[str, Any]:
    """Train into a run folder (config.yaml, metrics.jsonl, checkpoint.pt, summary.json); return the summary."""
    from lnl_cli.engine import run_training

    return run_training(config, Path(out_dir) if out_dir is not None else None, callbacks, stop)


def resume(run_dir: str | Path, overrides: Iterable[str] | dict[str, Any] = (), callbacks=None,
           stop=None) -> dict[str, Any]:
    """Continue an interrupted or extended run (only safe keys such as train.epochs may change)."""
    from lnl_cli.engine import resume_training

    return resume_training(Path(run_dir), overrides, callbacks, stop)


def evaluate(checkpoint: str | Path, preset: str | Path | None = None,
             overrides: Iterable[str] | dict[str, Any] = ()) -> dict[str, Any]:
    """Unbiased-test report of a checkpoint: accuracy, aligned/conflicting, per-cell, worst group,
    confusion matrix. The checkpoint's own config is the default; preset and overrides change it."""
    from lnl_cli.evaluation import evaluate_checkpoint

    return evaluate_checkpoint(Path(checkpoint), preset, overrides)
