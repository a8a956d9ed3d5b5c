from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnl_cli import load_config
from lnl_cli.config import SPECS, Config, dump_yaml, from_dict, parse_override, to_dict
from lnl_cli.errors import MAX_MESSAGE, ConfigError

PUBLIC_KEYS = ["method", "seed", "device", "data.root", "data.color_var", "data.train_size", "data.test_size",
               "train.epochs", "train.pretrain_epochs", "train.batch_size", "train.lr", "lnl.lambda",
               "lnl.grl_scale"]


def test_every_public_key_can_be_overridden():
    values = {"method": "baseline", "seed": 3, "device": "cpu", "data.root": "/x", "data.color_var": 0.03,
              "data.train_size": 100, "data.test_size": 50, "train.epochs": 2, "train.pretrain_epochs": 1,
              "train.batch_size": 64, "train.lr": 0.02, "lnl.lambda": 0.1, "lnl.grl_scale": 0.5}
    assert set(values) == set(PUBLIC_KEYS)
    config = load_config("colored-mnist", [f"{k}={v}" for k, v in values.items()])
    flat = {}
    for section, inner in to_dict(config).items():
        if isinstance(inner, dict):
            flat.update({f"{section}.{k}": v for k, v in inner.items()})
        else:
            flat[section] = inner
    for key, value in values.items():
        assert flat[key] == value, key


