"""The benchmark scripts: reproduce.py's plan, reuse, statistics and wording with a fake trainer (no real
training), the background-MNIST and packed-sweep benchmarks on tiny sizes (their figures live in
benchmarks/RESULTS.md; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reproduce():
    return _script("reproduce")


@pytest.fixture(scope="module")
def stats():
    return _script("stats")


def _nested(overrides: list[str]) -> dict:
    tree: dict = {}
    for override in overrides:
        key, _, value = override.partition("=")
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return tree


class FakeTrainer:
    """Stands in for reproduce.train_run: writes what a finished run folder holds (config.yaml, last.pt,
    best.pt, summary.json with the selected model's test metrics) and records every call."""

    def __init__(self):
        self.calls: list[dict] = []

    @staticmethod
    def accuracy(settings: dict) -> float:
        base = {"baseline": 0.45, "lnl": 0.80, "lnl_probe": 0.85, "blind_eye": 0.65, "gray": 0.70,
                "csad": 0.90}[settings["method"]]
        return round(base + 0.01 * settings["seed"] + settings["data"]["color_var"], 4)

    def __call__(self, preset, overrides, out, tag, resume=False, resume_overrides=None):
        out = Path(out)
        if resume:
            settings = yaml.safe_load((out / "config.yaml").read_text())
        else:
            assert not out.exists() or not any(out.iterdir()), f"{out} trained twice"
            settings = _nested(overrides)
            out.mkdir(parents=True)
            (out / "config.yaml").write_text(yaml.safe_dump(settings))
        self.calls.append({"out": out, "overrides": dict(o.split("=", 1) for o in overrides), "resume": resume})
        for name in ("last.pt", "best.pt"):
            (out / name).write_bytes(b"weights")
        accuracy = self.accuracy(settings)
        summary = {"method": settings["method"], "epochs": settings["train"]["epochs"], "device": "cpu",
                   "seconds": 12.5, "train_seconds": 10.0,
                   "selected": {"epoch": 2, "metric": settings["train"]["select"], "value": accuracy + 0.01},
                   "test": {"accuracy": accuracy, "aligned_accuracy": 0.99, "conflicting_accuracy": accuracy - 0.05,
                            "worst_group_accuracy": accuracy - 0.2, "bias_head_accuracy": 0.3}}
        (out / "summary.json").write_text(json.dumps(summary))
        return summary


@pytest.fixture
def fake(reproduce, monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr(reproduce, "train_run", trainer)
    return trainer


SCHEDULE = ["--warmup-epochs", "3", "--adversarial-epochs", "2", "--adversarial-lr", "0.001", "--warmup-lr", "0.01"]


def test_each_warmup_is_trained_once_and_every_adversarial_method_branches_from_its_last_checkpoint(
        reproduce, fake, tmp_path):
    out = tmp_path / "bench"
    assert reproduce.main(["--color-vars", "0.020", "0.030", "--seeds", "0", "1", "--out", str(out),
                           "--select", "val_worst_group_accuracy", *SCHEDULE]) == 0
    warmups = [c for c in fake.calls if c["overrides"]["method"] == "baseline"]
    assert sorted((c["overrides"]["data.color_var"], c["overrides"]["seed"]) for c in warmups) == [
        ("0.02", "0"), ("0.02", "1"), ("0.03", "0"), ("0.03", "1")]
    for warmup in warmups:
        assert warmup["overrides"]["train.epochs"] == "3" and warmup["overrides"]["train.pretrain_epochs"] == "0"
        assert warmup["overrides"]["train.lr"] == "0.01" and "train.init_from" not in warmup["overrides"]
    order = [c["out"] for c in fake.calls]
    for call in fake.calls:
        settings = call["overrides"]
        assert settings["train.select"] == "val_worst_group_accuracy"
        if settings["method"] in ("lnl", "blind_eye"):
            (warmup,) = [w for w in warmups if (w["overrides"]["data.color_var"], w["overrides"]["seed"])
                         == (settings["data.color_var"], settings["seed"])]
            assert Path(settings["train.init_from"]) == (warmup["out"] / "last.pt").absolute()
            assert settings["train.pretrain_epochs"] == "0" and settings["train.epochs"] == "2"
            assert settings["train.adversarial_lr"] == "0.001"
            assert order.index(warmup["out"]) < order.index(call["out"])  # the warm-up exists first
        elif settings["method"] == "gray":  # from scratch, on the warm-up's schedule
            assert "train.init_from" not in settings and settings["train.epochs"] == "3"
    assert sorted(c["overrides"]["method"] for c in fake.calls) == sorted(["baseline", "lnl", "blind_eye", "gray"] * 4)

    report = json.loads((out / "report.json").read_text())
    baseline = [c for c in report["cells"] if c["method"] == "baseline" and c["color_var"] == 0.02]
    assert baseline[0]["accuracy"] == [0.47, 0.48]  # the baseline row is the warm-up runs, selected model
    assert {r["role"] for r in report["runs"] if r["method"] == "baseline"} == {"warm-up"}
    assert all(r["selected"]["metric"] == "val_worst_group_accuracy" for r in report["runs"])
    assert {r["precision"] for r in report["runs"]} <= {"bf16", "fp32"}
    assert report["machine"]["cpu"]


def test_only_the_asked_methods_are_trained_and_the_warmup_only_when_needed(reproduce, fake, tmp_path):
    reproduce.main(["--methods", "gray", "--seeds", "0", "--out", str(tmp_path / "a"), *SCHEDULE])
    assert [c["overrides"]["method"] for c in fake.calls] == ["gray"]
    fake.calls.clear()
    reproduce.main(["--methods", "lnl", "--seeds", "0", "--out", str(tmp_path / "b"), *SCHEDULE])
    assert [c["overrides"]["method"] for c in fake.calls] == ["baseline", "lnl"]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [c["method"] for c in report["cells"]] == ["lnl"]  # the warm-up ran, but no baseline row was asked for


def test_the_adversarial_lr_is_the_presets_else_the_official_one_and_epochs_the_presets(reproduce, fake, tmp_path):
    reproduce.main(["--preset", "colored-mnist-fast", "--methods", "baseline", "lnl", "--seeds", "0",
                    "--out", str(tmp_path / "fast")])
    warmup, lnl = fake.calls
    assert warmup["overrides"]["train.epochs"] == "8" and lnl["overrides"]["train.epochs"] == "3"
    assert lnl["overrides"]["train.adversarial_lr"] == "0.01"  # colored-mnist-fast sets it
    fake.calls.clear()
    unset = tmp_path / "unset.yaml"
    unset.write_text("extends: colored-mnist\ntrain: {adversarial_lr: null, epochs: 3, pretrain_epochs: 2}\n")
    reproduce.main(["--preset", str(unset), "--methods", "lnl", "--seeds", "0", "--out", str(tmp_path / "unset")])
    assert fake.calls[1]["overrides"]["train.adversarial_lr"] == str(reproduce.OFFICIAL_ADVERSARIAL_LR)


def test_lnl_probe_branches_from_the_warmup_and_has_no_paper_row(reproduce, fake, tmp_path):
    out = tmp_path / "probe"
    assert reproduce.main(["--methods", "baseline", "lnl", "lnl_probe", "--seeds", "0", "--color-vars", "0.020",
                           "--out", str(out), *SCHEDULE]) == 0
    branched = [c for c in fake.calls if c["overrides"]["method"] == "lnl_probe"]
    assert len(branched) == 1
    warmup = branched[0]["out"].parent / "baseline"
    assert Path(branched[0]["overrides"]["train.init_from"]) == (warmup / "last.pt").absolute()
    cells = {(c["method"], c["color_var"]): c for c in json.loads((out / "report.json").read_text())["cells"]}
    assert cells[("lnl_probe", 0.02)]["verdict"] == "no paper figure"
    assert "| **lnl_probe, measured** |" in (out / "report.md").read_text()


def test_csad_branches_from_the_warmup_and_is_set_beside_its_one_official_figure(reproduce, fake, tmp_path):
    out = tmp_path / "csad"
    assert reproduce.main(["--methods", "baseline", "csad", "--seeds", "0", "1", "--color-vars", "0.020", "0.030",
                           "--out", str(out), *SCHEDULE]) == 0
    assert sorted(c["overrides"]["method"] for c in fake.calls) == ["baseline"] * 4 + ["csad"] * 4
    for call in fake.calls:
        if call["overrides"]["method"] == "csad":
            warmup = call["out"].parent / "baseline"
            assert Path(call["overrides"]["train.init_from"]) == (warmup / "last.pt").absolute()
            assert call["overrides"]["train.pretrain_epochs"] == "0" and call["overrides"]["train.epochs"] == "2"
    cells = {(c["method"], c["color_var"]): c for c in json.loads((out / "report.json").read_text())["cells"]}
    assert cells[("csad", 0.02)]["paper"] == 0.943 and cells[("csad", 0.03)]["verdict"] == "no paper figure"
    report = (out / "report.md").read_text()
    assert "| CSAD, paper | 0.9430 | — |" in report and "zwvews/csad" in report
    fake.calls.clear()
    reproduce.main(["--methods", "lnl", "--seeds", "0", "--out", str(tmp_path / "lnl"), *SCHEDULE])
    assert "CSAD" not in (tmp_path / "lnl" / "report.md").read_text()  # its row only beside a measured csad
    assert "csad" not in reproduce.parse_args([]).methods  # not in the default list: it needs its own preset


def test_finished_runs_are_reused_and_an_interrupted_one_resumed(reproduce, fake, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["--methods", "baseline", "lnl", "--seeds", "0", "1", "--out", str(out), *SCHEDULE]
    reproduce.main(args)
    first = (out / "report.json").read_text()
    assert len(fake.calls) == 4
    capsys.readouterr()
    fake.calls.clear()
    assert reproduce.main(args) == 0
    assert fake.calls == []  # nothing trained again
    assert capsys.readouterr().err.count("already has summary.json") == 4
    assert json.loads((out / "report.json").read_text())["cells"] == json.loads(first)["cells"]

    (out / "var0.020-seed1" / "lnl" / "summary.json").unlink()  # stopped before it finished
    reproduce.main(args)
    assert [(c["out"].name, c["resume"]) for c in fake.calls] == [("lnl", True)]
    assert "resuming lnl" in capsys.readouterr().err


def test_a_folder_holding_a_run_with_other_settings_is_refused(reproduce, fake, tmp_path, capsys):
    out = tmp_path / "bench"
    reproduce.main(["--methods", "baseline", "--seeds", "0", "--out", str(out), *SCHEDULE])
    fake.calls.clear()
    assert reproduce.main(["--methods", "baseline", "--seeds", "0", "--out", str(out), *SCHEDULE[:-2],
                           "--warmup-lr", "0.05"]) == 1
    assert fake.calls == [] and "train.lr=0.01" in capsys.readouterr().err


def test_repeated_seeds_count_once_and_other_variances_have_no_paper_figure(reproduce, fake, tmp_path):
    out = tmp_path / "bench"
    reproduce.main(["--methods", "lnl", "--seeds", "0", "0", "--color-vars", "0.0225", "--out", str(out), *SCHEDULE])
    assert len(fake.calls) == 2 and fake.calls[1]["out"] == out / "var0.0225-seed0" / "lnl"
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    assert (cell["n"], cell["paper"], cell["verdict"]) == (1, None, "no paper figure")
    assert "σ² 0.0225" in (out / "report.md").read_text()


def test_keys_the_script_sets_cannot_be_overridden(reproduce, capsys):
    with pytest.raises(SystemExit) as exc:
        reproduce.parse_args(["--set", "train.epochs=5"])
    assert exc.value.code == 2 and "--warmup-epochs" in capsys.readouterr().err


def test_the_report_shows_intervals_the_paper_rows_and_the_wording(reproduce, fake, tmp_path, capsys):
    out = tmp_path / "bench"
    reproduce.main(["--seeds", "0", "1", "2", "--out", str(out), *SCHEDULE])
    shown = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert shown.strip() and shown.strip() in report
    for name in ("Baseline, paper", "BlindEye, paper", "Gray, paper", "LNL, paper"):
        assert name in report
    assert "| LNL, paper | 0.8185 | 0.8854 | 0.9137 | 0.9306 | 0.9406 | 0.9555 | 0.9618 |" in report
    # fake lnl accuracies .82, .83, .84: mean .83, sd .01, half-width t(2) * .01 / sqrt(3)
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert f"0.8300 ± {half:.4f} (n=3)" in report
    lnl = next(c for c in json.loads((out / "report.json").read_text())["cells"] if c["method"] == "lnl")
    assert lnl["verdict"] == "consistent with the paper" and lnl["delta"] == pytest.approx(0.83 - 0.8185)
    verdicts = {c["method"]: c["verdict"] for c in json.loads((out / "report.json").read_text())["cells"]}
    assert verdicts["baseline"] == "above the paper"  # .47 .48 .49 against .4055
    assert verdicts["gray"] == "below the paper"  # .72 .73 .74 against .8374
    assert "| baseline | 0.020 | 3 | 0.4800 | 0.0100 | [" in report
    assert "| gray | 0.020 | 3 | 0.7300 | 0.0100 | [" in report and "below the paper" in report
    assert "wall time" in report and "0.2 min" in report and "native bf16 on this CPU" in report

    single = tmp_path / "single"
    reproduce.main(["--methods", "lnl", "--seeds", "0", "--out", str(single), *SCHEDULE])
    report = (single / "report.md").read_text()
    assert "0.8200 (n=1)" in report and "single seed, no claim" in report and "| n=1 |" in report


def test_stats_known_values(stats):
    summary = stats.summarize([0.8, 0.82, 0.84])
    assert summary.n == 3 and summary.mean == pytest.approx(0.82) and summary.sd == pytest.approx(0.02)
    assert summary.half_width == pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-4)
    assert (summary.low, summary.high) == pytest.approx((0.82 - summary.half_width, 0.82 + summary.half_width))
    one = stats.summarize([0.8])
    assert (one.n, one.mean, one.sd, one.half_width, one.low) == (1, 0.8, None, None, None)
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262),
                                          (19, 2.093), (30, 2.042), (120, 1.980)])
