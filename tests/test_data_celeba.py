"""CelebA folders: attribute labels and bias."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.data import load_dataset
from lnl_cli.errors import ConfigError, DataError

from helpers import save


TRAIN, TEST, VALID = range(8), range(8, 12), range(12, 16)  # image numbers in each official partition


def _partition(i: int, with_valid: bool) -> int:
    if i in TRAIN:
        return 0
    return 1 if i in VALID and with_valid else 2


def _celeba(root: Path, names=("Blond_Hair", "Male", "Young"), with_valid: bool = True) -> None:
    """A tiny CelebA folder; without `with_valid` the images of VALID are test images."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rows, partition = [], []
    for i in range(len(TRAIN) + len(TEST) + len(VALID)):
        name = f"{i:06d}.jpg"
        image = torch.full((3, 24, 20), 40 * (i % 5), dtype=torch.uint8)
        save(image, folder / "img_align_celeba" / name)
        values = [1 if i % 2 else -1, 1 if i % 3 == 0 else -1, 1]
        rows.append(f"{name} " + " ".join(f"{v:2d}" for v in values))
        partition.append(f"{name} {_partition(i, with_valid)}")
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


def _config(root: Path, *overrides: str):
    return load_config("celeba-blond", [f"data.root={root}", "data.image_size=16", "data.num_workers=0", *overrides])


def test_the_official_valid_partition_is_the_validation_split(tmp_path):
    _celeba(tmp_path)
    dataset = load_dataset(_config(tmp_path))
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (len(TRAIN), len(VALID), len(TEST))
    assert dataset.val.labels.tolist() == [i % 2 for i in VALID] and dataset.val.bias.tolist() == [
        int(i % 3 == 0) for i in VALID]
    assert "(train/valid/test)" in dataset.description
    assert load_dataset(_config(tmp_path), with_train=False).val is None
    assert len(load_dataset(_config(tmp_path, "data.val_size=2")).val) == 2
    assert load_dataset(_config(tmp_path, "data.val_size=0")).val is None


def test_no_validation_split_by_default_where_training_or_test_reads_valid(tmp_path):
    _celeba(tmp_path)
    for overrides in (["data.train=all"], ["data.test=valid"]):
        dataset = load_dataset(_config(tmp_path, *overrides))
        assert dataset.val is None, overrides
    with pytest.raises(ConfigError, match=r"data.val: celeba split 'valid' overlaps data.test"):
        _config(tmp_path, "data.test=valid", "data.val=valid")
    with pytest.raises(ConfigError, match=r"data.val: celeba splits are .*got 'dev'"):
        _config(tmp_path, "data.val=dev")
    swapped = load_dataset(_config(tmp_path, "data.val=test", "data.test=valid"))
    assert len(swapped.val) == len(TEST) and len(swapped.test) == len(VALID)


def test_an_empty_valid_partition_is_a_data_error_unless_validation_is_off(tmp_path):
    _celeba(tmp_path, with_valid=False)
    with pytest.raises(DataError, match=r"CelebA split 'valid' is empty in .*list_eval_partition.txt"):
        load_dataset(_config(tmp_path))
    dataset = load_dataset(_config(tmp_path, "data.val_size=0"))
    assert dataset.val is None and len(dataset.test) == len(TEST) + len(VALID)
