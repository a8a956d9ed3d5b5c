"""Probes say which split they read (issue 31): one record per split in probe_splits.json, a split column and
--probe-split in compare, and a gate that will not judge on probe data where label and bias go together."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from lnl_cli import api, load_config
from lnl_cli.api import ProbeSettings
from lnl_cli.errors import ConfigError, LabelBiasDependenceWarning

from helpers import save

TONES = {"red": (200, 30, 30), "blue": (30, 30, 200)}
QUICK = ProbeSettings(seeds=1, steps=20)


def _tree(root: Path, split: str, pairs: list[tuple[str, str]]) -> None:
    for i, (label, tone) in enumerate(pairs):
        image = torch.tensor(TONES[tone], dtype=torch.uint8).view(3, 1, 1).expand(3, 12, 12).contiguous()
        image[:, :6] = 255 if label == "dog" else 0
        (root / split / label / tone).mkdir(parents=True, exist_ok=True)
        save(image, root / split / label / tone / f"{i}.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    _tree(root, "train", [("cat", "red")] * 10 + [("dog", "blue")] * 10 + [("cat", "blue"), ("dog", "red")])
    mixed = [("cat", "red"), ("cat", "blue"), ("dog", "red"), ("dog", "blue")] * 4
    _tree(root, "test", mixed)
    _tree(root, "other", mixed)
    config = load_config(None, ["data.type=folder", "data.bias_from=subfolder", f"data.root={root}",
                                "data.image_size=16", "data.num_workers=0", "method=baseline", "train.epochs=1",
                                "train.batch_size=8", "train.select=last", "train.num_threads=1"])
    api.train(config, root / "run")
    return root / "run"


def test_each_split_keeps_its_latest_probe_and_compare_says_which(run):
    first = api.probe(run, settings=QUICK)
    second = api.probe(run, overrides=["data.test=other"], settings=QUICK)
    assert (first["split"], second["split"]) == ("test", "test:other")
    assert json.loads((run / "probe.json").read_text())["split"] == "test:other"  # the latest report
    stored = json.loads((run / "probe_splits.json").read_text())
    assert set(stored) == {"test", "test:other"} and stored["test"]["leakage"] == first["leakage"]
    (latest,) = api.compare([run])
    assert latest["probe_split"] == "test:other" and latest["leakage"] == second["leakage"]["mean"]
    (chosen,) = api.compare([run], probe_split="test")
    assert chosen["probe_split"] == "test" and chosen["leakage"] == first["leakage"]["mean"]
    assert chosen["probe_stale"] is False
    (missing,) = api.compare([run], probe_split="val")
    assert missing["probe_split"] is None and missing["leakage"] is None


def test_the_gate_refuses_probe_data_whose_label_gives_the_bias(run):
    biased = ProbeSettings(seeds=1, steps=20, source="train")
    with pytest.raises(ConfigError, match="the gate refuses to judge: label and bias are strongly dependent in the "
                                          "probe data train .*--allow-dependent"):
        api.probe(run, settings=biased, max_leakage=0.5, record=False)
    with pytest.warns(LabelBiasDependenceWarning):
        report = api.probe(run, settings=ProbeSettings(seeds=1, steps=20, source="train", allow_dependent=True),
                           max_leakage=0.5, record=False)
    assert report["passed"] is not None and report["settings"]["allow_dependent"] is True
    with pytest.warns(LabelBiasDependenceWarning):
        assert api.probe(run, settings=biased, record=False)["passed"] is None  # no gate: a warning only
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelBiasDependenceWarning)
        api.probe(run, settings=QUICK, max_leakage=0.5, record=False)  # the test split: independent