def test_t_quantiles_match_the_printed_table(stats, df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert stats.t_cdf(stats.t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-9)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)


def test_verdict_wording(stats):
    tight = stats.summarize([0.80, 0.81, 0.82])  # interval about [.785, .835]
    assert stats.verdict(tight, 0.70) == "above the paper"
    assert stats.verdict(tight, 0.90) == "below the paper"
    assert stats.verdict(tight, 0.81) == "consistent with the paper"
    assert stats.verdict(tight, tight.low) == "consistent with the paper"  # on the bound: covered
    assert stats.verdict(stats.summarize([0.95]), 0.70) == "single seed, no claim"
    assert stats.verdict(tight, None) == "no paper figure"


@pytest.mark.slow
def test_reproduce_help_works():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "reproduce.py"), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--warmup-epochs", "--adversarial-epochs", "--adversarial-lr", "--select", "--methods",
                 "--color-vars", "--seeds", "--threads", "--set", "--out", "--preset"):
        assert flag in result.stdout


@pytest.mark.mnist
@pytest.mark.slow
def test_reproduce_end_to_end_on_a_tiny_schedule(reproduce, mnist_root, tmp_path):
    """Real training through the public API: the warm-up, then LNL branched from it."""
    out = tmp_path / "bench"
    args = ["--preset", "colored-mnist", "--methods", "baseline", "lnl", "--seeds", "0", "--out", str(out),
            "--warmup-epochs", "1", "--adversarial-epochs", "1", "--threads", "2", "--set",
            "data.train_size=256", "data.test_size=200", "data.val_size=100", f"data.root={mnist_root}"]
    assert reproduce.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [c["method"] for c in report["cells"]] == ["baseline", "lnl"]
    assert (out / "var0.020-seed0" / "baseline" / "last.pt").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert reproduce.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps  # nothing retrained


