"""The run folder: claimed atomically, given back when a run leaves no checkpoint, metrics kept in step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from lnl_cli import run_folder
from lnl_cli.errors import ConfigError, OutputError

TINY_RUN = ["data.train_size=512", "data.test_size=256", "data.val_size=256", "train.epochs=2", "train.num_threads=1"]


# ------------------------------------------------------------------ claiming, in one process
def test_a_folder_is_claimed_once(tmp_path):
    first = run_folder.claim(tmp_path / "r", "x", "lnl")
    assert first.created == tmp_path / "r" and (tmp_path / "r" / run_folder.CLAIM_FILE).is_file()
    with pytest.raises(ConfigError, match="already taken by another run"):
        run_folder.claim(tmp_path / "r", "x", "lnl")
    with pytest.raises(ConfigError, match="already taken"):
        run_folder.claim(tmp_path / "r", "x", "lnl", token="not-its-token")


def test_the_token_adopts_a_claim_made_for_this_run(tmp_path):
    launcher = run_folder.claim(tmp_path / "r", "x", "lnl")
    adopted = run_folder.claim(tmp_path / "r", "x", "lnl", token=launcher.token)
    assert adopted.path == launcher.path and adopted.created is None


def test_an_auto_numbered_claim_skips_folders_another_run_made(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder, "RUNS_FOLDER", tmp_path / "runs")
    (tmp_path / "runs" / "x-lnl-1").mkdir(parents=True)  # made a moment ago by a concurrent run
    assert run_folder.claim(None, "x", "lnl").path.name == "x-lnl-2"
    assert run_folder.claim(None, "x", "lnl").path.name == "x-lnl-3"


def test_an_auto_numbered_claim_that_loses_the_race_takes_the_next_number(tmp_path, monkeypatch):
    """Both runs computed x-lnl-1; the other made it between our look and our mkdir."""
    monkeypatch.setattr(run_folder, "RUNS_FOLDER", tmp_path / "runs")
    real_next = run_folder.next_run_dir
    calls = []

    def stale_then_real(base, name, method):
        calls.append(1)
        if len(calls) == 1:
            (base / "x-lnl-1").mkdir(parents=True)
            return base / "x-lnl-1"
        return real_next(base, name, method)

    monkeypatch.setattr(run_folder, "next_run_dir", stale_then_real)
    assert run_folder.claim(None, "x", "lnl").path.name == "x-lnl-2"


def test_a_folder_holding_a_run_or_a_file_is_refused(tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / run_folder.METRICS_FILE).write_text("")
    with pytest.raises(ConfigError, match="already holds a run"):
        run_folder.claim(tmp_path / "done", "x", "lnl")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        run_folder.claim(tmp_path / "file", "x", "lnl")


def test_a_folder_that_cannot_be_made_is_an_output_error(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(run_folder.Path, "mkdir", read_only)
    with pytest.raises(OutputError, match="cannot create run folder .*Read-only file system"):
        run_folder.claim(tmp_path / "r", "x", "lnl")


def test_release_removes_what_an_unfinished_run_wrote_and_keeps_the_rest(tmp_path):
    held = run_folder.claim(tmp_path / "new" / "deeper" / "run", "x", "lnl")
    run_folder.write_config(held.path, "seed: 0\n")
    run_folder.release(held)
    assert not (tmp_path / "new").exists()  # with the parents the claim made

    (tmp_path / "mine").mkdir()  # the user's own empty folder stays, empty
    held = run_folder.claim(tmp_path / "mine", "x", "lnl")
    run_folder.write_config(held.path, "seed: 0\n")
    (held.path / "notes.txt").write_text("the user's")
    run_folder.release(held)
    assert sorted(p.name for p in held.path.iterdir()) == ["notes.txt"]

    held = run_folder.claim(tmp_path / "resumable", "x", "lnl")
    run_folder.checkpoint_path(held.path).write_bytes(b"a checkpoint")
    run_folder.release(held)
    assert run_folder.checkpoint_path(held.path).is_file() and (held.path / run_folder.CLAIM_FILE).is_file()


# ------------------------------------------------------------------ metrics in step with the checkpoint
def _epochs(run_dir):
    return [record["epoch"] for record in run_folder.read_metrics(run_dir)]


def test_trim_metrics_drops_records_past_the_checkpoint_and_torn_lines(tmp_path):
    for epoch in (1, 2, 3, 3):
        run_folder.append_metrics(tmp_path, {"epoch": epoch})
    assert run_folder.trim_metrics(tmp_path, 2) == 2
    assert _epochs(tmp_path) == [1, 2]
    with open(run_folder.metrics_path(tmp_path), "ab") as handle:
        handle.write(b'{"epoch": 3, "label_lo')  # a torn last line
    assert run_folder.trim_metrics(tmp_path, 5) == 1
    assert _epochs(tmp_path) == [1, 2]
    assert run_folder.trim_metrics(tmp_path, 2) == 0
    assert run_folder.trim_metrics(tmp_path / "none", 2) == 0


# ------------------------------------------------------------------ two real processes
def _start(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LNL_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "lnl_cli", "train", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process):
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.mark.mnist
@pytest.mark.slow
def test_two_runs_into_one_out_folder_one_trains_the_other_exits_2(tmp_path, mnist_root):
    out = tmp_path / "same"
    runs = {seed: _start(["--data-root", str(mnist_root), "--out", str(out), f"seed={seed}", *TINY_RUN, "--json"],
                         tmp_path) for seed in (3, 4)}
    results = {seed: _finish(process) for seed, process in runs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], {seed: (code, err[-500:]) for seed, (code, _, err) in results.items()}
    winner = next(seed for seed, (code, _, _) in results.items() if code == 0)
    _, stdout, stderr = next(result for result in results.values() if result[0] == 2)
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert stdout == "" and "Traceback" not in stderr and len(errors) == 1 and str(out) in errors[0]
    assert _epochs(out) == [1, 2]  # one writer
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == winner
    assert json.loads(results[winner][1])["run_dir"] == str(out)


@pytest.mark.mnist
@pytest.mark.slow
def test_two_auto_numbered_runs_take_two_folders(tmp_path, mnist_root):
    runs = {seed: _start(["--data-root", str(mnist_root), f"seed={seed}", *TINY_RUN, "--json"], tmp_path)
            for seed in (3, 4)}
    results = {seed: _finish(process) for seed, process in runs.items()}
    assert all(code == 0 for code, _, _ in results.values()), results
    folders = {seed: tmp_path / json.loads(stdout)["run_dir"] for seed, (_, stdout, _) in results.items()}
    assert sorted(p.name for p in folders.values()) == ["colored-mnist-lnl-1", "colored-mnist-lnl-2"]
    for seed, folder in folders.items():
        assert _epochs(folder) == [1, 2]
        assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
