"""Dataset tools (lnl_cli/tools): background MNIST and the paper's manifest builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lnl_cli import load_config
from lnl_cli.tools import background_mnist

from helpers import lnl, lnl_all


@pytest.mark.mnist
@pytest.mark.slow
def test_background_mnist_end_to_end_train_evaluate_probe(mnist_root, tmp_path):
    """The issue's acceptance test: a manifest dataset written on the fly, every command, on CPU."""
    preset = background_mnist.build(mnist_root, tmp_path / "bg", train_size=1500, test_size=500, val_size=300)
    summaries = {}
    for method in ("baseline", "lnl"):
        out = tmp_path / method
        result = lnl("train", "--preset", str(preset), f"method={method}", "train.epochs=4",
                     "train.pretrain_epochs=2", "train.num_threads=2", "--out", str(out), "--json")
        assert result.returncode == 0, result.stderr
        summaries[method] = json.loads(result.stdout)
        assert {"last.pt", "summary.json", "metrics.jsonl", "config.yaml"} <= {p.name for p in out.iterdir()}
        # best.pt: the preset selects on the random-colour validation split, and the summary tests that model
        evaluated = lnl("evaluate", "--checkpoint", str(out / "best.pt"), "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        for key in ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy"):
            assert report[key] == pytest.approx(summaries[method]["test"][key])
        cells = report["cells"]
        assert len(cells) == 100 and sum(c["count"] for c in cells) == 500
        assert all(c["aligned"] == (c["label_name"] == str(background_mnist.PALETTE_INDEX[c["bias_name"]]))
                   for c in cells)
    # The dataset is biased as built: the baseline's final model follows the background colour (its best.pt
    # is the epoch that does so least on the random-colour validation split).
    final, probe = lnl_all(["evaluate", "--checkpoint", str(tmp_path / "baseline" / "last.pt"), "--json"],
                           ["probe-bias", "--checkpoint", str(tmp_path / "baseline" / "last.pt"), "--steps", "150",
                            "--seeds", "1", "--max-leakage", "0.99", "--json"])
    assert final.returncode == 0, final.stderr
    baseline = json.loads(final.stdout)
    assert baseline["aligned_accuracy"] > baseline["conflicting_accuracy"] + 0.3
    assert probe.returncode in (0, 1), probe.stderr
    leak = json.loads(probe.stdout)
    assert leak["num_classes"] == 10 and leak["train_samples"] + leak["heldout_samples"] == 500
    assert leak["leakage"]["mean"] > 0.5  # colour is plainly readable from the baseline's features
    # The gate compares the upper 95% bound, not the mean, with the threshold.
    assert leak["passed"] == (leak["leakage"]["ci_high"] <= 0.99) and probe.returncode == (0 if leak["passed"] else 1)


