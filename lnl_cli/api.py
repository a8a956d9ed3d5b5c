"""The public Python API and the one door the CLI uses into the core.

Every command is a function here: :func:`train`, :func:`resume`, :func:`evaluate`, :func:`probe`,
:func:`compare`, :func:`presets`, :func:`load_model`. The CLI (``lnl_cli/cli/``) parses arguments,
calls one of these and renders the result; a notebook calls the same functions. What the CLI
needs besides (the progress and stop interfaces, option defaults) is re-exported here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from lnl_cli import config as _config
from lnl_cli import distributed, run_folder
from lnl_cli.compare import COLUMNS as COMPARE_COLUMNS
from lnl_cli.compare import compare_runs
from lnl_cli.config import Config
from lnl_cli.engine import TrainCallbacks, resume_training, run_training
from lnl_cli.errors import ConfigError, OutputError
from lnl_cli.evaluation import evaluate_checkpoint
from lnl_cli.evaluation import load_model as _load_model
from lnl_cli.plots import PlotsUnavailable, plot_report, plot_training
from lnl_cli.preset_files import builtin_presets, preset_description
from lnl_cli.probe import DEFAULT_LAYER as DEFAULT_PROBE_LAYER
from lnl_cli.probe import ProbeSettings, probe_checkpoint
from lnl_cli.runtime import StopRequest
from lnl_cli.version import __version__

if TYPE_CHECKING:
    from lnl_cli.algorithms import Algorithm

Overrides = Iterable[str] | dict[str, Any]

__all__ = ["COMPARE_COLUMNS", "DEFAULT_PROBE_LAYER", "Config", "PlotsUnavailable", "ProbeSettings", "RunClaim",
           "StopRequest", "TrainCallbacks", "check_run_folder", "claim_run_folder", "compare", "evaluate",
           "is_main_process", "launched_by_torchrun", "load_config", "load_model", "presets", "probe", "resume", "rank",
           "release_run_folder", "train", "write_evaluation_plots", "write_training_plots", "__version__"]


# ---------------------------------------------------------------------------- configs and presets


def load_config(preset: str | Path | None = None, overrides: Overrides = (), base: "Config | None" = None) -> Config:
    """Code defaults (or `base`) < preset (built-in name or YAML path) < overrides (``key=value`` or dotted dict)."""
    return _config.load_config(preset, overrides, base)


def presets() -> dict[str, str]:
    """Name -> one-line description of every built-in preset."""
    return {name: preset_description(path) for name, path in builtin_presets().items()}


# ---------------------------------------------------------------------------- training


RunClaim = run_folder.RunClaim


def _folder(path: str | Path | None, what: str) -> Path | None:
    """`path` as a Path; an empty string is refused (Path("") would silently mean the current folder)."""
    if path is None:
        return None
    if not str(path).strip():
        raise ConfigError(f"{what} is empty, which would mean the current folder; name a folder")
    return Path(path)


def check_run_folder(config: Config, out_dir: str | Path | None = None) -> Path:
    """The run folder `train` would use (`out_dir`, or the next free runs/<preset>-<method>-N); a
    ConfigError when it already holds a run. Only a check: `train` claims the folder itself."""
    return run_folder.check_run_dir(_folder(out_dir, "the run folder (--out)"), config.name, config.method)


def claim_run_folder(config: Config, out_dir: str | Path | None = None) -> RunClaim:
    """Claim the run folder for a run that other processes will train: pass ``claim.token`` to their
    `train` and call :func:`release_run_folder` when they are done. A ConfigError when the folder
    already holds a run or is claimed by another."""
    return run_folder.claim(_folder(out_dir, "the run folder (--out)"), config.name, config.method)


def release_run_folder(claim: RunClaim) -> None:
    """Remove a claimed run folder again if its run left no checkpoint; otherwise keep it."""
    run_folder.release(claim)


def train(config: Config, out_dir: str | Path | None = None, callbacks: "TrainCallbacks | None" = None,
          stop: StopRequest | None = None, claim_token: str | None = None) -> dict[str, Any]:
    """Train into a run folder (config.yaml, metrics.jsonl, checkpoint.pt, summary.json); return the summary.

    The folder is claimed atomically first: of two runs into the same `out_dir` one gets a ConfigError,
    and an auto-numbered run takes the next free number. `claim_token` adopts a :func:`claim_run_folder`
    claim. A run that fails before its first checkpoint leaves no folder behind."""
    return run_training(config, _folder(out_dir, "the run folder (--out)"), callbacks, stop, claim_token)


def resume(run_dir: str | Path, overrides: Overrides = (), callbacks: "TrainCallbacks | None" = None,
           stop: StopRequest | None = None) -> dict[str, Any]:
    """Continue an interrupted or extended run (only safe keys such as train.epochs may change, also
    when edited in the run's config.yaml)."""
    return resume_training(_folder(run_dir, "the run folder to resume (--resume)"), overrides, callbacks, stop)


def write_training_plots(run_dir: str | Path) -> list[Path]:
    """losses.png and accuracy.png in the run folder (rank 0 only); PlotsUnavailable without matplotlib."""
    if not distributed.is_main():
        return []
    return plot_training(Path(run_dir))


# ---------------------------------------------------------------------------- using a trained model


def evaluate(checkpoint: str | Path, preset: str | Path | None = None, overrides: Overrides = ()) -> dict[str, Any]:
    """Unbiased-test report of a checkpoint: accuracy, aligned/conflicting, per-cell, worst group,
    confusion matrix. The checkpoint's own config is the default; preset and overrides change it."""
    return evaluate_checkpoint(Path(checkpoint), preset, overrides)


def write_evaluation_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """confusion_matrix.png and cell_accuracy.png of an :func:`evaluate` report; PlotsUnavailable without
    matplotlib."""
    return plot_report(report, Path(out_dir))


def probe(checkpoint: str | Path, preset: str | Path | None = None, overrides: Overrides = (),
          settings: "ProbeSettings | None" = None, max_leakage: float | None = None,
          on_seed: Callable[[int, int], None] | None = None, record: bool = True) -> dict[str, Any]:
    """Train fresh probes on a checkpoint's frozen features; how much bias they recover. `passed` says
    whether mean leakage is within `max_leakage`. With `record`, the report is also kept beside the
    checkpoint (probe.json, best effort) so that `compare` shows it."""
    path = Path(checkpoint)
    report = probe_checkpoint(path, preset, overrides, settings or ProbeSettings(), max_leakage, on_seed)
    if record:
        try:
            run_folder.write_probe(path.parent, report)
        except OutputError:
            pass
    return report


def compare(runs: Iterable[str | Path], sort_by: str | None = "accuracy", descending: bool = True) -> list[dict[str, Any]]:
    """One row per run folder: key config values, final metrics and leakage (when probed)."""
    return compare_runs([Path(run) for run in runs], sort_by, descending)


def load_model(checkpoint: str | Path, device: str | None = None) -> "Algorithm":
    """A trained model for inference: eval mode, no gradients; ``model.predict(images)`` gives logits."""
    return _load_model(Path(checkpoint), device)


# ---------------------------------------------------------------------------- processes


def rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return distributed.rank()


def is_main_process() -> bool:
    """Rank 0, the process that writes files and prints results."""
    return distributed.is_main()


def launched_by_torchrun() -> bool:
    return distributed.launched()
