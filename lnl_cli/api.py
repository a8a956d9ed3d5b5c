"""The public Python API and the one door the CLI uses into the core.

Every command is a function here: :func:`train`, :func:`resume`, :func:`evaluate`, :func:`probe`,
:func:`compare`, :func:`presets`, :func:`load_model`. The CLI (``lnl_cli/cli/``) parses arguments,
calls one of these and renders the result; a notebook calls the same functions. What the CLI
needs besides (terminal helpers the core uses too, option choices and defaults) is importable here too,
listed apart in ``CLI_SUPPORT``.

Only light modules are imported at the top; the modules that need torch (config, engine, evaluation,
inference, probe, distributed) are imported by the functions that use them, so that `lnl --version`
and `lnl presets` answer without loading torch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from lnl_cli import arguments as check
from lnl_cli import run_folder
from lnl_cli.callbacks import CallbackList, SweepCallbacks, TrainCallbacks
from lnl_cli.compare import METRIC_COLUMNS as COMPARE_METRIC_COLUMNS
from lnl_cli.compare import compare_runs
from lnl_cli.compare import shown_columns as compare_table_columns
from lnl_cli.errors import ConfigError, OutputError, TrainingInterrupted
from lnl_cli.export_formats import EXPORT_FORMATS
from lnl_cli.fileio import atomic_write_text, csv_text, to_json
from lnl_cli.metric_names import ACCURACY, METRIC_DESCRIPTIONS, NUM_SAMPLES
from lnl_cli.plots import PlotsUnavailable, check_plots_available, plot_report, plot_training
from lnl_cli.preset_files import builtin_presets, preset_description, preset_header, resolve_preset
from lnl_cli.probe_settings import CONFIDENCE as PROBE_CONFIDENCE
from lnl_cli.probe_settings import DEFAULT_LAYER as DEFAULT_PROBE_LAYER
from lnl_cli.probe_settings import ProbeSettings
from lnl_cli.result_keys import RESULT_NEUTRAL_KEYS
from lnl_cli.progress import PipeSafeConsole, in_notebook, progress_callbacks
from lnl_cli.runtime import StopRequest, watch_parent
from lnl_cli.schema import type_name
from lnl_cli.selection import selected_model_text
from lnl_cli.version import JSON_SCHEMA_VERSION, __version__

if TYPE_CHECKING:
    from lnl_cli.algorithms import Algorithm
    from lnl_cli.config import Config
    from lnl_cli.sweep import FolderCheck, SweepPlan

Overrides = Iterable[str] | dict[str, Any]

# The public API (docs/python-api.md): what a notebook or a script calls.
__all__ = ["check_folder", "check_output_file", "check_run_folder", "claim_run_folder", "compare", "Config",
           "config_keys", "environment", "evaluate", "export", "is_main_process", "launched_by_torchrun", "load_config", "load_model",
           "plan_run", "PlotsUnavailable", "predict", "presets", "probe", "ProbeSettings", "rank", "release_run_folder",
           "RESULT_NEUTRAL_KEYS", "resume", "RunClaim", "show_preset", "StopRequest", "sweep", "sweep_document",
           "sweep_plan", "SweepCallbacks", "SWEEP_FILE", "to_json", "train", "TrainCallbacks", "write_csv",
           "write_evaluation_plots", "write_training_plots", "__version__"]
# Also here for lnl_cli/cli/, which reaches the core only through this module and lnl_cli.errors: terminal
# and formatting helpers that the core uses too (so they cannot move into lnl_cli/cli/), and the choices
# and defaults of its options. Not part of the public API.
CLI_SUPPORT = ("ACCURACY", "check_plots_available", "COMPARE_COLUMNS", "COMPARE_CONFIG_COLUMNS", "COMPARE_METRIC_COLUMNS", "compare_table_columns", "csv_text", "DEFAULT_PROBE_LAYER",
               "EXPORT_FORMATS", "METRIC_DESCRIPTIONS", "NUM_SAMPLES", "PipeSafeConsole", "PROBE_CONFIDENCE", "progress_callbacks", "selected_model_text",
               "watch_parent")


def __getattr__(name: str) -> Any:
    """`api.Config` and the columns of `compare`, built when first asked for (they need torch, through
    the registries)."""
    if name == "Config":
        return _config().Config
    if name == "COMPARE_COLUMNS":
        return columns_of_compare()
    if name == "COMPARE_CONFIG_COLUMNS":
        return config_columns_of_compare()
    raise AttributeError(f"module 'lnl_cli.api' has no attribute {name!r}")


def columns_of_compare() -> tuple[str, ...]:
    from lnl_cli.compare import columns

    return columns()


def config_columns_of_compare() -> tuple[str, ...]:
    from lnl_cli.compare import config_columns

    return config_columns()


def _config():
    from lnl_cli import config

    return config


def _distributed():
    from lnl_cli import distributed

    return distributed


# ---------------------------------------------------------------------------- configs and presets


def load_config(preset: str | Path | None = None, overrides: Overrides = (), base: "Config | None" = None) -> "Config":
    """Code defaults (or `base`) < preset (built-in name or YAML path) < overrides (``key=value`` or dotted dict)."""
    _check_config(base, "base", optional=True)
    return _config().load_config(check.preset(preset), check.overrides(overrides), base)


def _check_config(config: Any, name: str, optional: bool = False) -> None:
    """A Config as load_config makes it; a preset name in its place gets a hint."""
    hint = " (make one with lnl_cli.load_config(PRESET, OVERRIDES))"
    check.instance(config, _config().Config, name, hint, optional)


def presets() -> dict[str, str]:
    """Name -> one-line description of every built-in preset."""
    return {name: preset_description(path) for name, path in builtin_presets().items()}


def show_preset(name_or_path: str, overrides: Overrides = ()) -> dict[str, Any]:
    """A preset as a run would use it: its header comment and the resolved config (code defaults <
    the presets it extends < it < overrides), as YAML text and as a dict."""
    config = _config().load_config(check.path(name_or_path, "name_or_path"), check.overrides(overrides))
    return {"schema_version": JSON_SCHEMA_VERSION, "preset": name_or_path, "path": str(resolve_preset(name_or_path)),
            "header": preset_header(resolve_preset(name_or_path)), "yaml": _config().dump_yaml(config),
            "config": _config().to_dict(config)}


def config_keys() -> list[dict[str, Any]]:
    """Every config key with its type, default and meaning, from the schema itself."""
    return [{"key": spec.key, "type": type_name(spec.type), "default": spec.default,
             "help": spec.metadata.get("help", "")} for spec in _config().SPECS.values()]


# ---------------------------------------------------------------------------- training


RunClaim = run_folder.RunClaim


def _folder(path: str | Path | None, what: str) -> Path | None:
    """`path` as a Path; an empty string is refused (Path("") would silently mean the current folder)."""
    if path is None:
        return None
    check.path(path, what)
    if not str(path).strip():
        raise ConfigError(f"{what} is empty, which would mean the current folder; name a folder")
    return Path(path)


def check_run_folder(config: "Config", out_dir: str | Path | None = None) -> Path:
    """The run folder `train` would use (`out_dir`, or the next free runs/<preset>-<method>-N); a
    ConfigError when it already holds a run. Only a check: `train` claims the folder itself."""
    _check_config(config, "config")
    return run_folder.check_run_dir(_folder(out_dir, "the run folder (--out)"), config.name, config.method)


def claim_run_folder(config: "Config", out_dir: str | Path | None = None) -> RunClaim:
    """Claim the run folder for a run that other processes will train: pass ``claim.token`` to their
    `train` and call :func:`release_run_folder` when they are done. A ConfigError when the folder
    already holds a run or is claimed by another."""
    _check_config(config, "config")
    return run_folder.claim(_folder(out_dir, "the run folder (--out)"), config.name, config.method)


def release_run_folder(claim: RunClaim) -> None:
    """Remove a claimed run folder again if its run left no checkpoint; otherwise keep it."""
    run_folder.release(check.instance(claim, RunClaim, "claim", optional=False))


def plan_run(preset: str | Path, overrides: Overrides = (), out_dir: str | Path | None = None) -> dict[str, Any]:
    """What `train` would do, without doing it: the validated config, the run folder it would use and
    what the run would warn about. Refused like `train` would refuse it (a foreign train.init_from,
    selection on a validation split the config leaves out, data or weights missing on disk, a manifest
    or folder that does not read, a first image that does not decode), without loading the data."""
    from lnl_cli.engine import preflight

    config = load_config(preset, overrides)
    warnings = preflight(config)
    return {"schema_version": JSON_SCHEMA_VERSION, "run_dir": str(check_run_folder(config, out_dir)),
            "warnings": warnings, "yaml": _config().dump_yaml(config),
            "config": _config().to_dict(config)}


def train(config: "Config", out_dir: str | Path | None = None, callbacks: "TrainCallbacks | None" = None,
          stop: StopRequest | None = None, claim_token: str | None = None, *, progress: bool | None = None,
          plots: bool = True) -> dict[str, Any]:
    """Train into a run folder (config.yaml, metrics.jsonl, results.csv, last.pt, best.pt, summary.json, plots);
    return the summary.

    The folder is claimed atomically first: of two runs into the same `out_dir` one gets a ConfigError,
    and an auto-numbered run takes the next free number. `claim_token` adopts a :func:`claim_run_folder`
    claim. A run that fails before its first checkpoint leaves no folder behind.
    `progress`: show progress bars (None: only in a Jupyter notebook); `callbacks` receive progress too.
    `plots`: write losses.png and accuracy.png when the run ends, finished or interrupted (skipped with a
    message to the callbacks when matplotlib is missing or the disk is full)."""
    from lnl_cli.engine import run_training

    _check_config(config, "config")
    _check_run_arguments(callbacks, stop, progress, plots)
    check.instance(claim_token, str, "claim_token")
    callbacks, announced = _observed(callbacks, progress)
    with _plots_afterwards(announced, callbacks, plots):
        return run_training(config, _folder(out_dir, "the run folder (--out)"), callbacks, stop, claim_token)


def resume(run_dir: str | Path, overrides: Overrides = (), callbacks: "TrainCallbacks | None" = None,
           stop: StopRequest | None = None, *, progress: bool | None = None, plots: bool = True) -> dict[str, Any]:
    """Continue an interrupted or extended run (only safe keys such as train.epochs may change, also
    when edited in the run's config.yaml); `progress` and `plots` as in :func:`train`."""
    from lnl_cli.engine import resume_training

    check.path(run_dir, "run_dir")  # required: None is no folder
    folder = _folder(run_dir, "the run folder to resume (--resume)")
    overrides = check.overrides(overrides)
    _check_run_arguments(callbacks, stop, progress, plots)
    callbacks, announced = _observed(callbacks, progress)
    with _plots_afterwards(announced, callbacks, plots):
        return resume_training(folder, overrides, callbacks, stop)


def _check_run_arguments(callbacks: Any, stop: Any, progress: Any, plots: Any) -> None:
    """What `train` and `resume` share: progress receivers, a stop request, two switches."""
    check.instance(callbacks, TrainCallbacks, "callbacks", " (subclass lnl_cli.api.TrainCallbacks)")
    check.instance(stop, StopRequest, "stop")
    check.flag(progress, "progress", optional=True)
    check.flag(plots, "plots")


class _Announced(TrainCallbacks):
    """Remembers what a run announces: its folder (an auto-numbered one is known only once it is
    claimed) and its class count (the plots' chance line)."""

    run_dir: str | None = None
    num_classes: int | None = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.run_dir, self.num_classes = info["run_dir"], info.get("num_classes")


def _observed(callbacks: "TrainCallbacks | None", progress: bool | None) -> tuple[TrainCallbacks, _Announced]:
    """The caller's callbacks, progress bars when asked for (or in a notebook), and the folder recorder."""
    announced = _Announced()
    shown = (progress_callbacks(PipeSafeConsole(stderr=True))
             if progress or (progress is None and in_notebook()) else None)
    return CallbackList(*(c for c in (callbacks, shown) if c is not None), announced), announced


@contextlib.contextmanager
def _plots_afterwards(announced: _Announced, callbacks: TrainCallbacks, enabled: bool) -> Iterator[None]:
    """The run's plots when training ends, finished or interrupted (nothing before it started)."""
    try:
        yield
    except TrainingInterrupted:
        _plot_quietly(announced, callbacks, enabled)
        raise
    _plot_quietly(announced, callbacks, enabled)


def _plot_quietly(announced: _Announced, callbacks: TrainCallbacks, enabled: bool) -> None:
    """Plots are extras: without matplotlib, or without room on the disk, the run still succeeds."""
    if not enabled or announced.run_dir is None:
        return
    try:
        write_training_plots(announced.run_dir, announced.num_classes)
    except (PlotsUnavailable, OutputError) as exc:
        callbacks.on_message(f"plots skipped: {exc}")


def write_training_plots(run_dir: str | Path, num_classes: int | None = None) -> list[Path]:
    """losses.png and accuracy.png in the run folder (rank 0 only; the chance line when `num_classes` is
    given); PlotsUnavailable without matplotlib."""
    if not _distributed().is_main():
        return []
    return plot_training(Path(run_dir), num_classes)


# ---------------------------------------------------------------------------- sweeps


SWEEP_FILE = run_folder.SWEEP_FILE


def sweep_plan(preset: str | Path, grid: Iterable[str], overrides: Iterable[str] = (),
               out_dir: str | Path | None = None, jobs: int = 1) -> "SweepPlan":
    """The points of a sweep: the Cartesian product of ``KEY=V1,V2,...`` axes over `preset` and the fixed
    `overrides`, each validated, with its run folder under `out_dir` (default: runs/) and what a sweep
    would do with it (train, resume, or skip as finished); `jobs` points will train at once. One
    ConfigError lists every problem of every point. Writes nothing; ``sweep_document(plan)`` is what
    `lnl sweep --dry-run --json` prints."""
    from lnl_cli import sweep as sweeps

    preset = check.path(preset, "preset")
    grid = check.strings(grid, "grid", "seed=0,1,2")
    overrides = check.strings(overrides, "overrides", "train.lr=0.01")
    return sweeps.plan_sweep(str(preset), grid, overrides, _folder(out_dir, "the sweep folder (--out)"),
                             check.whole(jobs, "jobs"))


def sweep_document(plan: "SweepPlan", status: str = "planned") -> dict[str, Any]:
    """What sweep.json holds for `plan` now."""
    from lnl_cli import sweep as sweeps

    check.instance(plan, sweeps.SweepPlan, "plan", " (make one with lnl_cli.api.sweep_plan)", optional=False)
    return sweeps.document(plan, check.instance(status, str, "status", optional=False))


def sweep(plan: "SweepPlan", callbacks: SweepCallbacks | None = None, stop: StopRequest | None = None,
          train_callbacks: Callable[[], TrainCallbacks | None] | None = None, *, plots: bool = True) -> dict[str, Any]:
    """Train every point of `plan` that is not finished: one after another in this process with `train`
    and `resume` (plan.jobs 1; `train_callbacks()` makes each run's progress receiver), or plan.jobs at
    once as `lnl train` subprocesses. Returns sweep.json's content (also written to the sweep folder).

    A failed point does not stop the others; PointsFailed at the end says which failed. A stop request
    (Ctrl-C) lets the running points save their checkpoints and raises TrainingInterrupted; the same
    sweep run again resumes them and skips the finished ones."""
    from lnl_cli import sweep as sweeps

    check.instance(plan, sweeps.SweepPlan, "plan", " (make one with lnl_cli.api.sweep_plan)", optional=False)
    check.instance(callbacks, SweepCallbacks, "callbacks", " (subclass lnl_cli.api.SweepCallbacks)")
    check.instance(stop, StopRequest, "stop")
    check.callable_or_none(train_callbacks, "train_callbacks")
    check.flag(plots, "plots")

    def run_here(point: "sweeps.Point", stop: StopRequest) -> dict[str, Any]:
        receiver = train_callbacks() if train_callbacks is not None else None
        if point.action == sweeps.RESUME:
            return resume(point.run_dir, point.resume_overrides, receiver, stop, plots=plots)
        return train(point.config, point.run_dir, receiver, stop, plots=plots)

    return sweeps.run_sweep(plan, run_here, callbacks, stop)


def check_folder(run_dir: str | Path, config: "Config", keys: Iterable[str] | None = None, *,
                 free: Iterable[str] = RESULT_NEUTRAL_KEYS, partial: bool = False,
                 label: str = "the run folder") -> "FolderCheck":
    """What a sweep makes of `run_dir` before it trains `config` there, for a script that reuses run folders
    the same way: ``action`` "train" (nothing there yet), "resume" (a checkpoint, no summary) or "skip" (a
    finished run); ``stored``, the config of the run there; ``differ``, the `keys` (default: every key)
    outside `free` stored with another value, as key -> (stored, asked); ``resume_overrides``, the
    RESULT_NEUTRAL_KEYS a resume should take from `config`. A ConfigError starting with `label` when the
    folder cannot be used (a file, a run in progress, metrics without a checkpoint, no config.yaml or one
    that is not a valid config). With `partial`, config.yaml may name only some keys: the others count as
    asked, and a folder without one is not compared. Writes nothing."""
    from lnl_cli import sweep as sweeps

    _check_config(config, "config")
    keys = None if keys is None else check.strings(keys, "keys", "train.lr")
    return sweeps.check_folder(_folder(check.path(run_dir, "run_dir"), "the run folder"), config,
                               check.instance(label, str, "label", optional=False), keys,
                               check.strings(free, "free", "device"), bool(check.flag(partial, "partial")))


# ---------------------------------------------------------------------------- using a trained model


def evaluate(checkpoint: str | Path, preset: str | Path | None = None, overrides: Overrides = ()) -> dict[str, Any]:
    """Unbiased-test report of a checkpoint: accuracy, aligned/conflicting, per-cell, worst group,
    confusion matrix. The checkpoint's own config is the default; preset and overrides change it."""
    from lnl_cli.evaluation import evaluate_checkpoint

    return evaluate_checkpoint(run_folder.model_checkpoint(check.path(checkpoint, "checkpoint")),
                               check.preset(preset), check.overrides(overrides))


def write_evaluation_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """confusion_matrix.png and cell_accuracy.png of an :func:`evaluate` report; PlotsUnavailable without
    matplotlib."""
    return plot_report(check.instance(report, dict, "report", optional=False), check.path(out_dir, "out_dir"))


def probe(checkpoint: str | Path, preset: str | Path | None = None, overrides: Overrides = (),
          settings: "ProbeSettings | None" = None, max_leakage: float | None = None,
          on_seed: Callable[[int, int], None] | None = None, record: bool = True, *,
          max_relative_leakage: float | None = None) -> dict[str, Any]:
    """Train fresh probes on a checkpoint's frozen features and on its input (the ceiling); how much bias
    they recover, absolute and relative to the ceiling, with bootstrap intervals (PROBE_CONFIDENCE). `passed`
    says whether the UPPER bound of leakage is within `max_leakage` (and of relative leakage within
    `max_relative_leakage`). With `record`, the report is also kept beside the checkpoint (probe.json,
    best effort) so that `compare` shows it, and marks it stale once the checkpoint changes."""
    from lnl_cli.probe import probe_checkpoint

    path = run_folder.model_checkpoint(check.path(checkpoint, "checkpoint"))  # a run folder: its best.pt
    check.instance(settings, ProbeSettings, "settings", " (lnl_cli.api.ProbeSettings(...))")
    check.callable_or_none(on_seed, "on_seed")
    check.flag(record, "record")
    report = probe_checkpoint(path, check.preset(preset), check.overrides(overrides), settings or ProbeSettings(),
                              check.number(max_leakage, "max_leakage"), on_seed,
                              max_relative_leakage=check.number(max_relative_leakage, "max_relative_leakage"))
    if record:
        try:
            run_folder.write_probe(path.parent, report)
        except OutputError:
            pass
    return report


def environment() -> dict[str, Any]:
    """What this machine runs lnl with (`lnl env`): versions, CPU, bf16, threads, CUDA, data and cache folders."""
    from lnl_cli.environment import environment as report

    return report()


def compare(runs: Iterable[str | Path], sort_by: str | None = "accuracy", descending: bool = True,
            probe_split: str | None = None) -> list[dict[str, Any]]:
    """One row per run folder: key config values, final metrics and leakage (when probed: the latest
    probe's, or with `probe_split` the latest probe of that split, e.g. ``test:balanced_test.csv``; the
    row's ``probe_split`` says which). A folder of `lnl sweep` (sweep.json) stands for its finished points."""
    return compare_runs(check.paths(runs, "runs"), check.instance(sort_by, str, "sort_by"),
                        check.flag(descending, "descending"), check.instance(probe_split, str, "probe_split"))


def load_model(checkpoint: str | Path, device: str | None = None) -> "Algorithm":
    """A trained model for inference: eval mode, no gradients; ``model.predict(images)`` gives logits."""
    from lnl_cli.evaluation import load_model as load

    return load(check.path(checkpoint, "checkpoint"), check.instance(device, str, "device"))


def export(checkpoint: str | Path, fmt: str, out: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Write the checkpoint as a TorchScript or ONNX model taking raw images in [0, 1] (N x C x H x W,
    normalisation inside) and returning class probabilities; returns what was written. `out` may not
    replace a checkpoint or a file of a run folder unless `force` (ConfigError)."""
    if not isinstance(fmt, str) or fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    check_output_file(out, force=force)
    from lnl_cli.inference import export_model, load_probability_model

    loaded = load_probability_model(check.path(checkpoint, "checkpoint"))
    path = export_model(loaded, fmt, Path(out))
    return {"schema_version": JSON_SCHEMA_VERSION, "checkpoint": str(checkpoint), "format": fmt, "out": str(path),
            "input_shape": ["N", loaded.shape.channels, loaded.shape.size, loaded.shape.size],
            "classes": list(loaded.class_names)}


def predict(checkpoint: str | Path, sources: Iterable[str | Path], path_column: str = "path") -> list[dict[str, Any]]:
    """Predictions for image files, folders of images or CSVs listing them (column `path_column`):
    one row per image with the predicted class and every class's probability."""
    from lnl_cli.inference import find_images, load_probability_model, predict_files

    sources = check.paths(sources, "sources")
    check.instance(path_column, str, "path_column", optional=False)
    loaded = load_probability_model(check.path(checkpoint, "checkpoint"))
    return predict_files(loaded, find_images(sources, path_column))


def check_output_file(path: str | Path, what: str = "--out", force: bool = False) -> Path:
    """`path` as a file a command may write: a ConfigError when it is a folder or, unless `force`, when
    it would replace a checkpoint or a file of a run folder. Call it before the work whose result goes there."""
    return run_folder.check_output_file(check.path(path, "the output file (out)"), what,
                                        bool(check.flag(force, "force")))


def write_csv(path: str | Path, rows: list[dict[str, Any]], *, force: bool = False) -> Path:
    """`rows` as a CSV file (atomically); OutputError when it cannot be written, ConfigError when it would
    replace a checkpoint or a file of a run folder (unless `force`)."""
    check_output_file(path, force=force)
    check.instance(rows, list, "rows", optional=False)
    try:
        atomic_write_text(Path(path), csv_text(rows))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Path(path)


# ---------------------------------------------------------------------------- processes


def rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return _distributed().rank()


def is_main_process() -> bool:
    """Rank 0, the process that writes files and prints results."""
    return _distributed().is_main()


def launched_by_torchrun() -> bool:
    return _distributed().launched()
