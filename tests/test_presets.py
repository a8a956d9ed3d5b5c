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
