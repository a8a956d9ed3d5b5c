import pytest
import torch

from lnl_cli.probe import ProbeSettings, probe_features, stratified_halves

SETTINGS = ProbeSettings(seeds=2, steps=300)


def _strata(bias, labels, classes):
    return labels * classes + bias


def test_halves_are_disjoint_cover_everything_and_are_stratified():
    generator = torch.Generator().manual_seed(0)
    strata = torch.randint(0, 7, (1001,), generator=generator)
    first, second = stratified_halves(strata, seed=3)
    assert set(first.tolist()).isdisjoint(second.tolist())
    assert sorted(first.tolist() + second.tolist()) == list(range(1001))
    for s in range(7):
        a, b = int((strata[first] == s).sum()), int((strata[second] == s).sum())
        assert abs(a - b) <= 1
    again = stratified_halves(strata, seed=3)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    other = stratified_halves(strata, seed=4)
    assert not torch.equal(first, other[0])


def test_a_bias_that_is_a_plain_function_of_the_features_leaks_fully():
    generator = torch.Generator().manual_seed(0)
    n, classes = 2000, 5
    bias = torch.randint(0, classes, (n,), generator=generator)
    features = torch.randn(n, 16, generator=generator) * 0.1
    features[:, :classes] += 3 * torch.nn.functional.one_hot(bias, classes)
    labels = torch.randint(0, 3, (n,), generator=generator)
    result = probe_features(features, bias, _strata(bias, labels, classes), classes, SETTINGS)
    assert result["leakage"]["mean"] > 0.95
    assert result["balanced_accuracy"]["mean"] > 0.95
    assert result["mi_lower_bound_bits"]["mean"] > 2.0  # log2(5) = 2.32 bits at most
    assert result["train_samples"] + result["heldout_samples"] == n


def test_features_independent_of_the_bias_leak_nothing_beyond_noise():
    generator = torch.Generator().manual_seed(1)
    n, classes = 2000, 5
    bias = torch.randint(0, classes, (n,), generator=generator)
    features = torch.randn(n, 16, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    result = probe_features(features, bias, _strata(bias, labels, classes), classes, SETTINGS)
    assert abs(result["leakage"]["mean"]) < 0.06
    assert result["mi_lower_bound_bits"]["mean"] < 0.05
    assert result["chance_accuracy"] == pytest.approx(0.2, abs=0.05)


def test_bad_settings_are_config_errors():
    from lnl_cli.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        ProbeSettings(kind="svm", layer="nope", seeds=0).check()
    assert len(info.value.problems) == 3


def test_the_mi_bound_survives_an_overconfident_probe():
    """A probe that fits noise on many dimensions is over-confident; calibration keeps the bound useful."""
    generator = torch.Generator().manual_seed(2)
    n, classes = 1200, 4
    bias = torch.randint(0, classes, (n,), generator=generator)
    features = torch.randn(n, 50, generator=generator)
    features[:, 0] += 2.0 * bias.float()  # partial, noisy signal among many useless dimensions
    result = probe_features(features, bias, bias, classes, ProbeSettings(seeds=1, steps=400, lr=1e-2))
    assert 0.2 < result["leakage"]["mean"] < 0.95
    assert result["mi_lower_bound_bits"]["mean"] > 0.1


@pytest.mark.parametrize("split_seed", [2**64 + 1, 99999999999999999999, -1])
def test_a_split_seed_out_of_range_is_a_config_error_exit_2(tmp_path, split_seed):
    from typer.testing import CliRunner

    from lnl_cli.cli import app
    from lnl_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="--split-seed must be in 0..9223372036854775807"):
        ProbeSettings(split_seed=split_seed).check()
    ProbeSettings(split_seed=2**63 - 1).check()
    result = CliRunner().invoke(app, ["probe-bias", "--checkpoint", str(tmp_path / "none.pt"),
                                      "--split-seed", str(split_seed)])
    assert result.exit_code == 2 and "Error: --split-seed must be in" in result.output, result.output


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, -0.5, 2.0])
def test_the_gate_threshold_is_a_finite_number_from_0_to_1(value):
    from lnl_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-leakage must be a number from 0 to 1"):
        ProbeSettings().check(value)
    for good in (None, 0, 0.0, 0.3, 1.0):
        ProbeSettings().check(good)
