import pytest
import torch

from lnl_cli.data.base import majority_alignment
from lnl_cli.metrics import summarise_counts


def test_aligned_conflicting_worst_group_from_counts():
    total = torch.tensor([[10, 10], [10, 0]])
    correct = torch.tensor([[10, 2], [5, 0]])
    counts = {"cell_total": total, "cell_correct": correct, "confusion": torch.tensor([[12, 8], [5, 5]]),
              "bias_hits": torch.tensor(3), "bias_pixels": torch.tensor(4)}
    report = summarise_counts(counts, torch.eye(2, dtype=torch.bool))
    assert report["accuracy"] == pytest.approx(17 / 30)
    assert report["aligned_accuracy"] == pytest.approx(10 / 10)   # diagonal: (0,0) and empty (1,1)
    assert report["conflicting_accuracy"] == pytest.approx(7 / 20)
    assert report["worst_group_accuracy"] == pytest.approx(0.2)  # empty cell ignored
    assert report["bias_head_accuracy"] == pytest.approx(0.75)
    assert report["num_samples"] == 30
    empty = [c for c in report["cells"] if c["count"] == 0]
    assert len(empty) == 1 and empty[0]["accuracy"] is None
    assert report["confusion_matrix"] == [[12, 8], [5, 5]]
    assert [c["aligned"] for c in report["cells"]] == [True, False, False, True]


def test_alignment_is_each_labels_most_frequent_bias():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    bias = torch.tensor([1, 1, 0, 0, 0, 1, 1])
    mask = majority_alignment(labels, bias, num_classes=4, num_bias_classes=2)
    assert mask.tolist() == [[False, True], [True, False], [False, True], [False, False]]  # label 3: unseen


def test_named_cells_and_a_custom_shortcut():
    counts = {"cell_total": torch.tensor([[8, 2], [3, 7]]), "cell_correct": torch.tensor([[8, 1], [0, 7]]),
              "confusion": torch.zeros(2, 2, dtype=torch.long), "bias_hits": torch.tensor(0),
              "bias_pixels": torch.tensor(0)}
    aligned = torch.tensor([[True, False], [False, True]])
    report = summarise_counts(counts, aligned, class_names=("cat", "dog"), bias_names=("dark", "bright"))
    assert report["aligned_accuracy"] == pytest.approx(15 / 15)
    assert report["conflicting_accuracy"] == pytest.approx(1 / 5)
    assert report["bias_head_accuracy"] is None
    assert report["cells"][1] == {"label": 0, "bias": 1, "label_name": "cat", "bias_name": "bright",
                                  "aligned": False, "count": 2, "correct": 1, "accuracy": 0.5}
