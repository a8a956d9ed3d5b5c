"""The `lnl` command end to end, as a user or a CI job runs it (subprocesses, real exit codes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import (assert_one_line_error, assert_output_error, lnl, lnl_all, lnl_in_process, lnl_to, write_folder,
                     write_preset)

SMALL = ["data.train_size=1000", "data.test_size=600", "train.epochs=2", "train.pretrain_epochs=1",
         "train.num_threads=2"]


# Not marked slow: the fast lane's one run of the installed program (about a second; --help imports no torch).
def test_help_lists_the_commands_and_the_exit_codes():
    result = lnl("--help")
    assert result.returncode == 0
    for word in ("train", "evaluate", "probe-bias", "Exit codes"):
        assert word in result.stdout
    version = lnl("--version")
    assert version.returncode == 0 and version.stdout.startswith("lnl ")


@pytest.mark.slow
def test_presets_are_listed_with_descriptions():
    result = lnl("presets", "--json")
    assert result.returncode == 0
    names = {p["name"]: p["description"] for p in json.loads(result.stdout)}
    assert "colored-mnist" in names and names["colored-mnist"]


@pytest.mark.slow
def test_config_errors_exit_2_before_any_work(tmp_path):
    result, unknown = lnl_all(["train", "--set", "trian.lr=0.1", "train.batch_size=-1", "--out", str(tmp_path / "r")],
                              ["train", "--preset", "nope"])
    assert_one_line_error(result, 2, "did you mean 'train.lr'", "train.batch_size")
    assert not (tmp_path / "r").exists()
    assert_one_line_error(unknown, 2, "unknown preset")


@pytest.mark.slow
def test_missing_mnist_exits_3_and_names_the_folder(tmp_path):
    fresh_cache = {"LNL_CACHE_DIR": str(tmp_path / "cache")}  # a cached dataset would not need MNIST
    result = lnl("train", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), *SMALL, env=fresh_cache)
    assert_one_line_error(result, 3, str(tmp_path / "MNIST" / "raw"), "train-images-idx3-ubyte")
    assert not (tmp_path / "r").exists()  # nothing half-made on disk


@pytest.mark.slow
def test_bad_checkpoints_exit_4(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    missing, evaluated, probed = lnl_all(["evaluate", "--checkpoint", str(tmp_path / "none.pt")],
                                         ["evaluate", "--checkpoint", str(junk)], ["probe-bias", "--checkpoint", str(junk)])
    assert_one_line_error(missing, 4, "not found")
    assert_one_line_error(evaluated, 4, "truncated or not a checkpoint")
    assert_one_line_error(probed, 4)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, request):
    """A baseline and an lnl run on a real MNIST subset, through the CLI."""
    root = request.getfixturevalue("mnist_root")
    base = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("baseline", "lnl"):
        out = base / method
        result = lnl("train", "--preset", "colored-mnist", "--data-root", str(root), "--out", str(out), "--json",
                     "--set", f"method={method}", *SMALL)
        assert result.returncode == 0, result.stderr
        runs[method] = (out, json.loads(result.stdout), result)
    return root, runs


@pytest.mark.mnist
@pytest.mark.slow
def test_train_writes_the_run_folder_and_prints_only_json(trained_runs):
    _, runs = trained_runs
    for method, (out, summary, result) in runs.items():
        assert summary["method"] == method and summary["epochs"] == 2
        assert summary["train_size"] == 1000 and summary["test_size"] == 600
        assert 0.0 <= summary["test"]["accuracy"] <= 1.0
        for name in ("config.yaml", "metrics.jsonl", "last.pt", "summary.json"):
            assert (out / name).is_file(), name
        assert json.loads((out / "summary.json").read_text()) == summary
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in lines] == [1, 2]
        assert {"label_loss", "val_accuracy", "val_bias_head_accuracy", "seconds"} <= set(lines[-1])
        assert "epoch 2" in result.stderr  # progress went to stderr
    lnl_metrics = [json.loads(x) for x in (runs["lnl"][0] / "metrics.jsonl").read_text().splitlines()]
    assert lnl_metrics[0]["phase"] == "warm-up" and lnl_metrics[1]["phase"] == "adversarial"
    assert "bias_loss" in lnl_metrics[1] and "neg_entropy" in lnl_metrics[1]


@pytest.mark.mnist
@pytest.mark.slow
def test_evaluate_reports_aligned_conflicting_cells_and_confusion(trained_runs):
    _, runs = trained_runs
    out, summary, _ = runs["lnl"]
    result, human = lnl_all(["evaluate", "--checkpoint", str(out / "last.pt"), "--json"],
                            ["evaluate", "--checkpoint", str(out / "last.pt")])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert report["aligned_accuracy"] == pytest.approx(summary["test"]["aligned_accuracy"])
    assert report["num_samples"] == 600
    assert sum(c["count"] for c in report["cells"]) == 600 and len(report["cells"]) == 100
    assert sum(map(sum, report["confusion_matrix"])) == 600
    assert human.returncode == 0 and "bias-conflicting accuracy" in human.stdout


@pytest.mark.mnist
@pytest.mark.slow
def test_probe_bias_gate_exit_codes(trained_runs):
    _, runs = trained_runs
    checkpoint = str(runs["baseline"][0] / "last.pt")
    fast = ["--seeds", "2", "--steps", "100"]
    passed = lnl("probe-bias", "--checkpoint", checkpoint, "--max-leakage", "1.0", "--json", *fast)
    assert passed.returncode == 0, passed.stderr
    report = json.loads(passed.stdout)
    assert report["passed"] is True and report["max_leakage"] == 1.0
    assert report["num_classes"] == 10 and report["train_samples"] + report["heldout_samples"] == 600
    assert report["layer"] == "features" and report["feature_size"] == 32 * 14 * 14
    recorded = json.loads((runs["baseline"][0] / "probe.json").read_text())
    assert recorded["leakage"] == report["leakage"]  # kept beside the checkpoint for `lnl compare`
    failed, usage, many = lnl_all(["probe-bias", "--checkpoint", checkpoint, "--max-leakage", "0", "--json", *fast],
                                  ["probe-bias", "--checkpoint", checkpoint, "--probe", "svm"],
                                  ["probe-bias", "--checkpoint", checkpoint, "--seeds", "many"])
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["passed"] is False
    assert_one_line_error(usage, 2, "--probe")
    assert many.returncode == 2


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.mnist
@pytest.mark.slow
def test_train_writes_plots_and_evaluate_plots_the_report(trained_runs, tmp_path):
    _, runs = trained_runs
    for out, _, _ in runs.values():
        for name in ("losses.png", "accuracy.png"):
            width, height = _png_size(out / name)
            assert 300 < width < 3000 and 200 < height < 3000
    out = runs["lnl"][0]
    result = lnl("evaluate", "--checkpoint", str(out / "last.pt"), "--plots", str(tmp_path / "plots"), "--json")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # stdout stays pure JSON
    for name in ("confusion_matrix.png", "cell_accuracy.png"):
        width, height = _png_size(tmp_path / "plots" / name)
        assert 300 < width < 3000 and 300 < height < 3000


@pytest.mark.mnist
@pytest.mark.slow
def test_compare_json_and_csv_match_the_summaries(trained_runs):
    import csv
    import io

    _, runs = trained_runs
    dirs = [str(out) for out, _, _ in runs.values()]
    result = lnl("compare", *dirs, "--json", "--sort", "accuracy")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 2
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]
    by_run = {row["run"]: row for row in rows}
    for out, summary, _ in runs.values():
        row = by_run[str(out)]
        assert row["method"] == summary["method"]
        for key in ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy"):
            assert row[key] == pytest.approx(summary["test"][key])
    table = lnl("compare", *dirs, "--csv")
    assert table.returncode == 0
    parsed = list(csv.DictReader(io.StringIO(table.stdout)))
    assert {r["run"] for r in parsed} == set(dirs)
    for r in parsed:
        assert float(r["accuracy"]) == pytest.approx(by_run[r["run"]]["accuracy"])
    assert_one_line_error(lnl("compare", *dirs, "--sort", "nope"), 2, "cannot sort")


def test_an_unexpected_failure_is_exit_70_without_a_traceback(monkeypatch):
    from lnl_cli import api
    from lnl_cli.cli import app

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "load_config", broken)
    monkeypatch.delenv("LNL_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 70
    assert "internal error: RuntimeError: boom" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_usage_errors_exit_2():
    unknown, both = lnl_all(["train", "--no-such-flag"], ["train", "--resume", "x", "--preset", "colored-mnist"])
    assert unknown.returncode == 2
    assert both.returncode == 2


# ------------------------------------------------------------------ stdout that cannot be written (exit 74)
def _finished_run(folder: Path) -> Path:
    """A run folder as `lnl compare` reads it, without training."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("method: lnl\nseed: 0\n")
    (folder / "summary.json").write_text(json.dumps({"test": {"accuracy": 0.5}, "seconds": 1.0}))
    return folder


