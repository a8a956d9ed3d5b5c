"""The benchmark scripts still run (tiny sizes; their figures live in benchmarks/RESULTS.md, not here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["data.train_size=256", "data.test_size=200", "train.epochs=1", "train.pretrain_epochs=0",
        "train.num_threads=2"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.mnist
def test_reproduce_reports_all_four_methods_and_reuses_finished_runs(mnist_root, tmp_path, capsys):
    reproduce = _script("reproduce")
    args = ["--preset", "colored-mnist", "--set", *TINY, f"data.root={mnist_root}", "--out", str(tmp_path),
            "--json", str(tmp_path / "results.json")]
    reproduce.main(args)
    first = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in first] == ["baseline", "lnl", "gray", "blind_eye"]
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {m} | 0.020 |" in report for m in ("baseline", "lnl", "gray", "blind_eye"))
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/last.pt")}
    reproduce.main([*args, "--reuse"])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/last.pt")} == stamps  # nothing retrained
    assert [r["accuracy"] for r in json.loads((tmp_path / "results.json").read_text())] == [r["accuracy"] for r in first]


@pytest.mark.mnist
def test_background_mnist_benchmark_reports_accuracy_and_leakage(mnist_root, tmp_path):
    bench = _script("background_mnist")
    bench.main(["--data-root", str(mnist_root), "--out", str(tmp_path), "--train-size", "300", "--test-size", "200",
                "--set", "train.epochs=1", "train.num_threads=2"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results] == ["baseline", "lnl"]
    assert all(0.0 <= r["test"]["accuracy"] <= 1.0 and -1.0 <= r["leakage"]["mean"] <= 1.0 for r in results)
    assert (tmp_path / "report.md").read_text().count("\n| ") == 3  # header rule + two rows
