"""The Colored-MNIST generator on synthetic digits (no MNIST needed) and its cache."""

import os
import struct

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.data import colored_mnist as cm
from lnl_cli.data.base import IGNORE_INDEX
from lnl_cli.errors import DataError

N_PER_CLASS = 400


def _synthetic_digits(n_per_class=N_PER_CLASS):
    generator = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (10 * n_per_class, 28, 28), generator=generator, dtype=torch.int64)
    digits = digits.to(torch.uint8)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    return digits, labels


def write_mnist(root, n_train=30, n_test=20, test_labels=None):
    """MNIST/raw under `root` in the IDX format torchvision reads: random 28x28 digits, labels 0-9."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        digits = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        if prefix == "t10k" and test_labels is not None:
            labels = test_labels
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + digits.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(labels))
                                                          + bytes(labels.tolist()))
    return root


def _image_colors(images):
    """The solid colour of each image (max over pixels; background is black), on [0, 1]."""
    return images.flatten(2).max(dim=2).values.float() / 255.0


def _config(**overrides):
    """Colored-MNIST's config; without a validation split unless asked (the synthetic MNIST is tiny)."""
    overrides = {"val_size": 0, **overrides}
    return load_config("colored-mnist", {f"data.{k}": v for k, v in overrides.items()})


def test_train_colours_cluster_by_class_with_the_configured_variance():
    config = _config(color_var=0.01)
    digits, labels = _synthetic_digits()
    out = cm._generate(config, True, digits, labels)
    assert torch.equal(out["bias"], labels)
    colors = _image_colors(out["images"])
    means = torch.tensor(config.data.class_colors, dtype=torch.float32) / 255
    for y in range(10):
        mine = colors[labels == y]
        assert torch.allclose(mine.mean(0), means[y], atol=0.03)
        # away from the clip boundaries the per-channel variance is the configured one
        for c in range(3):
            if 0.25 < means[y, c] < 0.75:
                assert abs(float(mine[:, c].var()) - 0.01) < 0.003


def test_background_is_black_and_stroke_is_one_solid_colour():
    config = _config()
    digits, labels = _synthetic_digits(20)
    images = cm._generate(config, True, digits, labels)["images"]
    background = digits <= config.data.stroke_threshold
    assert (images.permute(1, 0, 2, 3)[:, background] == 0).all()
    stroke = ~background
    for i in range(5):
        pixels = images[i][:, stroke[i]]
        assert (pixels == pixels[:, :1]).all()


def test_test_colours_are_independent_of_labels():
    config = _config()
    digits, labels = _synthetic_digits()
    bias = cm._generate(config, False, digits, labels)["bias"]
    table = torch.zeros(10, 10)
    table.index_put_((labels, bias), torch.ones(len(labels)), accumulate=True)
    expected = N_PER_CLASS / 10
    chi2 = float(((table - expected) ** 2 / expected).sum())
    assert chi2 < 150  # 81 degrees of freedom: p < 1e-5 above ~150
    assert float((bias == labels).float().mean()) < 0.2


def test_same_seed_same_data_other_seed_other_data():
    digits, labels = _synthetic_digits(20)
    a = cm._generate(_config(seed=3), False, digits, labels)
    b = cm._generate(_config(seed=3), False, digits, labels)
    c = cm._generate(_config(seed=4), False, digits, labels)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["images"], c["images"])


def test_colour_bins_take_the_pil_nearest_pixel_and_ignore_background():
    images = torch.zeros(1, 3, 28, 28, dtype=torch.uint8)
    images[0, :, 1, 1] = torch.tensor([0, 100, 255], dtype=torch.uint8)
    images[0, :, 0, 0] = 200  # never sampled by a 28 -> 14 nearest resize
    for mask, zero_channel in (("pixel", 0), ("channel", IGNORE_INDEX)):
        targets = cm.color_bin_targets(images, bins=8, mask=mask)
        assert targets.shape == (1, 3, 14, 14)
        # the official per-channel mask also ignores a stroke pixel's channel that is 0
        assert targets[0, :, 0, 0].tolist() == [zero_channel, 100 // 32, 255 // 32]
        assert (targets[0, :, 1:, :] == IGNORE_INDEX).all()
        assert (targets[0, :, 0, 1:] == IGNORE_INDEX).all()


def test_the_per_channel_mask_is_the_default_and_ignores_about_a_sixth_of_training_stroke_targets():
    """The official data loader ignores each channel where it is 0; on the default colours that removes
    targets from stroke pixels of classes whose mean colour has a 0 channel."""
    config = _config()
    digits, labels = _synthetic_digits(50)
    images = cm._generate(config, True, digits, labels)["images"]
    channel, pixel = cm.color_bin_targets(images, 8), cm.color_bin_targets(images, 8, mask="pixel")
    assert ((channel == IGNORE_INDEX) >= (pixel == IGNORE_INDEX)).all()
    assert (channel == IGNORE_INDEX).sum() > (pixel == IGNORE_INDEX).sum()
    with pytest.raises(ValueError):
        cm.color_bin_targets(images, 8, mask="bogus")


def test_validation_digits_are_held_out_of_training_and_coloured_like_the_test_set(monkeypatch, tmp_path):
    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path / "cache"))
    root = write_mnist(tmp_path / "mnist", n_train=200)
    with_val = cm.load_colored_mnist(_config(root=str(root), val_size=40))
    without = cm.load_colored_mnist(_config(root=str(root), val_size=0))
    assert without.val is None
    assert len(with_val.val) == 40 and len(with_val.train) == len(without.train) - 40
    held_out = cm.validation_index(len(without.train), 40, 0)
    keep = torch.ones(len(without.train), dtype=torch.bool)
    keep[held_out] = False
    # the training images that stay keep exactly their colours
    assert torch.equal(with_val.train.images, without.train.images[keep])
    assert torch.equal(with_val.val.labels, without.train.labels[held_out])
    # test protocol: the colour is not the class's (in 40 images, far fewer than all match)
    assert (with_val.val.bias == with_val.val.labels).float().mean() < 0.5
    with pytest.raises(DataError, match="data.val_size=200 leaves no training digits"):
        cm.load_colored_mnist(_config(root=str(root), val_size=200))


