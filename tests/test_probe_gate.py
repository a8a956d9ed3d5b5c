"""The calibrated leakage gate: bootstrap intervals, the input ceiling, relative leakage, the floor after
averaging, and the thresholds' checks (issue 13, item 6)."""

from __future__ import annotations

import statistics

import pytest
import torch
from typer.testing import CliRunner

from lnl_cli.errors import ConfigError
from lnl_cli.probe import (BOOTSTRAP_RESAMPLES, GATE_BOUND, ProbeSettings, balanced_leakage, bootstrap_leakage, gate,
                           probe_features, source_split)
from lnl_cli.probe.estimates import _summary

CLASSES = 5
SAMPLES = 2000
FAST = ProbeSettings(seeds=2, steps=200)


def _planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bias values, labels independent of them, and the (label, bias) strata of the stratified split."""
    generator = torch.Generator().manual_seed(seed)
    bias = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    labels = torch.randint(0, 3, (SAMPLES,), generator=generator)
    return bias, labels, labels * CLASSES + bias


def _one_hot(bias: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(bias, CLASSES).float()


def test_zero_leakage_the_upper_bound_covers_0_and_a_threshold_a_bit_above_passes():
    bias, _, strata = _planted()
    noise = torch.randn(SAMPLES, 16, generator=torch.Generator().manual_seed(7))  # independent of the bias
    result = probe_features(noise, bias, strata, CLASSES, FAST, ceiling=_one_hot(bias))
    leakage = result["leakage"]
    assert leakage["ci_low"] == 0.0 <= leakage["ci_high"]  # the interval holds the true 0
    assert leakage["ci_high"] < 0.1  # and does not claim leakage far above it
    assert result["relative_leakage"]["ci_high"] < 0.1  # the input reveals everything: relative = absolute
    verdict = gate(result, max_leakage=0.1, max_relative_leakage=0.1)
    assert verdict["passed"] is True and verdict["bound"] == GATE_BOUND == "upper_95"
    assert verdict["leakage_bound"] == leakage["ci_high"]


def test_full_leakage_fails_a_low_threshold_on_both_gates():
    bias, _, strata = _planted()
    features = _one_hot(bias)
    result = probe_features(features, bias, strata, CLASSES, FAST, ceiling=features.clone())
    assert result["leakage"]["ci_low"] > 0.95 and result["input_ceiling"]["ci_low"] > 0.95
    assert gate(result, max_leakage=0.1)["passed"] is False
    assert gate(result, max_leakage=None, max_relative_leakage=0.5)["passed"] is False
    assert gate(result, max_leakage=None)["passed"] is None  # no threshold, no verdict


def test_the_gate_compares_the_upper_bound_not_the_mean():
    result = {"leakage": {"mean": 0.20, "ci_high": 0.35}, "relative_leakage": {"mean": 0.4, "ci_high": 0.6}}
    assert gate(result, max_leakage=0.30)["passed"] is False  # the mean is within, the bound is not
    assert gate(result, max_leakage=0.35)["passed"] is True
    assert gate(result, max_leakage=0.35, max_relative_leakage=0.5)["passed"] is False
    assert gate(result, max_leakage=0.35, max_relative_leakage=0.6)["passed"] is True
    unbounded = {"leakage": {"mean": 0.0, "ci_high": 0.0}, "relative_leakage": {"mean": None, "ci_high": None}}
    assert gate(unbounded, max_leakage=None, max_relative_leakage=1.0)["passed"] is False  # no ceiling, no pass


def test_the_ratio_is_bootstrapped_jointly_with_the_same_resamples():
    """Identical layer and input probes give a ratio of exactly 1 on every resample; resampling the two
    independently would spread it."""
    bias, _, strata = _planted(seed=3)
    features = torch.randn(SAMPLES, 8, generator=torch.Generator().manual_seed(3))
    features[:, 0] += 0.8 * bias.float()  # partial, noisy signal: its bootstrap has a real spread
    result = probe_features(features, bias, strata, CLASSES, FAST, ceiling=features.clone())
    assert result["leakage"]["ci_high"] - result["leakage"]["ci_low"] > 0.02
    assert result["relative_leakage"] == {"mean": pytest.approx(1.0), "ci_low": 1.0, "ci_high": 1.0}


def test_the_floor_is_applied_after_averaging():
    assert _summary([-0.03, 0.01], floor=True)["mean"] == 0.0  # flooring each seed first would give 0.005
    assert _summary([-0.01, 0.03], floor=True)["mean"] == pytest.approx(0.01)
    assert _summary([-0.03, 0.01])["mean"] == pytest.approx(-0.01)


def test_a_planted_case_whose_seeds_straddle_0_reports_the_floored_average():
    bias, _, strata = _planted(seed=5)
    noise = torch.randn(SAMPLES, 16, generator=torch.Generator().manual_seed(5))
    result = probe_features(noise, bias, strata, CLASSES, ProbeSettings(seeds=4, steps=200, split_seeds=2))
    per_seed = [run["leakage"] for run in result["per_seed"]]
    assert min(per_seed) < 0 < max(per_seed), per_seed  # the planted precondition: noise on both sides of 0
    assert result["leakage"]["unfloored_mean"] == pytest.approx(statistics.fmean(per_seed))
    assert result["leakage"]["mean"] == max(0.0, statistics.fmean(per_seed))
    assert result["leakage"]["mean"] < statistics.fmean(max(0.0, v) for v in per_seed)  # what seed-wise flooring gave
    assert result["bootstrap"]["pooled_runs"] == 8 and {r["split_seed"] for r in result["per_seed"]} == {0, 1}


def test_the_vectorised_score_equals_a_per_class_loop_also_with_absent_classes():
    generator = torch.Generator().manual_seed(11)
    targets = torch.randint(0, 4, (3, 40), generator=generator)
    targets[1][targets[1] == 2] = 3  # class 2 absent in row 1
    targets[2] = 1  # a single class in row 2: nothing to tell apart, leakage 0
    correct = torch.rand(3, 40, generator=generator) > 0.4
    balanced, leakage = balanced_leakage(correct, targets, 4)
    for row in range(3):
        present = targets[row].unique().tolist()
        recall = [correct[row][targets[row] == k].double().mean().item() for k in present]
        expected_balanced = statistics.fmean(recall)
        k = len(present)
        expected = (expected_balanced - 1 / k) / (1 - 1 / k) if k > 1 else 0.0
        assert balanced[row].item() == pytest.approx(expected_balanced)
        assert leakage[row].item() == pytest.approx(expected)


def test_the_bootstrap_is_seeded_and_shared_by_every_set():
    generator = torch.Generator().manual_seed(2)
    targets = torch.randint(0, 3, (300,), generator=generator)
    first, second = torch.rand(2, 300, generator=generator) > 0.5, torch.rand(1, 300, generator=generator) > 0.5
    once = bootstrap_leakage([first, second], targets, 3, seed=9)
    again = bootstrap_leakage([first, second], targets, 3, seed=9)
    assert once[0].shape == (2, BOOTSTRAP_RESAMPLES) and once[1].shape == (1, BOOTSTRAP_RESAMPLES)
    assert torch.equal(once[0], again[0]) and torch.equal(once[1], again[1])
    alone = bootstrap_leakage([second], targets, 3, seed=9)[0]
    assert torch.equal(alone, once[1])  # the same resamples, whatever else is bootstrapped with it


@pytest.mark.parametrize("flag", ["--max-leakage", "--max-relative-leakage"])
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_a_threshold_that_is_not_a_finite_number_from_0_to_1_is_a_one_line_usage_error(tmp_path, flag, value):
    from lnl_cli.cli import app

    result = CliRunner().invoke(app, ["probe-bias", "--checkpoint", str(tmp_path / "missing.pt"), flag, value])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {flag} must be a number from 0 to 1"), lines


def test_both_thresholds_are_checked_together_and_bools_are_no_numbers():
    with pytest.raises(ConfigError) as info:
        ProbeSettings().check(float("nan"), 1.5)
    assert len(info.value.problems) == 2
    with pytest.raises(ConfigError, match="--max-relative-leakage"):
        ProbeSettings().check(None, True)
    ProbeSettings().check(0, 1.0)


def test_the_val_source_needs_a_validation_split():
    from dataclasses import replace

    from helpers import tiny_dataset

    dataset = tiny_dataset(n=16, with_val=False)
    assert dataset.val is None
    with pytest.raises(ConfigError, match="this dataset has no validation split"):
        source_split(dataset, "val")
    with_val = replace(dataset, val=dataset.test.subset(torch.arange(8)))
    assert source_split(with_val, "val") is with_val.val
    assert source_split(dataset, "test") is dataset.test and source_split(dataset, "train") is dataset.train
    ProbeSettings(source="val").check()
    with pytest.raises(ConfigError, match="--source must be one of test, train, val"):
        ProbeSettings(source="holdout").check()


def test_the_input_is_pooled_to_at_most_input_max_side_pixels_a_side():
    from lnl_cli.data.base import BiasedSplit
    from lnl_cli.probe import INPUT_MAX_SIDE, extract_features

    from helpers import tiny_dataset

    class Frozen:
        def eval(self):
            return self

    dataset = tiny_dataset(n=4)
    assert extract_features(Frozen(), dataset.test, dataset, "input").shape == (4, 3 * 28 * 28)  # kept as it is
    images = torch.arange(2 * 3 * 96 * 20, dtype=torch.float32).view(2, 3, 96, 20).remainder(256).to(torch.uint8)
    large = BiasedSplit(images, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    pooled = extract_features(Frozen(), large, dataset, "input")
    assert pooled.shape == (2, 3 * INPUT_MAX_SIDE * 20)  # only the side above the limit shrinks
    mean = torch.tensor(dataset.mean)[:, None, None]
    std = torch.tensor(dataset.std)[:, None, None]
    normalised = (images.float() / 255 - mean) / std
    expected = torch.nn.functional.adaptive_avg_pool2d(normalised, [INPUT_MAX_SIDE, 20]).flatten(1)
    assert torch.allclose(pooled, expected, atol=1e-5)


def test_the_ceiling_is_the_input_view_that_leaks_most():
    """A colour bias is global: a linear probe on pixels misses it, the channel statistics read it. The
    ceiling takes the better view, so relative leakage is not inflated by a weak ceiling."""
    bias, _, strata = _planted()
    noise = torch.randn(SAMPLES, 16, generator=torch.Generator().manual_seed(3))
    half = _one_hot(bias) * 0.5 + torch.randn(SAMPLES, CLASSES, generator=torch.Generator().manual_seed(4))
    result = probe_features(half, bias, strata, CLASSES, FAST,
                            ceiling={"pixels": noise, "channel_stats": _one_hot(bias)})
    ceiling = result["input_ceiling"]
    assert ceiling["view"] == "channel_stats" and ceiling["views"]["pixels"] < 0.1 < ceiling["mean"]
    assert ceiling["mean"] > 0.95 and 0 < result["relative_leakage"]["mean"] < 1


def test_input_views_are_the_pooled_pixels_and_four_statistics_per_channel():
    from lnl_cli.probe import INPUT_MAX_SIDE, input_views

    images = torch.rand(2, 3, 64, 48)
    views = input_views(images)
    assert views["pixels"].shape == (2, 3 * INPUT_MAX_SIDE * INPUT_MAX_SIDE)
    assert views["channel_stats"].shape == (2, 12)
    assert torch.allclose(views["channel_stats"][:, 3:6], images.flatten(2).amax(2))


def test_label_bias_dependence_is_measured_and_flags_an_extreme_bias_split():
    from lnl_cli.probe import DEPENDENCE_WARN_CRAMERS_V, label_bias_dependence

    bias, labels, _ = _planted()
    independent = label_bias_dependence(labels, bias, 3, CLASSES)
    assert independent["cramers_v"] < 0.1 and independent["label_only_leakage"] < 0.1
    assert independent["warned"] is False
    decided = label_bias_dependence(bias % 3, bias, 3, CLASSES)  # the label is a function of the bias
    assert decided["cramers_v"] > DEPENDENCE_WARN_CRAMERS_V and decided["warned"] is True
    assert decided["label_only_leakage"] > 0.3
    identical = label_bias_dependence(bias, bias, CLASSES, CLASSES)
    assert identical["cramers_v"] == pytest.approx(1.0) and identical["label_only_leakage"] == pytest.approx(1.0)
