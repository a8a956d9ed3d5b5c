"""`lnl train`: parse, call the core, render."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli import api
from lnl_cli.cli.common import (PRESET_HELP, DataRoot, JsonOutput, Overrides, SetValues, collect_overrides, fail,
                                fmt, graceful_stop, print_json, progress_callbacks, result_output, stderr, stdout,
                                user_errors, write_stdout)
from lnl_cli.cli.presets import print_presets
from lnl_cli.errors import EXIT_USAGE

DEFAULT_PRESET = "colored-mnist"
NPROC_OPTION = "--nproc-per-node"
# Where rank 0 of a relaunched job leaves its exit code: torchrun itself exits 1 whatever the workers' codes.
EXIT_CODE_FILE_ENV = "LNL_EXIT_CODE_FILE"
# The claim a relaunching `lnl train --nproc-per-node` made on the run folder, adopted by rank 0.
RUN_CLAIM_ENV = "LNL_RUN_CLAIM"


def train(
    overrides: Overrides = None,
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=PRESET_HELP + " [default: colored-mnist]"),
    set_values: SetValues = None,
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Run folder (default runs/<preset>-<method>-N)."),
    data_root: DataRoot = None,
    init_from: Optional[str] = typer.Option(
        None, "--init-from", metavar="CHECKPOINT",
        help="Start f and g from this trained model (a run's best.pt or last.pt, or its folder), e.g. a "
             "baseline to debias; same as train.init_from=..."),
    json_output: JsonOutput = False,
    resume: Optional[str] = typer.Option(
        None, "--resume", metavar="DIR",
        help="Continue the run in this folder from its checkpoint (train.epochs=N extends it)."),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the built-in presets and exit."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the config and the run folder, print the resolved "
                                                           "config (YAML, or JSON with --json) and exit."),
    nproc_per_node: Optional[int] = typer.Option(
        None, NPROC_OPTION, min=1,
        help="Train with this many processes on this machine (one per GPU on CUDA): relaunches itself "
             "through torchrun. Use torchrun directly for several machines."),
) -> None:
    """Train a model on a preset; writes config.yaml, metrics.jsonl, last.pt, best.pt and summary.json."""
    if list_presets:
        print_presets(json_output)
        return
    if resume is not None and (preset is not None or out is not None or init_from is not None):
        raise fail("--resume continues a run with its own config and folder; drop --preset, --out and --init-from",
                   EXIT_USAGE)
    if init_from is not None:
        set_values = list(set_values or []) + [f"train.init_from={json.dumps(init_from)}"]
    try:
        if dry_run:
            _dry_run(preset, collect_overrides(set_values, overrides, data_root), out, resume, json_output)
            return
        _train(overrides, preset, set_values, out, data_root, json_output, resume, nproc_per_node)
    except typer.Exit as exit:
        _record_exit_code(exit.exit_code)
        raise
    _record_exit_code(0)


def _dry_run(preset: str | None, overrides: list[str], out: Path | None, resume: Path | None,
             json_output: bool) -> None:
    with user_errors():
        if resume is not None:
            raise fail("--dry-run checks a new run; drop --resume", EXIT_USAGE)
        plan = api.plan_run(preset or DEFAULT_PRESET, overrides, out)
    for warning in plan["warnings"]:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    stderr.print(escape(f"config is valid, its data and weights are in place; the run would write to "
                        f"{plan['run_dir']}"), soft_wrap=True)
    with result_output():
        if json_output:
            print_json({key: plan[key] for key in ("schema_version", "run_dir", "warnings", "config")})
        else:
            write_stdout(plan["yaml"])


def _record_exit_code(code: int) -> None:
    path = os.environ.get(EXIT_CODE_FILE_ENV)
    if path and api.is_main_process():
        Path(path).write_text(f"{code}\n")


def _train(overrides, preset, set_values, out, data_root, json_output, resume, nproc_per_node) -> None:
    api.watch_parent()  # a point of `lnl sweep --jobs N` dies with its sweep
    with user_errors():
        all_overrides = collect_overrides(set_values, overrides, data_root)
        if nproc_per_node is not None and not api.launched_by_torchrun():
            claim = None
            if resume is None:  # config and folder errors are reported here, once, before any process starts
                config = api.load_config(preset or DEFAULT_PRESET, all_overrides)
                claim = api.claim_run_folder(config, out)
            raise typer.Exit(_relaunch(nproc_per_node, claim))
        if resume is not None:
            with graceful_stop() as stop:
                summary = api.resume(resume, all_overrides, progress_callbacks(), stop)
        else:
            config = api.load_config(preset or DEFAULT_PRESET, all_overrides)
            with graceful_stop() as stop:
                summary = api.train(config, out, progress_callbacks(), stop, claim_token=os.environ.get(RUN_CLAIM_ENV))
    if api.is_main_process():  # rank 0 prints the result
        with result_output(f"; the run folder {summary['run_dir']} is complete"):
            _render(summary, json_output)


def _render(summary: dict, json_output: bool) -> None:
    if json_output:
        print_json(summary)
        return
    if summary.get("already_finished"):
        stdout.print(escape(f"{summary['run_dir']} already finished"), soft_wrap=True)
        return
    table = Table(title=escape(f"{summary['method']} on {summary['dataset']}"), show_header=False)
    test = summary["test"]
    selected = summary.get("selected") or {}
    if selected.get("epoch"):
        value = "" if selected.get("value") is None else f" = {fmt(selected['value'])}"
        tested = f"{api.selected_model_text(selected)} ({selected.get('metric')}{value})"
        table.add_row("tested model", escape(tested))
    for key, label in api.METRIC_DESCRIPTIONS.items():
        table.add_row("unbiased test " + label if key == api.ACCURACY else label, fmt(test.get(key)))
    table.add_row("train images/s", fmt(summary["train_images_per_second"], 1))
    table.add_row("wall time (s)", fmt(summary["seconds"], 1))
    table.add_row("run folder", escape(summary["run_dir"]))
    stdout.print(table)


def _relaunch(nproc: int, claim: "api.RunClaim | None") -> int:
    """Run this same command under ``python -m torch.distributed.run --standalone`` with `nproc` workers;
    return rank 0's exit code. The run folder is claimed here so every worker uses the same one (rank 0
    adopts the claim through its token), and given back if the workers leave no checkpoint in it.

    Ctrl-C reaches every process of the terminal's foreground group, so this process ignores SIGINT;
    a SIGTERM sent to it is passed on to torchrun, which passes it on to the workers."""
    argv = _without_option(sys.argv[1:], NPROC_OPTION)
    env = dict(os.environ)
    if claim is not None:
        argv = _without_option(_without_option(argv, "--out"), "-o") + ["--out", str(claim.path)]
        env[RUN_CLAIM_ENV] = claim.token
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "lnl_cli", *argv]
    try:
        with tempfile.TemporaryDirectory(prefix="lnl-launch-") as folder:
            code_file = Path(folder) / "exit_code"
            child = subprocess.Popen(command, env={**env, EXIT_CODE_FILE_ENV: str(code_file)})
            previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, _: child.send_signal(signum))}
            try:
                returncode = child.wait()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            recorded = code_file.read_text().strip() if code_file.is_file() else ""
    finally:
        if claim is not None:
            api.release_run_folder(claim)
    return int(recorded) if recorded else returncode


def _without_option(argv: list[str], name: str) -> list[str]:
    """`argv` without ``name VALUE`` and ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
