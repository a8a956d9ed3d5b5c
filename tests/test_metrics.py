import pytest
import torch

from lnl_cli.metrics import summarise_counts


def test_aligned_conflicting_worst_group_from_counts():
    total = torch.tensor([[10, 10], [10, 0]])
    correct = torch.tensor([[10, 2], [5, 0]])
    counts = {"cell_total": total, "cell_correct": correct, "confusion": torch.tensor([[12, 8], [5, 5]]),
              "bias_hits": torch.tensor(3), "bias_pixels": torch.tensor(4)}
    report = summarise_counts(counts)
    assert report["accuracy"] == pytest.approx(17 / 30)
    assert report["aligned_accuracy"] == pytest.approx(10 / 10)   # diagonal: (0,0) and empty (1,1)
    assert report["conflicting_accuracy"] == pytest.approx(7 / 20)
    assert report["worst_group_accuracy"] == pytest.approx(0.2)  # empty cell ignored
    assert report["bias_head_accuracy"] == pytest.approx(0.75)
    assert report["num_samples"] == 30
    empty = [c for c in report["cells"] if c["count"] == 0]
    assert len(empty) == 1 and empty[0]["accuracy"] is None
    assert report["confusion_matrix"] == [[12, 8], [5, 5]]