@pytest.mark.mnist
@pytest.mark.slow
def test_background_mnist_benchmark_reports_accuracy_and_leakage(mnist_root, tmp_path):
    bench = _script("background_mnist")
    common = ["--data-root", str(mnist_root), "--out", str(tmp_path), "--train-size", "300", "--val-size", "100",
              "--test-size", "200", "--set", "train.epochs=1", "train.num_threads=2", "--probe-steps", "100",
              "--probe-seeds", "1"]
    bench.main([*common, "--seeds", "0", "1", "--set-for", "lnl", "lnl.lambda=0.5"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in results] == [("baseline", 0), ("baseline", 1), ("lnl", 0), ("lnl", 1)]
    assert all(0.0 <= r["test"]["accuracy"] <= 1.0 and -1.0 <= r["leakage"]["mean"] <= 1.0 for r in results)
    assert all(r["relative_leakage"]["mean"] == pytest.approx(r["leakage"]["mean"] / r["input_ceiling"]["mean"])
               for r in results)
    assert [r["overrides"][-1] for r in results] == ["train.num_threads=2"] * 2 + ["lnl.lambda=0.5"] * 2
    assert all(r["selected"]["metric"] == "val_accuracy" for r in results)  # chosen on the random-colour split
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert sum(line.startswith("| baseline |") or line.startswith("| lnl |") for line in lines) == 4
    means = [line for line in lines if line.startswith("| **")]
    assert len(means) == 2 and all(" ± " in line for line in means)  # two seeds: an interval per method
    # A second call reuses the finished runs (nothing retrained) and adds the method asked for.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.pt")}
    bench.main([*common, "--methods", "lnl", "--seeds", "1", "--report-only"])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.pt")} == stamps
    assert [(r["method"], r["seed"]) for r in json.loads((tmp_path / "results.json").read_text())] == [("lnl", 1)]


def test_background_mnist_benchmark_without_mnist_is_one_line_and_exit_3(tmp_path, capsys):
    bench = _script("background_mnist")
    with pytest.raises(SystemExit) as exited:
        bench.main(["--data-root", str(tmp_path / "no-mnist"), "--out", str(tmp_path / "out")])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("Error: MNIST not found") and err.count("\n") == 1 and "Traceback" not in err


def test_report_only_trains_nothing_and_reports_the_finished_runs(reproduce, tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(reproduce, "train_run", lambda *a, **k: trained.append(a) or {})
    finished = tmp_path / "var0.020-seed0" / "baseline"
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text(json.dumps({"test": {"accuracy": 0.4}, "selected": {"epoch": 1}}))
    code = reproduce.main(["--preset", "colored-mnist-paper", "--methods", "baseline", "--color-vars", "0.020",
                           "--seeds", "0", "1", "--warmup-epochs", "1", "--out", str(tmp_path), "--report-only"])
    assert code == 0 and trained == []
    assert "not in the report (--report-only, not finished): baseline σ²=0.020 seed=1" in capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["seed"] for r in report["runs"]] == [0]


def _fake_utkface_run(folder: Path, opposite: float, balanced: float, leakage: float) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "test": {"accuracy": opposite}, "train_seconds": 120.0, "selected": {"epoch": 7, "value": 0.75},
        "train_images_per_second": 500.0}))
    cells = [{"label_name": gender, "bias_name": group, "count": 10, "correct": round(10 * (balanced + shift))}
             for gender, group, shift in (("female", "young", 0.1), ("female", "old", -0.1), ("male", "young", 0.0),
                                          ("male", "old", 0.0))]
    (folder / "balanced.json").write_text(json.dumps({"accuracy": balanced, "worst_group_accuracy": balanced - 0.1,
                                                      "cells": cells}))
    (folder / "probe_balanced.json").write_text(json.dumps({
        "leakage": {"mean": leakage}, "input_ceiling": {"mean": 0.5}, "relative_leakage": {"mean": leakage / 0.5}}))