@pytest.mark.mnist
def test_background_mnist_validation_has_random_colours_and_leaves_train_and_test_as_before(mnist_root, tmp_path):
    """val.csv is drawn after test.csv, from training digits that train.csv does not hold, so a build with
    it writes the same train.csv, test.csv and images as one without it (older results stay comparable)."""
    with_val = background_mnist.build(mnist_root, tmp_path / "a", train_size=300, test_size=100, val_size=200)
    without_val = background_mnist.build(mnist_root, tmp_path / "b", train_size=300, test_size=100, val_size=0)
    assert load_config(without_val).train.select == "last" and not (tmp_path / "b" / "val.csv").exists()
    for name in ("train.csv", "test.csv", "images/train/00123.png", "images/test/00042.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    val = _rows(tmp_path / "a" / "val.csv")
    assert len(val) == 200
    aligned = sum(background_mnist.PALETTE_INDEX[colour] == int(label) for _, label, colour in val)
    assert aligned < 60  # random colours: about 1 in 10 match the digit, not all of them as in train.csv
    train_images = {p.read_bytes() for p in (tmp_path / "a" / "images" / "train").iterdir()}
    assert not any((tmp_path / "a" / path).read_bytes() in train_images for path, _, _ in val)
    config = load_config(with_val)
    assert config.data.val == "val.csv" and config.train.select == "val_accuracy"
    with pytest.raises(SystemExit) as exited:  # one-line error, the config exit code
        background_mnist.main(["--data-root", str(mnist_root), "--out", str(tmp_path / "c"), "--train-size",
                               "59000", "--val-size", "2000"])
    assert exited.value.code == 2 and not (tmp_path / "c").exists()


def _rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def test_dogs_and_cats_lists_become_the_tb1_and_tb2_manifests(tmp_path):
    from lnl_cli.tools import paper_manifests

    (tmp_path / "list_bright.txt").write_text("cat.1.jpg\ndog.1.jpg\ndog.2.jpg\n")
    (tmp_path / "list_dark.txt").write_text("cat.2.jpg\ncat.3.jpg\ndog.3.jpg\n")
    paper_manifests.main(["dogs-and-cats", "--images", "/kaggle/train", "--lists", str(tmp_path), "--out", str(tmp_path)])
    tb1 = _rows(tmp_path / "tb1.csv")
    assert tb1 == [["/kaggle/train/cat.2.jpg", "cat", "dark"], ["/kaggle/train/cat.3.jpg", "cat", "dark"],
                   ["/kaggle/train/dog.1.jpg", "dog", "bright"], ["/kaggle/train/dog.2.jpg", "dog", "bright"]]
    assert _rows(tmp_path / "tb2.csv") == [["/kaggle/train/cat.1.jpg", "cat", "bright"],
                                           ["/kaggle/train/dog.3.jpg", "dog", "dark"]]
    config = load_config("dogs-and-cats-tb1", [f"data.root={tmp_path}"])
    assert (tmp_path / config.data.train).is_file() and (tmp_path / config.data.test).is_file()
    with pytest.raises(SystemExit) as exited:  # one-line error, the data exit code
        paper_manifests.main(["dogs-and-cats", "--images", "x", "--lists", str(tmp_path / "no"), "--out", "y"])
    assert exited.value.code == 3


def test_imdb_lists_become_the_extreme_bias_manifests(tmp_path):
    import numpy as np

    from lnl_cli.tools import paper_manifests

    people = {b"a.jpg": {"age": 20, "gender": 0}, b"b.jpg": {"age": 50, "gender": 1},
              b"c.jpg": {"age": 45, "gender": 0}, b"d.jpg": {"age": 25, "gender": 1},
              b"e.jpg": {"age": 35, "gender": 0}, b"f.jpg": {"age": 22, "gender": float("nan")},
              b"t1.jpg": {"age": 60, "gender": 0}, b"t2.jpg": {"age": 33, "gender": 1}}
    np.save(tmp_path / "gt.npy", np.array(people, dtype=object), allow_pickle=True)
    split = {"train_list": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"], "test_list": ["t1.jpg", "t2.jpg"]}
    np.save(tmp_path / "split.npy", np.array(split, dtype=object), allow_pickle=True)
    paper_manifests.main(["imdb", "--images", "/imdb", "--age-gender", str(tmp_path / "gt.npy"),
                          "--split", str(tmp_path / "split.npy"), "--out", str(tmp_path)])
    assert _rows(tmp_path / "eb1.csv") == [["/imdb/a.jpg", "female", "young"], ["/imdb/b.jpg", "male", "old"]]
    assert _rows(tmp_path / "eb2.csv") == [["/imdb/c.jpg", "female", "old"], ["/imdb/d.jpg", "male", "young"]]
    assert _rows(tmp_path / "test.csv") == [["/imdb/t1.jpg", "female", "old"]]  # 30-39 left out
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(SystemExit) as exited:
        paper_manifests.main(["imdb", "--images", "/imdb", "--age-gender", str(tmp_path / "broken.npy"),
                              "--split", str(tmp_path / "split.npy"), "--out", str(tmp_path)])
    assert exited.value.code == 3
