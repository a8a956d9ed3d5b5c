"""Training-time augmentation: what the crops and flips do to a batch, the config rules, and that only
training batches are augmented, reproducibly across a resume."""

from __future__ import annotations

import pytest
import torch

from lnl_cli import api, engine, load_config, metrics
from lnl_cli.checkpoint import load_checkpoint
from lnl_cli.data import augment as augmentation
from lnl_cli.data.augment import AugmentConfig, augment_images
from lnl_cli.errors import ConfigError, TrainingInterrupted

from helpers import tiny_dataset

AUGMENTED = ["method=lnl", "train.epochs=3", "train.pretrain_epochs=1", "train.batch_size=16",
             "train.num_threads=1", "model.bias_head=conv", "data.augment.flip=true",
             "data.augment.crop_scale=[0.5,1.0]"]


def _ramp(n: int = 64, size: int = 16) -> torch.Tensor:
    """Images whose pixel value is its column index: a flip or a crop shows in every row."""
    return torch.arange(size, dtype=torch.float32).expand(n, 3, size, size).clone()


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flips_mirror_about_half_the_images_and_leave_the_others_exactly():
    images = _ramp()
    out = augment_images(images, AugmentConfig(flip=True), _generator())
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 16 < int(mirrored.sum()) < 48
    assert torch.equal(out, augment_images(images, AugmentConfig(flip=True), _generator()))
    assert not torch.equal(out, augment_images(images, AugmentConfig(flip=True), _generator(1)))


def test_a_full_square_crop_is_the_identity_and_a_small_one_zooms_inside_the_image():
    images = _ramp()
    whole = augment_images(images, AugmentConfig(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0]), _generator())
    assert torch.allclose(whole, images, atol=1e-4)
    quarter = augment_images(images, AugmentConfig(crop_scale=[0.25, 0.25], crop_ratio=[1.0, 1.0]), _generator())
    # Half the side, resized back: neighbouring columns differ by 1/2 (away from the window's edge columns,
    # whose samples may fall between the image's outermost pixel centre and its border), and no pixel
    # comes from outside the image.
    steps = (quarter[:, :, :, 1:] - quarter[:, :, :, :-1])[..., 1:-1]
    assert torch.allclose(steps, torch.full_like(steps, 0.5), atol=1e-4)
    assert float(quarter.min()) >= 0 and float(quarter.max()) <= 15
    assert len({round(float(x), 3) for x in quarter[:, 0, 0, 0]}) > 10  # windows in different places
    assert torch.allclose(quarter[:, :, 0, :], quarter[:, :, -1, :])  # the ramp has no vertical change


def test_crop_windows_follow_the_area_and_aspect_ranges():
    settings = AugmentConfig(crop_scale=[0.3, 0.6], crop_ratio=[0.5, 2.0])
    width, height = augmentation.crop_windows(torch.rand(10_000, 5, generator=_generator()), settings)
    area, ratio = width * height, width / height
    unclipped = (width < 1) & (height < 1)
    assert float(area[unclipped].min()) >= 0.3 - 1e-6 and float(area.max()) <= 0.6 + 1e-6
    assert float(ratio.min()) >= 0.5 - 1e-6 and float(ratio.max()) <= 2.0 + 1e-6
    assert float(ratio.log().mean()).__abs__() < 0.05  # log-uniform about 1


@pytest.mark.parametrize("override, message", [
    ("data.augment.crop_scale=[0.5]", "crop_scale: needs [min, max]"),
    ("data.augment.crop_scale=[0.6,0.5]", "crop_scale: needs [min, max]"),
    ("data.augment.crop_scale=[0,1]", "crop_scale: needs [min, max]"),
    ("data.augment.crop_ratio=[2,1]", "crop_ratio: needs [min, max]"),
])
def test_bad_augmentation_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("smoke", ["model.bias_head=conv", override])


def test_the_per_pixel_colour_head_refuses_augmentation():
    with pytest.raises(ConfigError, match="per-pixel colour head"):
        load_config("colored-mnist", ["data.augment.flip=true"])
    load_config("colored-mnist", ["data.augment.flip=true", "model.bias_head=conv"])


@pytest.mark.slow
def test_only_training_batches_are_augmented_and_augmentation_changes_training(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))
    calls = []
    real = augmentation.augment_batch
    monkeypatch.setattr(augmentation, "augment_batch", lambda *args: calls.append(1) or real(*args))
    evaluated = []
    real_evaluate = metrics.evaluate_split
    monkeypatch.setattr(engine, "evaluate_split", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    api.train(load_config("colored-mnist", AUGMENTED), tmp_path / "augmented")
    assert len(calls) == 3 * 4  # every training batch (64 / 16 per epoch), nothing else
    assert evaluated
    api.train(load_config("colored-mnist", AUGMENTED[:-2]), tmp_path / "plain")
    plain = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    augmented = load_checkpoint(tmp_path / "augmented" / "last.pt")["model"]
    assert any(not torch.equal(value, augmented[key]) for key, value in plain.items())


@pytest.mark.slow
def test_an_augmented_run_interrupted_and_resumed_ends_with_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "load_dataset", lambda config: tiny_dataset(n=64))

    class StopInEpoch2(engine.TrainCallbacks):
        def __init__(self, stop):
            self.stop = stop

        def on_epoch_start(self, epoch, epochs, phase, steps):
            if epoch == 2:
                self.stop.request("SIGINT", 130)

    config = load_config("colored-mnist", AUGMENTED)
    api.train(config, tmp_path / "straight")
    stop = engine.StopRequest()
    with pytest.raises(TrainingInterrupted):
        api.train(config, tmp_path / "cut", StopInEpoch2(stop), stop)
    api.resume(tmp_path / "cut")
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    for key, value in load_checkpoint(tmp_path / "cut" / "last.pt")["model"].items():
        assert torch.equal(value, straight[key]), key