def test_layers_merge_defaults_then_preset_then_overrides(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("extends: colored-mnist\ntrain:\n  lr: 0.5\n  epochs: 7\n")
    config = load_config(preset, ["train.lr=0.25"])
    assert config.train.lr == 0.25          # override beats preset
    assert config.train.epochs == 7         # preset beats default
    assert config.train.batch_size == Config().train.batch_size  # default survives
    assert config.data.class_colors == load_config("colored-mnist").data.class_colors  # from the base preset
    assert config.name == "mine"


def test_extends_loops_and_bad_parents_are_config_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: no-such-preset\n")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(tmp_path / "c.yaml")


def test_all_problems_are_reported_at_once_with_did_you_mean():
    with pytest.raises(ConfigError) as info:
        load_config("colored-mnist", ["trian.lr=0.1", "train.batch_size=0", "method=magic", "lnl.lambda=abc"])
    message = str(info.value)
    assert "4 config problems" in message
    assert "did you mean 'train.lr'" in message
    assert "train.batch_size" in message and ">= 1" in message
    assert "method" in message and "magic" in message
    assert "lnl.lambda" in message


@pytest.mark.parametrize("text, expected", [("a=1", ("a", 1)), ("a=0.001", ("a", 0.001)), ("a=true", ("a", True)),
                                            ("a=null", ("a", None)), ("a=x=y", ("a", "x=y")),
                                            ("a=[1, 2]", ("a", [1, 2]))])
def test_override_values_are_yaml_scalars(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("bad", ["novalue", "=3"])
def test_malformed_overrides_are_config_errors(bad):
    with pytest.raises(ConfigError, match="key=value"):
        load_config("colored-mnist", [bad])


def test_exponent_floats_without_a_dot_are_numbers():
    assert load_config("colored-mnist", ["train.lr=1e-3"]).train.lr == 1e-3


def test_wrong_types_are_rejected_not_coerced():
    for bad in ["train.epochs=1.5", "train.epochs=true", "data.download=yes please", "train.lr=nan",
                "data.class_colors=[[1,2]]"]:
        with pytest.raises(ConfigError):
            load_config("colored-mnist", [bad])


def test_relative_data_root_in_a_preset_is_relative_to_the_preset(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "p.yaml"
    path.write_text("extends: colored-mnist\ndata:\n  root: ../data\n")
    assert load_config(path).data.root == str((tmp_path / "data").resolve())


def test_config_round_trips_through_dict_and_yaml():
    config = load_config("colored-mnist", ["lnl.lambda=0.2"])
    assert from_dict(to_dict(config)) == config
    assert from_dict(yaml.safe_load(dump_yaml(config))) == config
    assert to_dict(config)["lnl"]["lambda"] == 0.2


def test_base_config_is_overlaid():
    base = load_config("colored-mnist", ["train.lr=0.3", "seed=5"])
    config = load_config(None, ["seed=6"], base=base)
    assert config.train.lr == 0.3 and config.seed == 6


def test_every_config_key_is_documented_in_docs_config_md():
    readme = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    undocumented = [key for key in SPECS if f"`{key}`" not in readme]
    assert not undocumented, f"docs/config.md lacks {undocumented}"


def test_legacy_data_name_key_still_loads():
    stored = to_dict(load_config("colored-mnist"))  # as a checkpoint from before data.type was named so
    stored["data"]["name"] = stored["data"].pop("type")
    assert from_dict(stored).data.type == "colored_mnist"


def test_model_config_errors_are_collected():
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["model.feature_layer=layer5", "model.bias_head=color_pixels", "data.type=manifest"])
    message = str(raised.value)
    assert "model.feature_layer: paper_convnet has conv2" in message
    assert "color_pixels needs data.type=colored_mnist" in message
    assert "data.train: a manifest dataset needs a CSV file name" in message


# ------------------------------------------------------------------ run names
@pytest.mark.parametrize("name", ["../../x", "/abs", "**", "a" * 101, ".hidden", "-flag", "a b", "x/y", "n\nm"])
def test_run_names_that_are_not_plain_folder_names_are_config_errors(name):
    with pytest.raises(ConfigError, match="^name") as raised:
        load_config("colored-mnist", {"name": name})
    assert len(str(raised.value)) < 200  # a 300-character name is not echoed whole


def test_every_shipped_preset_name_is_a_valid_run_name():
    from lnl_cli.preset_files import builtin_presets

    for preset in builtin_presets():
        assert load_config(preset).name == preset


def test_a_preset_file_name_that_is_no_run_name_is_tidied(tmp_path):
    preset = tmp_path / "my colour (v2).yaml"
    preset.write_text("extends: colored-mnist\n")
    assert load_config(preset).name == "my-colour-v2"
    assert load_config(preset, ["name=chosen_1.0"]).name == "chosen_1.0"


def test_a_stored_run_name_from_before_the_rules_still_loads():
    stored = to_dict(load_config("colored-mnist"))  # as a checkpoint of a preset file `my colours.yaml`
    stored["name"] = "my colours"
    assert from_dict(stored).name == "my-colours"


# ------------------------------------------------------------------ random config input
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.lists(st.lists(st.integers(-5, 300), max_size=4),
                                                                     max_size=11))
keys = st.one_of(st.sampled_from(sorted(SPECS)), st.text(min_size=1, max_size=15))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
@pytest.mark.slow
def test_random_overrides_give_a_valid_config_or_a_config_error(overrides):
    try:
        config = load_config("colored-mnist", overrides)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=30), max_size=5))
def test_random_override_strings_give_a_valid_config_or_a_config_error(words):
    try:
        load_config("colored-mnist", words)
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=10), values, max_size=5).map(yaml.safe_dump)))
def test_random_preset_files_give_a_valid_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc)


# ------------------------------------------------------------------ hostile YAML and huge values
def _laughs(levels: int, key: str = "seed") -> str:
    """A billion-laughs preset: each level an alias list of nine copies of the one before."""
    names = "abcdefghijk"[:levels]
    lines = [f"{names[0]}: &{names[0]} [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]" for prev, cur in zip(names, names[1:])]
    return "\n".join(lines + [f"{key}: *{names[-1]}"]) + "\n"


