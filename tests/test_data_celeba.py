"""CelebA folders: attribute labels and bias."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.data import load_dataset
from lnl_cli.errors import ConfigError, DataError

from helpers import save


def _celeba(root: Path, names=("Blond_Hair", "Male", "Young")) -> None:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rows, partition = [], []
    for i in range(12):
        name = f"{i:06d}.jpg"
        image = torch.full((3, 24, 20), 40 * (i % 5), dtype=torch.uint8)
        save(image, folder / "img_align_celeba" / name)
        values = [1 if i % 2 else -1, 1 if i % 3 == 0 else -1, 1]
        rows.append(f"{name} " + " ".join(f"{v:2d}" for v in values))
        partition.append(f"{name} {0 if i < 8 else 2}")
    (folder / "list_attr_celeba.txt").write_text(f"{len(rows)}\n{' '.join(names)}\n" + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")


def test_celeba_folder_gives_attribute_labels_and_bias(tmp_path):
    _celeba(tmp_path)
    config = load_config("celeba-blond", [f"data.root={tmp_path}", "data.image_size=16", "data.num_workers=0"])
    dataset = load_dataset(config)
    assert len(dataset.train) == 8 and len(dataset.test) == 4
    assert dataset.train.labels.tolist() == [i % 2 for i in range(8)]
    assert dataset.train.bias.tolist() == [int(i % 3 == 0) for i in range(8)]
    assert dataset.class_names == ("not_Blond_Hair", "Blond_Hair") and dataset.bias_names == ("not_Male", "Male")
    with pytest.raises(ConfigError, match="did you mean 'Male'"):
        load_dataset(load_config(config_path := "celeba-blond", [f"data.root={tmp_path}", "data.bias_attr=Mal"]))
    with pytest.raises(DataError, match="CelebA file not found"):
        load_dataset(load_config(config_path, [f"data.root={tmp_path / 'nowhere'}"]))
