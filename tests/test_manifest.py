"""Bring-your-own data: manifest CSVs, CelebA folders, ResNet backbones and categorical bias heads."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from lnl_cli import load_config
from lnl_cli.algorithms import ALGORITHMS, TaskSpec, build_algorithm
from lnl_cli.config import FEATURE_LAYERS, builtin_presets
from lnl_cli.data.base import iterate_batches, load_dataset
from lnl_cli.data.images import StreamingSplit
from lnl_cli.errors import ConfigError, DataError
from lnl_cli.tools import background_mnist

from test_cli import assert_one_line_error, lnl

COLORS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def save(image: torch.Tensor, path: Path) -> None:
    """C x H x W uint8 tensor to an image file (format from the suffix; 1 channel = grayscale)."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, quality=95)


def write_folder(root: Path, rows: dict[str, list[tuple[str, str]]], size: int = 12) -> None:
    """PNG images whose colour is the bias; one CSV per split with (label, bias) rows."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for split, pairs in rows.items():
        lines = ["file,animal,tone"]
        for i, (label, tone) in enumerate(pairs):
            image = torch.tensor(COLORS[tone], dtype=torch.uint8).view(3, 1, 1).expand(3, size, size).contiguous()
            image[:, : size // 2] = 255 if label == "dog" else 0  # the label is a shape, the bias a colour
            name = f"img/{split}-{i}.png"
            save(image, root / name)
            lines.append(f"{name},{label},{tone}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_preset(root: Path, extra: str = "") -> Path:
    preset = root / "pets.yaml"
    preset.write_text(
        "# Pets: a tiny manifest for tests.\n# lnl train --preset pets.yaml\n"
        "data:\n  type: manifest\n  root: .\n  train: train.csv\n  test: test.csv\n"
        "  columns: {path: file, label: animal, bias: tone}\n  image_size: 16\n  num_workers: 0\n"
        "train:\n  epochs: 2\n  pretrain_epochs: 1\n  batch_size: 4\n" + extra)
    return preset


BIASED = [("cat", "red")] * 6 + [("dog", "blue")] * 6 + [("cat", "blue"), ("dog", "red")]
UNBIASED = [("cat", "red"), ("cat", "blue"), ("dog", "red"), ("dog", "blue")] * 2


@pytest.fixture
def pets(tmp_path) -> Path:
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    return write_preset(tmp_path)


def test_manifest_dataset_reads_labels_bias_and_the_training_shortcut(pets):
    dataset = load_dataset(load_config(pets))
    assert dataset.class_names == ("cat", "dog") and dataset.bias_names == ("blue", "red")
    assert len(dataset.train) == len(BIASED) and len(dataset.test) == len(UNBIASED)
    assert dataset.train.images.shape == (len(BIASED), 3, 16, 16) and dataset.train.images.dtype == torch.uint8
    assert dataset.train.labels[:6].tolist() == [0] * 6 and dataset.train.bias[:6].tolist() == [1] * 6
    # Red pixels (bias "red") decode as red, resized: the files were read, not invented.
    assert dataset.train.images[0, 0, -1, -1] > 150 and dataset.train.images[0, 2, -1, -1] < 80
    assert dataset.aligned_mask().tolist() == [[False, True], [True, False]]  # cat-red, dog-blue


def test_preset_order_of_classes_wins_and_numbers_sort_as_numbers(tmp_path):
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    preset = write_preset(tmp_path, "")
    config = load_config(preset, ["data.classes=[dog, cat]", "data.bias_classes=[red, blue]"])
    dataset = load_dataset(config)
    assert dataset.class_names == ("dog", "cat") and dataset.train.labels[0] == 1 and dataset.train.bias[0] == 0
    from lnl_cli.data.manifest import natural_order
    assert natural_order(["10", "9", "2", "9"]) == ["2", "9", "10"]
    assert natural_order(["b", "10", "a"]) == ["10", "a", "b"]


def test_streaming_split_yields_the_same_batches_as_memory(pets):
    memory = load_dataset(load_config(pets, ["data.loading=memory"]))
    stream = load_dataset(load_config(pets, ["data.loading=stream"]))
    assert isinstance(stream.train, StreamingSplit)
    for split_m, split_s in ((memory.train, stream.train), (memory.test, stream.test)):
        batches_m = list(iterate_batches(split_m, 5, memory.mean, memory.std, torch.Generator().manual_seed(3)))
        batches_s = list(iterate_batches(split_s, 5, stream.mean, stream.std, torch.Generator().manual_seed(3)))
        assert len(batches_m) == len(batches_s)
        for a, b in zip(batches_m, batches_s):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.bias, b.bias)


def test_sharded_and_subset_streaming_batches_match_memory(pets):
    """What a torchrun process gets of a streamed split (its share of each batch, its test shard)."""
    memory = load_dataset(load_config(pets, ["data.loading=memory"]))
    stream = load_dataset(load_config(pets, ["data.loading=stream"]))
    for rank in (0, 1):
        shares = [list(iterate_batches(d.train, 4, d.mean, d.std, torch.Generator().manual_seed(1), shard=(rank, 2)))
                  for d in (memory, stream)]
        # 14 images, global batches of 4: 4, 4, 4, 2 -> each of 2 processes takes 2, 2, 2, 1
        assert [len(b.labels) for b in shares[0]] == [len(b.labels) for b in shares[1]] == [2, 2, 2, 1]
        assert all(torch.equal(a.images, b.images) and torch.equal(a.bias, b.bias) for a, b in zip(*shares))
    index = torch.tensor([5, 0, 3])
    a, b = memory.test.subset(index), stream.test.subset(index)
    assert len(b) == 3 and torch.equal(a.labels, b.labels)
    first = [next(iterate_batches(split, 3, memory.mean, memory.std, shuffle=False)).images for split in (a, b)]
    assert torch.equal(*first)


def test_auto_loading_streams_what_exceeds_the_memory_limit(pets):
    assert not isinstance(load_dataset(load_config(pets)).train, StreamingSplit)
    big = load_dataset(load_config(pets, ["data.memory_limit_mb=1", "data.image_size=512"]))
    assert isinstance(big.train, StreamingSplit)


@pytest.mark.parametrize("break_it, needle", [
    (lambda root: (root / "test.csv").unlink(), "manifest not found: {root}/test.csv"),
    (lambda root: (root / "train.csv").write_text("file,animal\nimg/train-0.png,cat\n"),
     "train.csv: missing column 'tone'"),
    (lambda root: (root / "train.csv").write_text("file,animal,tone\nimg/train-0.png,,red\n"),
     "train.csv row 2: empty 'animal'"),
    (lambda root: (root / "img" / "train-3.png").unlink(), "train.csv row 5: image not found"),
    (lambda root: (root / "img" / "test-1.png").write_bytes(b"not an image"),
     "test.csv row 3: cannot decode image {root}/img/test-1.png"),
    (lambda root: (root / "test.csv").write_text("file,animal,tone\nimg/test-0.png,horse,red\n"),
     "test.csv row 2: label 'horse' does not occur in the training manifest train.csv"),
    (lambda root: (root / "test.csv").write_text("file,animal,tone\nimg/test-0.png,cat,green\n"),
     "test.csv row 2: bias value 'green' does not occur"),
    (lambda root: (root / "train.csv").write_text("file,animal,tone\n"), "train.csv lists no images"),
])
def test_broken_manifests_are_one_line_data_errors_naming_file_and_row(pets, break_it, needle):
    root = pets.parent
    break_it(root)
    with pytest.raises(DataError) as raised:
        load_dataset(load_config(pets))
    assert needle.format(root=root) in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_that_fails_to_decode_while_streaming_is_a_data_error(pets):
    dataset = load_dataset(load_config(pets, ["data.loading=stream"]))
    (pets.parent / "img" / "train-2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"train.csv row 4: cannot decode image"):
        list(iterate_batches(dataset.train, 4, dataset.mean, dataset.std, shuffle=False))


def test_cli_reports_manifest_problems_with_exit_code_3(pets):
    (pets.parent / "img" / "test-0.png").unlink()
    result = lnl("train", "--preset", str(pets), "--out", str(pets.parent / "run"))
    assert_one_line_error(result, 3, "test.csv row 2: image not found")
    assert not (pets.parent / "run").exists()


def test_jpeg_and_grayscale_files_load_as_rgb(tmp_path):
    write_folder(tmp_path, {"train": BIASED, "test": UNBIASED})
    gray = torch.full((1, 20, 30), 77, dtype=torch.uint8)
    save(gray, tmp_path / "img" / "test-0.jpg")
    csv_path = tmp_path / "test.csv"
    csv_path.write_text(csv_path.read_text().replace("img/test-0.png", "img/test-0.jpg"))
    dataset = load_dataset(load_config(write_preset(tmp_path)))
    first = dataset.test.images[0]
    assert first.shape == (3, 16, 16) and abs(int(first[0, 8, 8]) - 77) <= 3 and torch.equal(first[0], first[1])


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


def _image_batch(classes=2, bias_classes=3, size=64, n=8):
    generator = torch.Generator().manual_seed(0)
    from lnl_cli.data.base import Batch
    return Batch(torch.randn(n, 3, size, size, generator=generator), torch.randint(0, classes, (n,), generator=generator),
                 torch.randint(0, bias_classes, (n,), generator=generator), None)


@pytest.mark.parametrize("method", sorted(ALGORITHMS))
@pytest.mark.parametrize("head", ["conv", "mlp", "spatial"])
def test_every_algorithm_trains_a_categorical_bias_head(method, head):
    config = load_config(None, [f"method={method}", "data.type=manifest", "data.train=a.csv", "data.test=b.csv",
                                f"model.bias_head={head}", "train.precision=fp32", "model.bias_head_width=16"])
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    batch = _image_batch(size=28)
    algorithm.begin_epoch(0)
    before = copy.deepcopy(algorithm.state_dict())
    losses = algorithm.update(batch)
    assert all(math.isfinite(float(v)) for v in losses.values())
    if algorithm.has_bias_head:
        expected = (8, 3, 14, 14) if head == "spatial" else (8, 3)
        assert algorithm.bias_head(algorithm.features(batch.images)).shape == expected
        assert "bias_loss" in losses
        assert any(not torch.equal(v, before[k]) for k, v in algorithm.state_dict().items() if k.startswith("bias_head"))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_resnet_backbones_split_where_feature_layer_says(backbone):
    images = torch.randn(2, 3, 64, 64)
    for layer, (channels, side) in zip(FEATURE_LAYERS[backbone], [(64, 16), (128, 8), (256, 4), (512, 2)]):
        config = load_config(None, [f"model.backbone={backbone}", f"model.feature_layer={layer}",
                                    "data.type=manifest", "data.train=a", "data.test=b", "method=lnl"])
        algorithm = build_algorithm(config, TaskSpec(5, 2, 0)).eval()
        expansion = 4 if backbone == "resnet50" else 1
        features = algorithm.features(images)
        assert features.shape == (2, channels * expansion, side, side)
        assert algorithm.classifier(features).shape == (2, 5)
        assert algorithm.bias_head(features).shape == (2, 2)


def test_resnet18_lnl_trains_a_few_steps_on_64px_images_and_round_trips(tmp_path):
    config = load_config(None, ["model.backbone=resnet18", "data.type=manifest", "data.train=a", "data.test=b",
                                "method=lnl", "train.pretrain_epochs=0", "train.precision=fp32"])
    torch.manual_seed(0)
    algorithm = build_algorithm(config, TaskSpec(2, 3, 0))
    algorithm.begin_epoch(0)
    batch = _image_batch()
    for _ in range(3):
        losses = algorithm.update(batch)
    assert set(losses) == {"label_loss", "neg_entropy", "bias_loss"}
    assert all(math.isfinite(float(v)) for v in losses.values())
    clone = build_algorithm(config, TaskSpec(2, 3, 0), load_pretrained=False)
    clone.load_state_dict(algorithm.state_dict())
    algorithm.eval(), clone.eval()
    assert torch.equal(clone.predict(batch.images), algorithm.predict(batch.images))


def test_pretrained_weights_load_from_a_local_file_without_the_imagenet_head(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    overrides = ["model.backbone=resnet18", "data.type=manifest", "data.train=a", "data.test=b",
                 f"model.pretrained={tmp_path / 'r18.pth'}"]
    algorithm = build_algorithm(load_config(None, overrides), TaskSpec(7, 2, 0))
    assert torch.equal(algorithm.featurizer.layers[0].weight, source.conv1.weight)
    assert torch.equal(algorithm.classifier.layers[0][0].conv1.weight, source.layer4[0].conv1.weight)
    assert algorithm.classifier.layers[-1].out_features == 7
    with pytest.raises(ConfigError, match="does not match the backbone"):
        build_algorithm(load_config(None, [*overrides, "model.backbone=resnet34"]), TaskSpec(7, 2, 0))
    with pytest.raises(ConfigError, match="weights file not found"):
        build_algorithm(load_config(None, [*overrides[:-1], "model.pretrained=/no/such.pth"]), TaskSpec(7, 2, 0))
    # A checkpoint carries the weights: restoring does not read the file.
    build_algorithm(load_config(None, [*overrides[:-1], "model.pretrained=/no/such.pth"]), TaskSpec(7, 2, 0),
                    load_pretrained=False)


def test_model_config_errors_are_collected():
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["model.feature_layer=layer5", "model.bias_head=color_pixels", "data.type=manifest"])
    message = str(raised.value)
    assert "model.feature_layer: paper_convnet has conv2" in message
    assert "color_pixels needs data.type=colored_mnist" in message
    assert "data.train: a manifest dataset needs a CSV file name" in message


@pytest.mark.parametrize("name", list(builtin_presets()))
def test_every_shipped_preset_builds_its_networks(name):
    config = load_config(name)
    algorithm = build_algorithm(config, TaskSpec(10, 10, config.data.color_bins), load_pretrained=False).eval()
    assert algorithm.predict(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.mnist
def test_background_mnist_end_to_end_train_evaluate_probe(mnist_root, tmp_path):
    """The issue's acceptance test: a manifest dataset written on the fly, every command, on CPU."""
    preset = background_mnist.build(mnist_root, tmp_path / "bg", train_size=1500, test_size=500)
    summaries = {}
    for method in ("baseline", "lnl"):
        out = tmp_path / method
        result = lnl("train", "--preset", str(preset), f"method={method}", "train.epochs=4",
                     "train.pretrain_epochs=2", "train.num_threads=2", "--out", str(out), "--json")
        assert result.returncode == 0, result.stderr
        summaries[method] = json.loads(result.stdout)
        assert {"checkpoint.pt", "summary.json", "metrics.jsonl", "config.yaml"} <= {p.name for p in out.iterdir()}
        evaluated = lnl("evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        for key in ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy"):
            assert report[key] == pytest.approx(summaries[method]["test"][key])
        cells = report["cells"]
        assert len(cells) == 100 and sum(c["count"] for c in cells) == 500
        assert all(c["aligned"] == (c["label_name"] == str(background_mnist.PALETTE_INDEX[c["bias_name"]]))
                   for c in cells)
    baseline = summaries["baseline"]["test"]
    # The dataset is biased as built: the baseline follows the background colour.
    assert baseline["aligned_accuracy"] > baseline["conflicting_accuracy"] + 0.3
    probe = lnl("probe-bias", "--checkpoint", str(tmp_path / "baseline" / "checkpoint.pt"), "--steps", "150",
                "--seeds", "1", "--max-leakage", "0.99", "--json")
    assert probe.returncode in (0, 1), probe.stderr
    leak = json.loads(probe.stdout)
    assert leak["num_classes"] == 10 and leak["train_samples"] + leak["heldout_samples"] == 500
    assert leak["leakage"]["mean"] > 0.5  # colour is plainly readable from the baseline's features
    assert leak["passed"] == (leak["leakage"]["mean"] <= 0.99) and probe.returncode == (0 if leak["passed"] else 1)


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
