"""PNG plots from a run's metrics and from an evaluation report (synthetic inputs, no training)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib", reason="pip install 'lnl[plots]'")

from lnl_cli import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG"


def _records():
    return [{"epoch": 1, "phase": "warm-up", "label_loss": 2.0, "val_accuracy": 0.3, "val_bias_head_accuracy": 0.9},
            {"epoch": 2, "phase": "adversarial", "label_loss": 1.5, "bias_loss": 1.0, "neg_entropy": -2.0,
             "val_accuracy": 0.5, "val_bias_head_accuracy": 0.4}]


def test_training_plots_are_written_as_png(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    written = plots.plot_training(tmp_path, num_classes=10)
    assert [p.name for p in written] == ["losses.png", "accuracy.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written)
    assert plots.plot_training(tmp_path / "missing") == []


def test_report_plots_normalise_the_confusion_matrix_and_tolerate_empty_cells(tmp_path):
    cells = [{"label": i, "bias": j, "aligned": i == j, "count": 0 if (i, j) == (1, 0) else 5,
              "correct": 3, "accuracy": None if (i, j) == (1, 0) else 0.6} for i in range(2) for j in range(2)]
    report = {"method": "lnl", "accuracy": 0.6, "cells": cells, "confusion_matrix": [[6, 4], [0, 0]]}
    written = plots.plot_report(report, tmp_path)
    assert {p.name for p in written} == {"confusion_matrix.png", "cell_accuracy.png"}
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written)
    normalised = plots._row_normalised([[6, 4], [0, 0]])
    assert normalised[0] == [0.6, 0.4] and all(v != v for v in normalised[1])  # an empty row stays empty (NaN)