def test_utkface_report_joins_finished_runs_with_intervals_and_skips_unfinished_ones(tmp_path, capsys):
    """Only runs with all three JSON files count; each cell is the mean and Student-t interval over seeds."""
    utkface = _script("utkface")
    for seed, opposite in enumerate((0.6, 0.7, 0.8)):
        _fake_utkface_run(tmp_path / f"eb1-lnl-seed{seed}", opposite, 0.8, 0.2)
    (tmp_path / "eb1-baseline-seed0").mkdir()  # trained nowhere: left out, not a zero
    utkface.main(["--out", str(tmp_path), "--directions", "eb1", "--methods", "baseline", "lnl", "--report-only"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["summaries"]) == ["eb1/lnl"]
    cell = report["summaries"]["eb1/lnl"]
    assert cell["opposite"]["n"] == 3 and cell["opposite"]["mean"] == pytest.approx(0.7)
    assert cell["opposite"]["half_width"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert cell["relative_leakage"]["mean"] == pytest.approx(0.4) and cell["train_minutes"]["mean"] == 2.0
    table = (tmp_path / "report.md").read_text()
    assert "| EB1 -> EB2 | lnl | 0.750 ± 0.000 (n=3) | 0.700 ± 0.248 (n=3) | 0.800 ± 0.000 (n=3)" in table
    assert "eb1-baseline" not in table
    assert cell["balanced_worst_group"]["mean"] == pytest.approx(0.7)


def test_utkface_age_bins_are_the_bias_and_the_worst_group_pools_them_by_age_group(tmp_path, monkeypatch):
    """--bias age_bin trains on the 12 bins; the worst group is still taken over gender x young/old."""
    utkface = _script("utkface")
    cells = [{"label_name": "female", "bias_name": "0-19", "count": 4, "correct": 4},
             {"label_name": "female", "bias_name": "25-29", "count": 4, "correct": 0},  # female/young: 4 of 8
             {"label_name": "female", "bias_name": "70+", "count": 2, "correct": 2},
             {"label_name": "male", "bias_name": "40-44", "count": 5, "correct": 3},
             {"label_name": "male", "bias_name": "20-24", "count": 1, "correct": 1},
             {"label_name": "male", "bias_name": "30-34", "count": 0, "correct": 0}]  # empty bins are no group
    assert utkface.worst_age_group_accuracy(cells) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        utkface.age_group_of("30-34")
    commands = []

    def fake_lnl(arguments, threads):
        commands.append(arguments)
        raise SystemExit("stop after the first command")

    monkeypatch.setattr(utkface, "lnl", fake_lnl)
    with pytest.raises(SystemExit):
        utkface.main(["--out", str(tmp_path), "--directions", "eb1", "--methods", "lnl", "--seeds", "0",
                      "--bias", "age_bin", "--set", "train.epochs=2", "--set-for", "lnl", "lnl.lambda=0.5"])
    (train,) = commands
    assert "data.columns.bias=age_bin" in train and train[-2:] == ["train.epochs=2", "lnl.lambda=0.5"]
    assert any(word.startswith("data.bias_classes=[0-19,20-24,") and word.endswith(",70+]") for word in train)


def test_utkface_variants_train_their_method_with_its_overrides_and_a_lower_rate_tests_on_the_balanced_split(
        tmp_path, monkeypatch):
    """group_balanced is the baseline with the balanced sampler; a --data-root built below rate 1 has no
    opposite split, so training tests on balanced_test.csv and the report's opposite column is empty."""
    utkface = _script("utkface")
    build = tmp_path / "build"
    build.mkdir()
    (build / "counts.json").write_text(json.dumps({"bias_rate": 0.95}))
    commands = []

    def fake_lnl(arguments, threads):
        commands.append(arguments)
        raise SystemExit("stop after the first command")

    monkeypatch.setattr(utkface, "lnl", fake_lnl)
    for method in ("group_balanced", "lnl_conditional"):
        with pytest.raises(SystemExit):
            utkface.main(["--out", str(tmp_path / "runs"), "--directions", "eb1", "--methods", method, "--seeds", "0",
                          "--data-root", str(build), "--set-for", method, "train.epochs=2"])
    group_balanced, conditional = commands
    assert "method=baseline" in group_balanced and "train.sampler=group_balanced" in group_balanced
    assert "method=lnl" in conditional and "lnl.conditional=true" in conditional
    for train in commands:
        assert f"data.root={build}" in train and "data.test=balanced_test.csv" in train
        assert train[-1] == "train.epochs=2"  # --set-for names the variant and comes last
    _fake_utkface_run(tmp_path / "runs" / "eb1-group_balanced-seed0", 0.7, 0.8, 0.2)
    utkface.main(["--out", str(tmp_path / "runs"), "--directions", "eb1", "--methods", "group_balanced",
                  "--seeds", "0", "--data-root", str(build), "--report-only"])
    report = json.loads((tmp_path / "runs" / "report.json").read_text())
    assert report["bias_rate"] == 0.95 and report["variants"]["group_balanced"][0] == "baseline"
    cell = report["summaries"]["eb1/group_balanced"]
    assert "opposite" not in cell and cell["balanced"]["mean"] == pytest.approx(0.8)
    with pytest.raises(SystemExit):  # a folder that is no build
        utkface.main(["--out", str(tmp_path / "runs"), "--methods", "erm", "--data-root", str(tmp_path / "none")])


def test_bias_rates_joins_the_reports_highest_rate_first_and_plots_the_worst_group(tmp_path):
    bias_rates = _script("bias_rates")
    utkface = _script("utkface")
    for rate, balanced in ((0.95, 0.8), (1.0, 0.6)):
        folder = tmp_path / f"r{rate}"
        build = tmp_path / f"build{rate}"
        build.mkdir()
        (build / "counts.json").write_text(json.dumps({"bias_rate": rate}))
        for seed in (0, 1):
            _fake_utkface_run(folder / f"eb1-group_dro-seed{seed}", 0.5, balanced + 0.01 * seed, 0.2)
        utkface.main(["--out", str(folder), "--directions", "eb1", "--methods", "group_dro", "--seeds", "0", "1",
                      "--data-root", str(build), "--report-only"])
    bias_rates.main(["--reports", str(tmp_path / "r0.95" / "report.json"), str(tmp_path / "r1.0" / "report.json"),
                     "--out", str(tmp_path / "joined")])
    rows = [line for line in (tmp_path / "joined.md").read_text().splitlines() if line.startswith("| 0") or
            line.startswith("| 1")]
    assert [row.split(" | ")[0:2] for row in rows] == [["| 1.0", "group_dro"], ["| 0.95", "group_dro"]]
    assert "0.805 ± 0.064 (n=2)" in rows[1]  # the report's own interval, not recomputed
    assert (tmp_path / "joined.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        bias_rates.main(["--reports", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")])