def test_cache_is_reused_and_a_corrupted_cache_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LNL_DATA_ROOT", str(write_mnist(tmp_path / "mnist")))  # the source the cache is keyed on
    calls = []
    digits, labels = _synthetic_digits(5)

    def fake_mnist(root, train, download):
        calls.append(train)
        return digits, labels

    monkeypatch.setattr(cm, "load_mnist", fake_mnist)
    config = _config(val_size=0)
    first = cm.load_colored_mnist(config)
    assert len(calls) == 2
    again = cm.load_colored_mnist(config)
    assert len(calls) == 2 and torch.equal(first.test.images, again.test.images)
    for path in (tmp_path / "colored_mnist").glob("*.pt"):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    rebuilt = cm.load_colored_mnist(config)
    assert len(calls) == 4 and torch.equal(first.test.images, rebuilt.test.images)
    # other parameters, other cache entry
    cm.load_colored_mnist(_config(color_var=0.05))
    assert len(calls) == 6


def test_subsets_are_deterministic(monkeypatch, tmp_path):
    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path))
    digits, labels = _synthetic_digits(10)
    monkeypatch.setattr(cm, "load_mnist", lambda root, train, download: (digits, labels))
    a = cm.load_colored_mnist(_config(train_size=30, test_size=20))
    b = cm.load_colored_mnist(_config(train_size=30, test_size=20))
    assert len(a.train) == 30 and len(a.test) == 20
    assert torch.equal(a.train.labels, b.train.labels) and torch.equal(a.test.images, b.test.images)


def test_missing_mnist_is_a_data_error_naming_the_folder(tmp_path):
    import pytest

    from lnl_cli.errors import DataError

    with pytest.raises(DataError) as info:
        cm.load_mnist(tmp_path, train=True, download=False)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    assert "train-images-idx3-ubyte" in str(info.value)


# ------------------------------------------------------------------ the cache follows the MNIST files
def test_the_cache_is_keyed_on_the_mnist_files_so_another_root_is_read_for_real(monkeypatch, tmp_path):
    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path / "cache"))
    first, second = write_mnist(tmp_path / "a"), write_mnist(tmp_path / "b", n_test=40)
    read = []
    real_load = cm.load_mnist
    monkeypatch.setattr(cm, "load_mnist", lambda root, train, download: read.append(root) or real_load(
        root, train, download))
    assert len(cm.load_colored_mnist(_config(root=str(first))).test) == 20
    assert len(cm.load_colored_mnist(_config(root=str(first))).test) == 20 and len(read) == 2  # cached
    assert len(cm.load_colored_mnist(_config(root=str(second))).test) == 40 and read[-1] == second
    from lnl_cli.errors import DataError
    with pytest.raises(DataError, match="MNIST not found in"):
        cm.load_colored_mnist(_config(root=str(tmp_path / "nonexistent")), with_train=False)
    labels = first / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))  # replaced in place
    cm.load_colored_mnist(_config(root=str(first)), with_train=False)
    assert read[-1] == first and len(read) == 6


def test_evaluate_with_another_data_root_reads_that_root(monkeypatch, tmp_path):
    from lnl_cli import api
    from lnl_cli.algorithms import TaskSpec, build_algorithm
    from lnl_cli.checkpoint import make_checkpoint, save_checkpoint
    from lnl_cli.errors import DataError

    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path / "cache"))
    root = write_mnist(tmp_path / "mnist")
    config = _config(root=str(root))
    checkpoint = tmp_path / "last.pt"
    save_checkpoint(checkpoint, make_checkpoint(build_algorithm(config, TaskSpec(10, 10, 8)), config, epoch=1))
    report = api.evaluate(checkpoint, overrides=["device=cpu"])
    assert report["num_samples"] == 20 and report["data_root"] == str(root)
    with pytest.raises(DataError, match=f"MNIST not found in {tmp_path / 'nowhere'}"):
        api.evaluate(checkpoint, overrides=["device=cpu", f"data.root={tmp_path / 'nowhere'}"])


@pytest.mark.parametrize("corrupt, needle", [
    (lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(b"garbage-bytes-here"), "a training file is corrupt"),
    (lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00"), "a test file is corrupt"),
    (lambda raw: (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 20) + bytes([12] * 20)),
     "labels in 0..9"),
    (lambda raw: (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 3) + bytes(3)),
     "labels in 0..9"),
])
def test_corrupt_mnist_files_are_data_errors(tmp_path, corrupt, needle):
    from lnl_cli.errors import DataError

    root = write_mnist(tmp_path)
    corrupt(root / "MNIST" / "raw")
    with pytest.raises(DataError) as raised:
        cm.load_mnist(root, train="training" in needle, download=False)
    assert str(root / "MNIST" / "raw") in str(raised.value) and needle in str(raised.value)
