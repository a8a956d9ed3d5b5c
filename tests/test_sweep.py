"""`lnl sweep`: the grid, folder names, one error for every problem, and points that equal `lnl train` runs.

Training runs on the tiny manifest dataset of test_data_manifest (14 images of 16 px, files on disk), so
that `lnl train` subprocesses (--jobs) read the same data as this process, without MNIST.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lnl_cli import api
from lnl_cli.checkpoint import load_checkpoint
from lnl_cli.errors import ConfigError, TrainingInterrupted
from lnl_cli.runtime import StopRequest
from lnl_cli.sweep import locked, plan_sweep, split_values

from helpers import BIASED, UNBIASED, assert_one_line_error, lnl, lnl_in_process, write_folder, write_preset

FIXED = ["--set", "train.num_threads=1", "--set", "method=lnl"]
GRID = ["--grid", "seed=0,1"]
NAMES = ["pets-lnl-seed0", "pets-lnl-seed1"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("LNL_DEBUG", raising=False)


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    write_folder(root, {"train": BIASED, "test": UNBIASED})
    return write_preset(root)


@pytest.fixture(scope="module")
def swept(pets, tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """A 2-point sweep, one point after the other in this process, through the CLI."""
    out = tmp_path_factory.mktemp("swept") / "sweep"
    result = lnl_in_process("sweep", "--preset", str(pets), *GRID, *FIXED, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout), result


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), (key, a, b)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# ------------------------------------------------------------------ the grid and the names


def test_values_split_at_commas_outside_brackets_and_quotes():
    assert split_values("0.02,0.025") == ["0.02", "0.025"]
    assert split_values("[0.5,0.5,0.5],[0.4, 0.4, 0.4]") == ["[0.5,0.5,0.5]", "[0.4, 0.4, 0.4]"]
    assert split_values("'a,b',\"c,\\\"d\",{x: 1, y: 2}") == ["'a,b'", '"c,\\"d"', "{x: 1, y: 2}"]
    for broken in ("[1,2", "1]", "'a,b"):
        with pytest.raises(ValueError):
            split_values(broken)


def test_the_grid_is_the_product_of_the_axes_first_axis_outermost(tmp_path):
    plan = plan_sweep("colored-mnist", ["data.color_var=0.02,0.025", "seed=0,1", "method=baseline,lnl"],
                      ["train.epochs=1"], tmp_path / "s")
    names = [point.name for point in plan.points]
    assert names == [f"colored-mnist-{m}-color_var{c}-seed{s}" for c in ("0.02", "0.025") for s in (0, 1)
                     for m in ("baseline", "lnl")]
    first = plan.points[0]
    assert first.values == {"data.color_var": 0.02, "seed": 0, "method": "baseline"}
    assert first.overrides == ["train.epochs=1", "data.color_var=0.02", "seed=0", "method=baseline"]
    assert first.run_dir == tmp_path / "s" / names[0] and first.config.train.epochs == 1
    assert {point.action for point in plan.points} == {"train"}
    assert not (tmp_path / "s").exists()  # a plan writes nothing


def test_folder_names_of_lists_shared_key_names_and_odd_values(tmp_path):
    plan = plan_sweep("colored-mnist", ["data.mean=[0.5,0.5,0.5],[0.4,0.4,0.4]", "data.seed=0,1", "seed=2",
                                        "train.lr=1e-3"], [], tmp_path)
    assert [point.name for point in plan.points][:2] == [
        "colored-mnist-lnl-mean0.5_0.5_0.5-data.seed0-seed2-lr0.001",
        "colored-mnist-lnl-mean0.5_0.5_0.5-data.seed1-seed2-lr0.001"]
    assert plan.points[0].values["data.mean"] == [0.5, 0.5, 0.5]
    assert plan_sweep("colored-mnist", ["name=a,b"], [], tmp_path).points[1].name == "b-lnl"
    assert plan_sweep("colored-mnist", [], [], tmp_path).points[0].name == "colored-mnist-lnl"


def test_points_whose_values_are_equal_would_share_a_folder_and_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="would share the folder colored-mnist-lnl-lr0.01"):
        plan_sweep("colored-mnist", ["train.lr=0.01,1e-2"], [], tmp_path)


def test_a_key_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        plan_sweep("colored-mnist", ["seed=0,1", "seed=2", "train.lr=0.1,0.2", "data.name=colored_mnist"],
                   ["train.lr=0.3", "data.type=colored_mnist"], tmp_path)
    assert len(info.value.problems) == 3, info.value.problems
    text = str(info.value)
    assert "--grid seed is given twice" in text
    assert "train.lr is both a --grid axis and a fixed value" in text
    assert "data.type is both a --grid axis and a fixed value" in text  # data.name is its old name


def test_every_problem_of_every_point_is_one_error_exit_2(tmp_path):
    out = tmp_path / "s"
    result = lnl_in_process("sweep", "--grid", "seed=0,1,x", "--grid", "train.lr=0.1,-1", "--grid", "trian.lr=1",
                            "--set", "train.num_threads=0", "--out", str(out))
    assert_one_line_error(result, 2, "4 config problems", "train.num_threads (from override): must be >= 1",
                          "did you mean 'train.lr'", "must be > 0.0, got -1.0 (points with train.lr=-1)",
                          "expected an integer, got 'x' (points with seed=x)")
    assert not out.exists()
    syntax = lnl_in_process("sweep", "--grid", "data.mean=[0.5,0.5", "--grid", "seed", "--grid", "seed=1,,2",
                            "--out", str(out))
    assert_one_line_error(syntax, 2, "3 config problems", "a bracket is not closed", "KEY=V1,V2", "empty value")
    assert not out.exists()


# ------------------------------------------------------------------ training: the same as `lnl train`


def test_each_point_equals_an_lnl_train_run_with_the_same_overrides(swept, pets, tmp_path):
    out, document, result = swept
    assert [point["name"] for point in document["points"]] == NAMES
    assert document["status"] == "finished" and document["counts"]["finished"] == 2
    assert json.loads((out / "sweep.json").read_text()) == document
    for seed, name in enumerate(NAMES):
        alone = tmp_path / f"alone{seed}"
        trained = lnl_in_process("train", "--preset", str(pets), *FIXED, "--set", f"seed={seed}", "--out", str(alone))
        assert trained.returncode == 0, trained.stderr
        assert_same_weights(alone, out / name)
        assert summary(alone)["test"]["accuracy"] == summary(out / name)["test"]["accuracy"]
        point = document["points"][seed]
        assert point["result"]["accuracy"] == summary(alone)["test"]["accuracy"]
        assert point["result"]["selected_epoch"] == 2 and point["values"] == {"seed": seed}
        assert point["overrides"] == ["train.num_threads=1", "method=lnl", f"seed={seed}"]
        for file in ("best.pt", "config.yaml", "metrics.jsonl", "results.csv"):
            assert (out / name / file).is_file(), file
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert lines == [f"[1/2] training {NAMES[0]} -> {out / NAMES[0]}",
                     lines[1], f"[2/2] training {NAMES[1]} -> {out / NAMES[1]}", lines[3]]
    assert lines[1].startswith(f"[1/2] finished {NAMES[0]}: accuracy ")


def test_compare_takes_the_sweep_folder(swept):
    out, document, _ = swept
    result = lnl_in_process("compare", str(out), "--json", "--sort", "seed", "--ascending")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["run"] for row in rows] == [str(out / name) for name in NAMES]
    assert [row["accuracy"] for row in rows] == [point["result"]["accuracy"] for point in document["points"]]


def test_running_it_again_skips_the_finished_points(swept, pets):
    out, document, _ = swept
    stamps = [(out / name / "last.pt").stat().st_mtime_ns for name in NAMES]
    # train.num_threads says how a run computes, not what: a finished point stored with another is the same point
    again = lnl_in_process("sweep", "--preset", str(pets), *GRID, "--set", "train.num_threads=2", "--set", "method=lnl",
                           "--out", str(out), "--json")
    assert again.returncode == 0, again.stderr
    redone = json.loads(again.stdout)
    assert [point["action"] for point in redone["points"]] == ["skip", "skip"]
    assert [point["result"] for point in redone["points"]] == [point["result"] for point in document["points"]]
    assert [(out / name / "last.pt").stat().st_mtime_ns for name in NAMES] == stamps
    assert "skipped pets-lnl-seed0 (finished before)" in again.stderr


def test_a_finished_point_of_another_config_is_an_error_naming_it(swept, pets):
    out, _, _ = swept
    result = lnl_in_process("sweep", "--preset", str(pets), *GRID, *FIXED, "--set", "train.lr=0.02",
                            "--out", str(out))
    assert_one_line_error(result, 2, f"point {NAMES[0]}: {out / NAMES[0]} holds a finished run of another config",
                          "train.lr=0.01 there, 0.02 asked", NAMES[1])


def test_dry_run_lists_the_points_and_writes_nothing(swept, pets, tmp_path):
    out, _, _ = swept
    result = lnl_in_process("sweep", "--preset", str(pets), *GRID, "--grid", "method=baseline,lnl",
                            "--set", "train.num_threads=1", "--out", str(out), "--dry-run", "--json", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert planned["status"] == "planned" and planned["jobs"] == 2
    assert [(p["name"], p["action"]) for p in planned["points"]] == [
        ("pets-baseline-seed0", "train"), ("pets-lnl-seed0", "skip"), ("pets-baseline-seed1", "train"),
        ("pets-lnl-seed1", "skip")]
    assert not (out / "pets-baseline-seed0").exists()
    assert "4 points are valid: 2 to train, 0 to resume, 2 finished before" in result.stderr
    table = lnl_in_process("sweep", "--preset", str(pets), *GRID, "--out", str(tmp_path / "new"), "--dry-run")
    assert table.returncode == 0 and "pets-lnl-seed1" in table.stdout
    assert not (tmp_path / "new").exists()


class _StopInEpoch(api.TrainCallbacks):
    """Asks the loop to stop when an epoch starts, as a Ctrl-C would."""

    def __init__(self, stop: StopRequest, epoch: int):
        self.stop, self.epoch = stop, epoch

    def on_epoch_start(self, epoch, epochs, phase, steps):
        if epoch == self.epoch:
            self.stop.request("SIGINT", 130)


def test_an_interrupted_sweep_resumes_its_point_and_ends_as_an_uninterrupted_one(swept, pets, tmp_path):
    reference, _, _ = swept
    out = tmp_path / "cut"
    overrides = ["train.num_threads=1", "method=lnl"]
    plan = api.sweep_plan(pets, ["seed=0,1"], overrides, out)
    stop = StopRequest()
    made = []

    def second_point_stops():
        made.append(1)
        return _StopInEpoch(stop, 1) if len(made) == 2 else None

    with pytest.raises(TrainingInterrupted) as info:
        api.sweep(plan, None, stop, second_point_stops, plots=False)
    assert info.value.exit_code == 130 and "1 of 2 points finished" in str(info.value)
    assert "run the same sweep again" in str(info.value)
    recorded = json.loads((out / "sweep.json").read_text())
    assert recorded["status"] == "interrupted"
    assert [p["status"] for p in recorded["points"]] == ["finished", "interrupted"]
    assert (out / NAMES[1] / "last.pt").is_file() and not (out / NAMES[1] / "summary.json").exists()
    again = api.sweep_plan(pets, ["seed=0,1"], overrides, out)
    assert [point.action for point in again.points] == ["skip", "resume"]
    finished = api.sweep(again, plots=False)
    assert [p["status"] for p in finished["points"]] == ["finished", "finished"]
    for name in NAMES:
        assert_same_weights(reference / name, out / name)
        assert summary(reference / name)["test"]["accuracy"] == summary(out / name)["test"]["accuracy"]


def test_an_unfinished_point_of_another_config_is_refused_too(swept, pets, tmp_path):
    out = tmp_path / "s"
    (out / NAMES[0]).mkdir(parents=True)
    for name in ("last.pt", "config.yaml"):
        (out / NAMES[0] / name).write_bytes((swept[0] / NAMES[0] / name).read_bytes())
    result = lnl_in_process("sweep", "--preset", str(pets), *GRID, *FIXED, "--set", "train.epochs=3",
                            "--out", str(out), "--dry-run")
    assert_one_line_error(result, 2, f"{out / NAMES[0]} holds an unfinished run of another config",
                          "train.epochs=2 there, 3 asked")


def test_a_failed_point_does_not_stop_the_others(pets, tmp_path):
    out = tmp_path / "s"
    result = lnl_in_process("sweep", "--preset", str(pets), "--grid", "data.train=train.csv,missing.csv",
                            "--set", "train.num_threads=1", "--set", "method=baseline", "--out", str(out))
    assert_one_line_error(result, 3, "1 of 2 points failed", "pets-baseline-trainmissing.csv (exit 3)",
                          "missing.csv")
    recorded = json.loads((out / "sweep.json").read_text())
    assert recorded["status"] == "failed"
    assert [(p["status"], p["exit_code"]) for p in recorded["points"]] == [("finished", 0), ("failed", 3)]
    assert (out / "pets-baseline-traintrain.csv" / "summary.json").is_file()
    assert not (out / "pets-baseline-trainmissing.csv").exists()  # a run that never started leaves nothing


def test_a_second_sweep_into_the_same_folder_waits_its_turn(pets, tmp_path):
    out = tmp_path / "s"
    with locked(out):
        result = lnl_in_process("sweep", "--preset", str(pets), *GRID, "--out", str(out))
    assert_one_line_error(result, 2, f"another lnl sweep is running into {out} (pid {os.getpid()})")


# ------------------------------------------------------------------ --jobs: points in processes of their own


@pytest.mark.slow
def test_points_in_parallel_processes_equal_the_points_trained_here(swept, pets, tmp_path):
    reference, document, _ = swept
    out = tmp_path / "jobs"
    result = lnl("sweep", "--preset", str(pets), *GRID, *FIXED, "--out", str(out), "--jobs", "2", "--json")
    assert result.returncode == 0, result.stderr
    parallel = json.loads(result.stdout)
    assert parallel["jobs"] == 2
    for name, point in zip(NAMES, parallel["points"]):
        assert_same_weights(reference / name, out / name)
        assert point["result"]["accuracy"] == summary(reference / name)["test"]["accuracy"]
        assert "training lnl on manifest" in (out / name / "train.log").read_text()
    assert f"(log: {out / NAMES[0] / 'train.log'})" in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_parallel_points_which_keep_resumable_folders(pets, tmp_path):
    out = tmp_path / "s"
    env = {k: v for k, v in os.environ.items() if k != "LNL_DEBUG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lnl_cli", "sweep", "--preset", str(pets), *GRID, *FIXED, "--set", "train.epochs=100000",
         "--out", str(out), "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not all((out / name / "last.pt").is_file() for name in NAMES):
        time.sleep(0.1)
    # a terminal's Ctrl-C reaches only the sweep: its points run in sessions of their own
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: sweep interrupted by SIGINT: 0 of 2 points finished")
    recorded = json.loads((out / "sweep.json").read_text())
    assert [p["status"] for p in recorded["points"]] == ["interrupted", "interrupted"]
    for name in NAMES:
        assert load_checkpoint(out / name / "last.pt")["epoch"] >= 1
        assert not (out / name / "summary.json").exists()
    plan = api.sweep_plan(pets, ["seed=0,1"], ["train.num_threads=1", "method=lnl", "train.epochs=100000"], out)
    assert [point.action for point in plan.points] == ["resume", "resume"]


# ------------------------------------------------------------------ kill -9: no orphans, one writer per folder (issue 28)
def _live_trainers(folder: Path) -> list[int]:
    """Pids of live (not zombie) processes whose command line names `folder`: the sweep's `lnl train` points."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"train" in command and any(str(folder).encode() in part for part in command):
            pids.append(int(entry.name))
    return pids


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the points' processes")
def test_the_points_of_a_sweep_killed_with_sigkill_die_with_it(pets, tmp_path):
    out = tmp_path / "s"
    env = {k: v for k, v in os.environ.items() if k != "LNL_DEBUG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lnl_cli", "sweep", "--preset", str(pets), *GRID, *FIXED, "--set", "train.epochs=100000",
         "--out", str(out), "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert _wait_for(lambda: all((out / name / "last.pt").is_file() for name in NAMES), 60)
        assert len(_live_trainers(out)) == 2
    finally:
        process.kill()
        process.wait()
    from lnl_cli import run_folder

    orphans = _live_trainers(out)
    gone = lambda: not _live_trainers(out) and not any(run_folder.in_use(out / name) for name in NAMES)  # noqa: E731
    try:
        assert _wait_for(gone, 10), f"points outlived their sweep: {orphans}"
    finally:
        for pid in _live_trainers(out):
            os.kill(pid, signal.SIGKILL)
    # nobody holds the points now: the same sweep again would resume both
    plan = api.sweep_plan(pets, ["seed=0,1"], ["train.num_threads=1", "method=lnl", "train.epochs=100000"], out)
    assert [point.action for point in plan.points] == ["resume", "resume"]


@pytest.mark.slow
def test_a_folder_resumed_twice_at_once_has_one_writer_and_sigkill_frees_it(pets, tmp_path):
    from lnl_cli import run_folder

    run = tmp_path / "run"
    trained = lnl_in_process("train", "--preset", str(pets), *FIXED, "--set", "train.epochs=1", "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    env = {k: v for k, v in os.environ.items() if k != "LNL_DEBUG"}
    first = subprocess.Popen([sys.executable, "-m", "lnl_cli", "train", "--resume", str(run), "train.epochs=100000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert _wait_for(lambda: run_folder.in_use(run), 60), "the first resume never took the folder"
        second = lnl_in_process("train", "--resume", str(run), "train.epochs=100000")
        assert_one_line_error(second, 2, f"run folder {run} is in use")
    finally:
        first.kill()
        first.wait()
    assert not run_folder.in_use(run)  # the lock died with its holder
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    done = load_checkpoint(run / "last.pt")["epoch"]
    third = lnl_in_process("train", "--resume", str(run), f"train.epochs={done + 1}")
    assert third.returncode == 0, third.stderr
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, done + 2))  # every epoch once: one writer at a time


def test_a_claim_left_by_a_run_killed_before_its_first_checkpoint_is_taken_over(pets, tmp_path):
    """A point whose run was SIGKILLed while loading its data: `--dry-run` says train, and the sweep trains it."""
    out = tmp_path / "s"
    dead = out / NAMES[0]
    dead.mkdir(parents=True)
    (dead / ".lnl-claim").write_text(json.dumps({"token": "dead-run", "pid": 2**22 + 1, "host": "here"}) + "\n")
    resumed = lnl_in_process("train", "--resume", str(dead))
    assert_one_line_error(resumed, 4, "has no checkpoint to resume", f"lnl train --out {dead}")
    plan = api.sweep_plan(pets, ["seed=0,1"], ["train.num_threads=1", "method=lnl"], out)
    assert [point.action for point in plan.points] == ["train", "train"]
    result = lnl_in_process("sweep", "--preset", str(pets), *GRID, *FIXED, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert (dead / "summary.json").is_file()
    assert json.loads((dead / ".lnl-claim").read_text())["token"] != "dead-run"


def test_a_point_that_lnl_train_would_refuse_before_its_data_is_an_error_of_the_plan(pets, tmp_path):
    result = lnl_in_process("sweep", "--preset", "smoke", "--grid", "data.val_size=0,100", "--set",
                            "train.select=val_accuracy", "--out", str(tmp_path / "s"), "--dry-run")
    assert_one_line_error(result, 2, "needs a validation split", "(points with data.val_size=0)")