def test_yaml_aliases_are_refused_in_presets_and_overrides_at_once(tmp_path):
    preset = tmp_path / "laughs.yaml"
    preset.write_text(_laughs(9))  # 9**9 values once expanded: minutes, and a gigabyte error line, before
    with pytest.raises(ConfigError) as raised:  # refused while parsing: expanded, this would take minutes
        load_config(preset)
    assert "line 2: YAML aliases (*name) are not supported" in str(raised.value)
    assert len(str(raised.value)) < 500
    with pytest.raises(ConfigError, match=r"override 'seed': YAML aliases"):
        load_config("colored-mnist", ["seed=[&a [x, x, x], [*a, *a, *a]]"])


@pytest.mark.parametrize("depth", [33, 5000])
def test_deeply_nested_yaml_is_a_config_error_not_a_recursion_error(tmp_path, depth):
    nested = "[" * depth + "]" * depth
    preset = tmp_path / "deep.yaml"
    preset.write_text(f"seed: {nested}\n")
    with pytest.raises(ConfigError, match="nested deeper than"):
        load_config(preset)
    with pytest.raises(ConfigError, match="override 'seed': YAML nested deeper than"):
        load_config("colored-mnist", [f"seed={nested}"])


@pytest.mark.slow
def test_error_messages_are_bounded_and_one_line(tmp_path):
    huge = "[" + ", ".join(["123456789"] * 50_000) + "]"
    with pytest.raises(ConfigError) as raised:
        load_config("colored-mnist", [f"seed={huge}", f"data.color_var={'n' * 50_000}\nError: fake", "x\ny=1"])
    message = str(raised.value)
    assert message.startswith("3 config problems") and len(message) <= MAX_MESSAGE and "\n" not in message
    assert "seed (from override): expected an integer, got [123456789, " in message and "..." in message
    assert "data.color_var (from override): expected a number, got 'nnnn" in message
    many = tmp_path / "many.yaml"
    many.write_text("".join(f"key{i}: {i}\n" for i in range(5000)))
    with pytest.raises(ConfigError) as raised:
        load_config(many)
    assert str(raised.value).startswith("5000 config problems") and "and 4980 more" in str(raised.value)
    assert len(str(raised.value)) <= MAX_MESSAGE


@pytest.mark.parametrize("override, needle", [
    ("seed=99999999999999999999", "seed (from override): must be <= 9223372036854775807"),
    ("data.seed=99999999999999999999", "data.seed (from override): must be <="),
    ("seed=-1", "seed (from override): must be >= 0"),
    ("train.batch_size=99999999999999999999", "train.batch_size (from override): must be <= 1048576"),
    ("train.num_threads=99999999999999999999", "train.num_threads (from override): must be <= 1024"),
    ("data.num_workers=100000", "data.num_workers (from override): must be <= 256"),
    ("model.bias_head_width=1000000000", "model.bias_head_width (from override): must be <= 4096"),
    ("lnl.lambda=1" + "0" * 400, "lnl.lambda (from override): expected a finite number"),
    ("name=a\x00b", "name (from override): expected a string without NUL characters"),
])
def test_values_beyond_what_torch_accepts_are_config_errors(override, needle):
    with pytest.raises(ConfigError) as raised:
        load_config("colored-mnist", [override])
    assert needle in str(raised.value)


def test_the_largest_allowed_values_still_load():
    config = load_config("colored-mnist", [f"seed={2**63 - 1}", f"data.seed={2**63 - 1}",
                                           "train.batch_size=1048576", "train.num_threads=1024"])
    assert config.seed == 2**63 - 1 and config.train.batch_size == 1 << 20


def test_yaml_a_value_cannot_hold_stays_text_in_overrides_and_is_an_error_in_presets(tmp_path):
    assert load_config("colored-mnist", ["name=2024-13-45"]).name == "2024-13-45"  # not a date: a name
    preset = tmp_path / "p.yaml"
    preset.write_text(f"extends: colored-mnist\nseed: {'9' * 5000}\n")
    with pytest.raises(ConfigError, match="a value that YAML cannot construct"):
        load_config(preset)