# ------------------------------------------------------------------ throughput.py against the official code
FAKE_OFFICIAL = {
    "main.py": "import trainer\n",
    "option.py": '''import argparse
parser = argparse.ArgumentParser()
parser.add_argument('-e', '--exp_name', required=True)
parser.add_argument('--batch_size', default=128, type=int)
parser.add_argument('--lr', default=0.01, type=float)
parser.add_argument('--color_var', default=0.03, type=float)
parser.add_argument('--data_dir', default='./')
parser.add_argument('--save_dir', default='./')
parser.add_argument('--random_seed', type=int)
parser.add_argument('--num_workers', default=4, type=int)
parser.add_argument('--cuda', action='store_true')
''',
    "utils.py": '''import logging, os
def logger_setting(exp_name, save_dir, debug):
    logger = logging.getLogger(exp_name)
    logger.addHandler(logging.FileHandler(os.path.join(save_dir, exp_name, 'train.log')))
    return logger
''',
    "models.py": '''import torch.nn as nn
class convnet(nn.Module):
    def __init__(self, num_classes=10):
        super(convnet, self).__init__()
        self.fc = nn.Linear(3 * 28 * 28, num_classes)
    def forward(self, x):
        return x[:, :, ::2, ::2], self.fc(x.flatten(1))
''',
    "data_loader.py": '''import os
import numpy as np
import torch
from torch.utils.data import Dataset
class WholeDataLoader(Dataset):
    def __init__(self, option):
        data_dic = np.load(os.path.join(option.data_dir, 'mnist_10color_jitter_var_%.03f.npy' % option.color_var), encoding='latin1').item()
        assert sorted(data_dic) == ['test_image', 'test_label', 'train_image', 'train_label']
        self.image, self.label = data_dic['train_image'], data_dic['train_label']
        assert self.image.dtype == np.uint8 and self.image.shape[1:] == (28, 28, 3), self.image.shape
        assert data_dic['test_image'].shape[1:] == (28, 28, 3) and len(self.label) == len(self.image)
    def __getitem__(self, index):
        image = torch.from_numpy(self.image[index]).permute(2, 0, 1).float() / 255
        return image, torch.zeros(3, 14, 14, dtype=torch.long), self.label[index].astype(np.long)
    def __len__(self):
        return self.image.shape[0]
''',
    "trainer.py": '''import os
import torch
import models
from utils import logger_setting
class Trainer(object):
    def __init__(self, option):
        self.option = option
        self.net = models.convnet()
        self.optim = torch.optim.SGD(self.net.parameters(), lr=option.lr)
        self.logger = logger_setting(option.exp_name, option.save_dir, False)
    def _initialization(self):
        pass
    def _mode_setting(self, is_train=True):
        self.net.train(is_train)
    def _run(self, data_loader, name, passes):
        for i, (images, color_labels, labels) in enumerate(data_loader):
            for _ in range(passes):
                self.optim.zero_grad()
                torch.nn.functional.cross_entropy(self.net(images)[1], labels).backward()
                self.optim.step()
            with open(os.environ['FAKE_OFFICIAL_LOG'], 'a') as log:
                log.write('%s %d %d %d\\n' % (name, i, len(data_loader), len(labels)))
    def _train_step(self, data_loader, step):
        self._run(data_loader, 'lnl', 2)
    def _train_step_baseline(self, data_loader, step):
        self._run(data_loader, 'baseline', 1)
''',
}


