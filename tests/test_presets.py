"""Presets: finding them by name, reading their files, and every shipped preset."""

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.preset_files import builtin_presets, preset_description
from lnl_cli.errors import ConfigError


def test_unknown_preset_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean 'colored-mnist'"):
        load_config("colored-mnsit")


@pytest.mark.parametrize("content, match", [("", "empty"), ("- a\n- b\n", "mapping"), ("a: [1,\n", "not valid YAML")])
def test_broken_preset_files_are_config_errors(tmp_path, content, match):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


@pytest.mark.parametrize("name", list(builtin_presets()))
def test_every_shipped_preset_validates_and_says_what_it_is_for(name):
    path = builtin_presets()[name]
    assert preset_description(path), f"{name} needs a header comment"
    assert "lnl train" in path.read_text(), f"{name} header should say how to run it"
    config = load_config(name)
    assert config.name == name


@pytest.mark.parametrize("name", list(builtin_presets()))
def test_every_shipped_preset_builds_its_networks(name):
    config = load_config(name)
    algorithm = build_algorithm(config, TaskSpec(10, 10, config.data.color_bins), load_pretrained=False).eval()
    assert algorithm.predict(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


# ------------------------------------------------------------------ lookup does not depend on the working directory
@pytest.mark.parametrize("shadow", ["folder", "file"])
def test_a_folder_or_file_in_the_working_directory_does_not_shadow_a_builtin(tmp_path, monkeypatch, shadow):
    if shadow == "folder":
        (tmp_path / "colored-mnist").mkdir()
    else:
        (tmp_path / "colored-mnist").write_text("seed: 5\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("colored-mnist")
    assert config.name == "colored-mnist" and config.seed == 0 and len(config.data.class_colors) == 10


def test_an_argument_is_a_path_only_with_a_separator_or_a_yaml_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("extends: colored-mnist\nseed: 5\n")
    (tmp_path / "mine.yml").write_text("extends: colored-mnist\nseed: 6\n")
    with pytest.raises(ConfigError, match=r"unknown preset 'mine'.*write ./mine"):
        load_config("mine")
    assert load_config("./mine").seed == 5
    assert load_config("mine.yml").seed == 6
    with pytest.raises(ConfigError, match="preset file not found"):
        load_config("missing.yaml")


def test_extends_is_looked_up_beside_the_preset_never_in_the_working_directory(tmp_path, monkeypatch):
    presets, elsewhere = tmp_path / "presets", tmp_path / "cwd"
    presets.mkdir()
    elsewhere.mkdir()
    (elsewhere / "base.yaml").write_text("extends: colored-mnist\nseed: 9\n")
    monkeypatch.chdir(elsewhere)
    (presets / "by-path.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(ConfigError) as raised:
        load_config(presets / "by-path.yaml")
    assert f"extends 'base.yaml': preset file not found: {presets / 'base.yaml'}" in str(raised.value)
    (presets / "by-name.yaml").write_text("extends: base\n")
    with pytest.raises(ConfigError) as raised:
        load_config(presets / "by-name.yaml")
    assert f"extends unknown preset 'base': neither {presets / 'base.yaml'} nor a built-in preset" in str(raised.value)
    # a bare name is first <folder>/<name>.yaml, then a built-in preset
    (presets / "base.yaml").write_text("extends: colored-mnist\nseed: 3\n")
    assert load_config(presets / "by-name.yaml").seed == 3
    assert load_config(presets / "by-path.yaml").seed == 3
    (presets / "colored-mnist.yaml").write_text("extends: colored-mnist-fast\nseed: 4\n")
    (presets / "local.yaml").write_text("extends: colored-mnist\n")
    assert load_config(presets / "local.yaml").seed == 4
    (presets / "builtin.yaml").write_text("extends: colored-mnist-paper\n")
    assert load_config(presets / "builtin.yaml").train.epochs == load_config("colored-mnist-paper").train.epochs
