"""Background-MNIST: a manifest dataset (PNG files + CSVs + preset) to try `data.type: manifest` on.

White MNIST digits on a coloured background. In the training CSV the background colour follows the
digit (with probability --correlation, else a random colour); in the test CSV it is drawn
independently, so a model that learnt the colour shortcut fails there. The validation CSV holds
--val-size further MNIST training digits (none of them in train.csv) with random colours, like the
test set: with the colour the digit's in every training image, a validation split cut from train.csv
would reward the shortcut, so runs are selected on this one (train.select: val_accuracy).

    python -m lnl_cli.tools.background_mnist --data-root ../shared/data --out ~/lnl-data/background-mnist
    lnl train --preset ~/lnl-data/background-mnist/background-mnist.yaml method=lnl
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from lnl_cli.errors import ConfigError
from lnl_cli.tools import one_line_errors

# Ten well-separated background colours (RGB 0-255), one per digit in the training set.
PALETTE = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "magenta": (200, 40, 200), "cyan": (40, 200, 210), "orange": (240, 140, 30), "purple": (110, 50, 160),
    "olive": (120, 130, 40), "gray": (128, 128, 128),
}
PALETTE_INDEX = {name: index for index, name in enumerate(PALETTE)}  # digit i sits on colour i in training
COLOR_JITTER = 12.0   # std of per-image colour noise (0-255 scale): backgrounds are not one flat value
IMAGE_SIZE = 28
# The preset's validation entry; a build with --val-size 0 has none and tests its final model.
VAL_LINE = "  val: val.csv             # held-out training digits, colours random as in the test set\n"

PRESET = """\
# Background-MNIST ({train_size} train / {val_size} validation / {test_size} test images), made by
# lnl_cli.tools.background_mnist. White digits on a coloured background; in train.csv the colour follows
# the digit ({correlation:.0%}), in val.csv (held-out training digits) and test.csv it is random. Unbiased test accuracy shows whether a model learnt digits or colours.
#   lnl train --preset {preset} method=baseline
#   lnl train --preset {preset} method=lnl
# The bias fills the whole image, so h predicts it at every feature position (bias_head: spatial) and
# f gets the reversed gradient at full scale (grl_scale 1.0, lambda 0.1) from the first epoch: Colored-
# MNIST's 0.1 / 0.01 after a warm-up leaves the colour in f here (sweep in benchmarks/RESULTS.md).
data:
  type: manifest
  root: .
  train: train.csv
{val_line}  test: test.csv
  columns: {{path: path, label: label, bias: background}}
  image_size: {image_size}
  classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  bias_classes: [{colors}]
model:
  backbone: paper_convnet
  bias_head: spatial
  bias_head_width: 64
lnl:
  grl_scale: 1.0
  lambda: 0.1
train:
  epochs: 30
  pretrain_epochs: 0
  lr_decay_epochs: 20
  pretrain_lr_decay_epochs: 20
  select: {select}
"""


def compose(digits: torch.Tensor, colors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 N x 3 x 28 x 28: the background colour (jittered per image) blended with a white stroke."""
    palette = torch.tensor(list(PALETTE.values()), dtype=torch.float32)
    background = palette[colors] + torch.randn(len(colors), 3, generator=generator) * COLOR_JITTER
    alpha = digits.float().div(255.0).unsqueeze(1)                      # N x 1 x H x W stroke opacity
    images = background[:, :, None, None] * (1 - alpha) + 255.0 * alpha
    return images.clamp(0, 255).round().to(torch.uint8)


def background_indices(labels: torch.Tensor, correlation: float | None, generator: torch.Generator) -> torch.Tensor:
    """The digit's colour with probability `correlation`, else uniform; None: always uniform (test)."""
    random_colors = torch.randint(0, len(PALETTE), labels.shape, generator=generator)
    if correlation is None:
        return random_colors
    follows = torch.rand(labels.shape, generator=generator) < correlation
    return torch.where(follows, labels, random_colors)


def write_split(out: Path, name: str, digits: torch.Tensor, labels: torch.Tensor, colors: torch.Tensor,
                generator: torch.Generator) -> None:
    from PIL import Image

    folder = out / "images" / name
    folder.mkdir(parents=True, exist_ok=True)
    images = compose(digits, colors, generator)
    names = list(PALETTE)
    with (out / f"{name}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "background"])
        for i, (image, label, color) in enumerate(zip(images, labels.tolist(), colors.tolist())):
            relative = Path("images") / name / f"{i:05d}.png"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(out / relative)
            writer.writerow([relative.as_posix(), label, names[color]])


def build(mnist_root: Path, out: Path, train_size: int, test_size: int, correlation: float = 1.0,
          seed: int = 0, val_size: int = 2000) -> Path:
    """Write images, train.csv, val.csv, test.csv and background-mnist.yaml into `out`; return the preset's
    path. MNIST is read before anything is written, so a missing MNIST leaves no folder behind; the preset
    is written last, so a folder without it is an unfinished build. The validation split is drawn last,
    from the training digits after the first `train_size` of the same permutation, so train.csv and
    test.csv are those of a build without it (the same seed gives the same files as before it existed)."""
    from lnl_cli.data.colored_mnist import load_mnist

    sources = {train: load_mnist(mnist_root, train, download=False) for train in (True, False)}
    if train_size + val_size > len(sources[True][1]):
        raise ConfigError(f"--train-size {train_size} + --val-size {val_size} exceed the "
                         f"{len(sources[True][1])} MNIST training digits")
    generator = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, train, size, corr in (("train", True, train_size, correlation), ("test", False, test_size, None)):
        digits, labels = sources[train]
        order = torch.randperm(len(labels), generator=generator)
        if train:
            held_out = order[train_size:train_size + val_size]
        pick = order[:size]
        write_split(out, name, digits[pick], labels[pick], background_indices(labels[pick], corr, generator),
                    generator)
    if val_size:
        digits, labels = sources[True]
        write_split(out, "val", digits[held_out], labels[held_out],
                    background_indices(labels[held_out], None, generator), generator)
    preset = out / "background-mnist.yaml"
    preset.write_text(PRESET.format(train_size=train_size, val_size=val_size, test_size=test_size,
                                    correlation=correlation, preset=preset, image_size=IMAGE_SIZE,
                                    val_line=VAL_LINE if val_size else "",
                                    select="val_accuracy" if val_size else "last",
                                    colors=", ".join(PALETTE)))
    return preset


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=2000,
                        help="held-out training digits with random colours, for choosing the model")
    parser.add_argument("--correlation", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.data_root, args.out, args.train_size, args.test_size, args.correlation, args.seed,
                args.val_size))


if __name__ == "__main__":
    main()
