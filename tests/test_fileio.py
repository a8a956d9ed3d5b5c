"""Crash-safe writes and the JSON they produce."""

from __future__ import annotations

import json

import pytest

from lnl_cli.fileio import append_json_line, atomic_write_json, to_json


def _strict(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_json_files_are_standard_json_with_null_for_nan_and_infinity(tmp_path):
    record = {"epoch": 1, "label_loss": float("nan"), "test": {"accuracy": float("inf")}, "per_seed": [0.5, float("-inf")]}
    expected = {"epoch": 1, "label_loss": None, "test": {"accuracy": None}, "per_seed": [0.5, None]}
    atomic_write_json(tmp_path / "summary.json", record)
    assert _strict((tmp_path / "summary.json").read_text()) == expected
    append_json_line(tmp_path / "metrics.jsonl", record)
    append_json_line(tmp_path / "metrics.jsonl", {"epoch": 2, "label_loss": 0.25})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict(line) for line in lines] == [expected, {"epoch": 2, "label_loss": 0.25}]
    assert to_json({"a": (1, 2.5)}) == '{"a": [1, 2.5]}'
    assert record["label_loss"] != record["label_loss"]  # the caller's data is left as it was