@pytest.fixture(params=[False, True], ids=["fp32-only-cpu", "native-bf16-cpu"])
def throughput(monkeypatch, request):
    """The script on tiny data, once as on a CPU without native bf16 and once as on one with it (faked either
    way), so the tests hold on every machine: bf16 rows are timed exactly where bf16 is native."""
    module = _script("throughput")
    from lnl_cli import load_config

    from tests.helpers import tiny_dataset

    monkeypatch.setattr(module, "load_benchmark_data",
                        lambda overrides: (load_config("colored-mnist", overrides), tiny_dataset(48)))
    monkeypatch.setattr(module, "native_bf16", lambda device: request.param)
    module.faked_precisions = ["fp32", "bf16"] if request.param else ["fp32"]
    return module


def engine_rows(throughput, *rows: str, suffixes=("",)) -> set[str]:
    """The engine row names the script times for `rows` on the faked machine."""
    return {f"engine_{row}_{precision}{suffix}" for row in rows for precision in throughput.faked_precisions
            for suffix in suffixes}


def test_throughput_patches_and_times_the_official_code_on_the_projects_data(throughput, tmp_path, monkeypatch):
    official = tmp_path / "official"
    official.mkdir()
    for name, text in FAKE_OFFICIAL.items():
        (official / name).write_text(text)
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_OFFICIAL_LOG", str(log))
    results = throughput.main(["--official", str(official), "--steps", "2", "--warmup", "1", "--batch-size", "16",
                               "--official-workers", "0", "--threads", str(torch_threads()),
                               "--rows", "baseline", "lnl_alternating", "--json"])
    calls = [line.split() for line in log.read_text().splitlines()]
    # one call per method, warm-up plus timed batches, full batches of the written training split
    assert calls == [["baseline", str(i), "3", "16"] for i in range(3)] + [["lnl", str(i), "3", "16"] for i in range(3)]
    assert "allow_pickle=True" not in (official / "data_loader.py").read_text()  # the folder is left alone
    assert any("allow_pickle=True" in patch for patch in results["patches"])
    engine = engine_rows(throughput, "baseline", "lnl_alternating")
    assert set(results["rows"]) == {"official_baseline", "official_lnl"} | engine
    assert all(row["images_per_s"] > 0 and row["images_per_cpu_s"] > 0 for row in results["rows"].values())
    assert all(results["rows"][row]["first_step_s"] > 0 for row in engine)
    assert set(results["ratios"]) == set(results["ratios_cpu"]) == {f"{row}/official" for row in engine}
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["torch_threads"] >= 1
    assert machine["bf16_native"] is ("bf16" in throughput.faked_precisions)
    assert results["settings"]["engine_precisions"] == throughput.faked_precisions
    assert results["settings"]["official_workers"] == 0 and "official_*" not in results["skipped"]
    assert ("engine_*_bf16" in results["skipped"]) is ("bf16" not in throughput.faked_precisions)