@pytest.mark.parametrize("stdout, args", [
    ("full", ["presets"]), ("closed", ["presets", "--json"]), ("broken-pipe", ["presets"]),
    ("full", ["compare", "RUN", "--csv"]), ("broken-pipe", ["compare", "RUN"]), ("closed", ["compare", "RUN", "--json"]),
])
@pytest.mark.slow
def test_an_unwritable_stdout_is_exit_74_with_one_line(tmp_path, stdout, args):
    run = _finished_run(tmp_path / "run")
    assert_output_error(lnl_to(stdout, *[str(run) if a == "RUN" else a for a in args]), stdout)


@pytest.mark.mnist
@pytest.mark.slow
def test_evaluate_and_probe_bias_exit_74_when_stdout_cannot_be_written(trained_runs):
    _, runs = trained_runs
    checkpoint = str(runs["baseline"][0] / "last.pt")
    assert_output_error(lnl_to("closed", "evaluate", "--checkpoint", checkpoint, "--json"), "closed")
    assert_output_error(lnl_to("full", "evaluate", "--checkpoint", checkpoint), "full")
    # The gate fails here (a baseline leaks its colour), yet exit 1 would claim a verdict nobody received.
    probe = lnl_to("broken-pipe", "probe-bias", "--checkpoint", checkpoint, "--max-leakage", "0", "--json",
                   "--seeds", "1", "--steps", "50")
    assert_output_error(probe, "broken-pipe")


