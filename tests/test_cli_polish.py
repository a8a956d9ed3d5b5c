"""Commands that help instead of refusing (issue 31, polish): bare `lnl config` and `lnl presets show`,
and preset descriptions that are whole sentences."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lnl_cli import api
from lnl_cli.cli import app
from lnl_cli.preset_files import builtin_presets, preset_description


def test_bare_lnl_config_shows_its_help_and_succeeds():
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0 and "keys" in result.stdout and "Usage" in result.stdout


def test_bare_presets_show_lists_the_presets_and_succeeds():
    result = CliRunner().invoke(app, ["presets", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == list(api.presets())
    assert "which preset?" in result.stderr


def test_descriptions_are_the_headers_first_paragraph_whole(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("# A sentence that wraps\n#   onto a second line.\n#\n# Details that are not the description.\nseed: 1\n")
    assert preset_description(preset) == "A sentence that wraps onto a second line."
    for name, path in builtin_presets().items():
        assert preset_description(path).rstrip().endswith((".", ")")), f"{name}: {preset_description(path)!r}"


def test_evaluate_tables_name_classes_and_bias_values_and_mark_aligned_cells():
    from lnl_cli.cli.evaluate import _cell_matrix, _names
    cells = [{"label": y, "bias": b, "label_name": ["cat", "dog"][y], "bias_name": ["blue", "red"][b],
              "aligned": y != b, "accuracy": 0.5 * (y + b)} for y in range(2) for b in range(2)]
    assert _names(cells, "label") == ["cat", "dog"] and _names(cells, "bias") == ["blue", "red"]
    assert _cell_matrix(cells) == [["0.00", "0.50*"], ["0.50*", "1.00"]]
    unnamed = [{key: value for key, value in cell.items() if not key.endswith("_name")} for cell in cells]
    assert _names(unnamed, "label") == ["0", "1"]  # Colored-MNIST: indices


def test_lnl_env_reports_versions_cpu_and_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("LNL_DATA_ROOT", str(tmp_path))
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    import torch
    assert torch.__version__.startswith(report["packages"]["torch"])
    assert report["data_root_env"] == str(tmp_path) and report["mnist_found"] is False
    assert isinstance(report["cpu_native_bf16"], bool) and report["torch_threads"] >= 1
    text = CliRunner().invoke(app, ["env"]).stdout
    assert "native bf16" in text and "MNIST found: False" in text