def test_throughput_without_official_skips_its_rows_and_says_why(throughput, capsys):
    results = throughput.main(["--steps", "1", "--warmup", "1", "--batch-size", "16", "--recreation", "no",
                               "--rows", "lnl_single_pass"])
    assert set(results["rows"]) == engine_rows(throughput, "lnl_single_pass") and results["ratios"] == {}
    assert "no --official DIR" in results["skipped"]["official_*"]
    out = capsys.readouterr()
    assert "skipped official_*: no --official DIR" in out.err and "skipped official_*" in out.out


def test_throughput_compile_times_every_engine_row_again_compiled(throughput, monkeypatch):
    """--compile adds a train.compile=true twin of each engine row, with its own ratio; the engine itself
    is faked here (compiling takes minutes on a CPU), so this checks the plan, not torch.compile."""
    seen = []

    def fake_rate(config, dataset, device, warmup, steps):
        seen.append((config.method, config.train.compile))
        return {"images_per_s": 200.0 if config.train.compile else 100.0, "images_per_cpu_s": 50.0,
                "first_step_s": 9.0 if config.train.compile else 0.5}

    monkeypatch.setattr(throughput, "engine_rate", fake_rate)
    results = throughput.main(["--steps", "1", "--warmup", "1", "--batch-size", "16", "--recreation", "yes",
                               "--official-workers", "0", "--rows", "baseline", "--compile"])
    assert seen == [("baseline", False), ("baseline", True)] * len(throughput.faked_precisions)
    assert set(results["rows"]) - {"recreation_baseline"} == engine_rows(throughput, "baseline",
                                                                        suffixes=("", "_compiled"))
    ratios = results["ratios"]
    for precision in throughput.faked_precisions:
        compiled = f"engine_baseline_{precision}_compiled"
        assert results["rows"][compiled]["first_step_s"] == 9.0 and "torch.compile" in results["rows"][compiled]["what"]
        assert abs(ratios[f"{compiled}/recreation"] - 2 * ratios[f"engine_baseline_{precision}/recreation"]) <= 0.02