# ------------------------------------------------------------------ stderr that cannot be written: training goes on
@pytest.mark.mnist
@pytest.mark.slow
def test_training_outlives_a_closed_stderr(tmp_path, mnist_root):
    args = [sys.executable, "-m", "lnl_cli", "train", "--data-root", str(mnist_root), "data.train_size=512",
            "data.test_size=256", "data.val_size=256", "train.epochs=3", "train.pretrain_epochs=1", "train.num_threads=1"]
    env = {k: v for k, v in os.environ.items() if k != "LNL_DEBUG"}
    # stderr's reader goes away after the first lines; stdout still works
    out = tmp_path / "own-stderr"
    with open(tmp_path / "stdout.json", "w") as result:
        process = subprocess.Popen([*args, "--out", str(out), "--json"], stdout=result, stderr=subprocess.PIPE,
                                   text=True, env=env)
        first = [process.stderr.readline() for _ in range(2)]
        process.stderr.close()
        assert process.wait(timeout=300) == 0, first
    assert any("training" in line for line in first)
    assert load_checkpoint_epoch(out) == 3
    assert json.loads((tmp_path / "stdout.json").read_text())["epochs"] == 3
    # `lnl train ... 2>&1 | head -n 3`: one pipe for both, gone after three lines
    out = tmp_path / "shared-pipe"
    process = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    [process.stdout.readline() for _ in range(3)]
    process.stdout.close()
    assert process.wait(timeout=300) == 74  # the result table could not be written; training finished
    assert load_checkpoint_epoch(out) == 3


def load_checkpoint_epoch(run_dir: Path) -> int:
    from lnl_cli.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "last.pt")["epoch"]


# ------------------------------------------------------------------ user strings are text, not rich markup
def _without_matplotlib(tmp_path: Path) -> dict:
    """An environment in which `import matplotlib` fails, as where the [plots] extra is not installed."""
    fake = tmp_path / "no-matplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    repo = str(Path(__file__).resolve().parent.parent)
    return {"PYTHONPATH": os.pathsep.join([str(fake.parent), repo, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.mnist
@pytest.mark.slow
def test_paths_with_brackets_are_printed_as_they_are(tmp_path, mnist_root):
    env = {**os.environ, **_without_matplotlib(tmp_path), "COLUMNS": "300"}  # compare's table, unsqueezed
    env.pop("LNL_DEBUG", None)
    folder = "r[/]x/exp[lr=0.1]"  # '[/]' looks like a closing tag (rich: crash), '[lr=0.1]' like a style (dropped)
    result = subprocess.run(
        [sys.executable, "-m", "lnl_cli", "train", "--data-root", str(mnist_root), "--out", folder,
         "data.train_size=256", "data.test_size=128", "data.val_size=128", "train.epochs=1", "train.pretrain_epochs=1",
         "train.num_threads=1"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"-> {folder}" in result.stderr
    assert "plots skipped: plots need matplotlib: pip install 'lnl[plots]'" in result.stderr
    assert re.search(rf"│ {re.escape(folder)} +│", result.stdout), result.stdout  # one cell, as it is
    compared = subprocess.run([sys.executable, "-m", "lnl_cli", "compare", folder], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)
    assert compared.returncode == 0, compared.stderr
    assert folder in compared.stdout


@pytest.mark.slow
def test_evaluate_plots_without_matplotlib_fails_before_evaluating(tmp_path):
    """The checkpoint is not even looked at: without matplotlib there is no point in evaluating it."""
    plots = tmp_path / "plots"
    result = lnl("evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--plots", str(plots),
                 env=_without_matplotlib(tmp_path))
    assert_one_line_error(result, 2, "pip install 'lnl[plots]'")
    assert not plots.exists()


# ------------------------------------------------------------------ --max-leakage and standard JSON
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "2"])
def test_max_leakage_must_be_a_number_from_0_to_1(tmp_path, value):
    from lnl_cli.cli import app

    result = CliRunner().invoke(app, ["probe-bias", "--checkpoint", str(tmp_path / "missing.pt"),
                                      "--max-leakage", value, "--json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --max-leakage must be a number from 0 to 1"), lines


def test_print_json_writes_nan_and_infinity_as_null(capsys):
    from lnl_cli.cli.common import print_json

    print_json({"leakage": {"mean": float("nan"), "std": float("inf")}, "values": [1.5, float("-inf")]})
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON: {name}")) == {
        "leakage": {"mean": None, "std": None}, "values": [1.5, None]}


# ------------------------------------------------------------------ warnings and signals
def test_python_warnings_become_one_clean_line_each(capsys):
    import warnings

    from lnl_cli.cli.common import show_warnings_as_lines

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        show_warnings_as_lines()
        for _ in range(3):
            warnings.warn("weights [are] odd\n  second line", UserWarning)
    assert capsys.readouterr().err == "warning: weights [are] odd second line\n"


@pytest.mark.slow
def test_only_the_main_process_reports_a_signal_to_its_dataloader_workers(tmp_path):
    """Ctrl-C reaches the whole process group, forked DataLoader workers included."""
    import signal
    import time

    write_folder(tmp_path, {"train": [("cat", "red"), ("dog", "blue")] * 40, "test": [("cat", "blue"), ("dog", "red")] * 4})
    preset = write_preset(tmp_path, "")
    env = {k: v for k, v in os.environ.items() if k != "LNL_DEBUG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lnl_cli", "train", "--preset", str(preset), "--out", str(tmp_path / "run"),
         "data.loading=stream", "data.num_workers=2", "train.epochs=500", "train.num_threads=1", "method=baseline"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline and len(_children(process.pid)) < 2:
        time.sleep(0.05)  # until both decoding workers of an epoch are up
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.count("SIGINT received") == 1, stderr
    assert "Traceback" not in stderr


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("name", ["../../x", "/abs", "**", "a" * 300], ids=["parent", "absolute", "glob", "long"])
def test_a_run_name_that_is_no_folder_name_exits_2_writing_nothing(tmp_path, monkeypatch, name):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LNL_DEBUG", raising=False)
    assert_one_line_error(lnl_in_process("train", f"name={name}", "train.epochs=1"), 2, "name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


def test_an_empty_out_or_resume_folder_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LNL_DEBUG", raising=False)
    assert_one_line_error(lnl_in_process("train", "--out", "", "train.epochs=1"), 2, "--out", "is empty")
    assert_one_line_error(lnl_in_process("train", "--resume", ""), 2, "--resume", "is empty")
    assert list(tmp_path.iterdir()) == []