def torch_threads() -> int:
    import torch

    return min(2, torch.get_num_threads())


@pytest.mark.mnist
@pytest.mark.slow
def test_packed_sweep_times_the_same_points_at_each_jobs_and_reads_the_run_folders_sweep_json_lists(
        mnist_root, tmp_path, capsys):
    """Two tiny sweeps on the CPU (--jobs 1 and 2): the JSON's structure and its definitions, never its timings."""
    bench = _script("packed_sweep")
    out = tmp_path / "packed"
    code = bench.main(["--preset", "smoke", "--points", "2", "--jobs", "2", "--epochs", "2", "--device", "cpu",
                       "--threads", "1", "--out", str(out), "--data-root", str(mnist_root), "--json", "--set",
                       "data.train_size=256", "data.test_size=128", "data.val_size=64", "train.batch_size=64"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(captured.out)
    assert results["settings"]["jobs"] == [1, 2] and results["settings"]["pretrain_epochs"] == 1
    assert results["machine"]["device_name"] and results["machine"]["cores"] >= 1 and results["machine"]["torch"]
    assert "error" not in results
    assert [row["jobs"] for row in results["sweeps"]] == [1, 2]
    for row in results["sweeps"]:
        folder = out / f"jobs-{row['jobs']}"
        listed = json.loads((folder / "sweep.json").read_text())
        assert listed["jobs"] == row["jobs"] and listed["grid"] == {"seed": ["0", "1"]}
        assert row["exit_code"] == 0 and row["finished_runs"] == 2
        assert sorted(run["run_dir"] for run in row["runs"]) == sorted(p["run_dir"] for p in listed["points"])
        assert all(run["epochs"] == 2 and run["train_size"] == 256 for run in row["runs"])
        assert row["images"] == 2 * 2 * 256 and row["wall_s"] > 0
        assert row["aggregate_images_per_s"] > 0
        assert math.isclose(row["aggregate_images_per_s"], row["images"] / row["wall_s"], abs_tol=0.01)
        rates = [run["train_images_per_second"] for run in row["runs"]]
        assert math.isclose(row["mean_run_images_per_s"], sum(rates) / len(rates), abs_tol=0.01)
    first, second = results["sweeps"]
    assert first["speedup"] == 1.0
    assert math.isclose(second["speedup"], second["aggregate_images_per_s"] / first["aggregate_images_per_s"],
                        abs_tol=0.01)
    assert "[jobs 2]" in captured.err  # the sweeps' own messages, prefixed, on stderr


def test_packed_sweep_refuses_a_used_folder_and_warns_of_too_many_threads(tmp_path, capsys):
    bench = _script("packed_sweep")
    (tmp_path / "jobs-4").mkdir()
    (tmp_path / "jobs-4" / "sweep.json").write_text("{}")
    assert bench.main(["--out", str(tmp_path), "--jobs", "4", "--device", "cpu"]) == 2
    assert "jobs-4 already holds files" in capsys.readouterr().err
    cores = os.cpu_count() or 1
    assert bench.oversubscription("cpu", [1, cores + 1], 1) and not bench.oversubscription("cpu", [1, cores], 1)
    assert bench.oversubscription("cpu", [2], None) and not bench.oversubscription("cuda", [8], 4)
    assert bench.jobs_list([8, 4, 4]) == [1, 4, 8]
    assert bench.schedule(3) == ["train.epochs=3", "train.pretrain_epochs=1"]


@pytest.mark.slow
def test_packed_sweep_stops_at_a_failed_sweep_with_its_stderr_and_exit_1(tmp_path, capsys):
    bench = _script("packed_sweep")
    assert bench.main(["--preset", "smoke", "--points", "2", "--jobs", "2", "--device", "cpu", "--out", str(tmp_path),
                       "--json", "--set", "train.no_such_key=1"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [row["jobs"] for row in results["sweeps"]] == [1]  # --jobs 2 never started
    assert results["error"]["jobs"] == 1 and results["error"]["exit_code"] == 2
    assert any("train.no_such_key" in line for line in results["error"]["stderr_tail"])
    assert "lnl sweep --jobs 1 failed (exit 2)" in captured.err and "train.no_such_key" in captured.err
