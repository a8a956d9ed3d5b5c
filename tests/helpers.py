"""Helpers shared by the test files (no test_*.py imports another): tiny synthetic biased datasets, image
batches and image files; the tiny "pets" manifest dataset on disk; `lnl` run as a subprocess or in this
process, and the checks of its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from lnl_cli.data.base import Batch, BiasedDataset, BiasedSplit
from lnl_cli.data.colored_mnist import NORMALISE_MEAN, NORMALISE_STD, color_bin_targets


def tiny_dataset(n: int = 64, classes: int = 10, seed: int = 0, with_val: bool = True) -> BiasedDataset:
    """Train (colour = class), test and validation (colour independent of the class) splits of n images."""
    generator = torch.Generator().manual_seed(seed)

    def split(biased: bool) -> BiasedSplit:
        labels = torch.randint(0, classes, (n,), generator=generator)
        bias = labels.clone() if biased else torch.randint(0, classes, (n,), generator=generator)
        stroke = (torch.rand(n, 1, 28, 28, generator=generator) > 0.7).to(torch.uint8)
        colors = (bias.float()[:, None] * 25 + torch.tensor([10.0, 60.0, 120.0])).clamp(1, 255).to(torch.uint8)
        images = stroke * colors[:, :, None, None]
        return BiasedSplit(images, labels, bias, color_bin_targets(images, 8))

    train, test = split(True), split(False)
    return BiasedDataset(train, test, classes, classes, 8, NORMALISE_MEAN, NORMALISE_STD, "tiny",
                         val=split(False) if with_val else None)


def image_batch(classes=2, bias_classes=3, size=64, n=8):
    """A fixed batch of random RGB images with `classes` labels and `bias_classes` bias values."""
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 3, size, size, generator=generator), torch.randint(0, classes, (n,), generator=generator),
                 torch.randint(0, bias_classes, (n,), generator=generator), None)


def save(image: torch.Tensor, path: Path) -> None:
    """C x H x W uint8 tensor to an image file (format from the suffix; 1 channel = grayscale)."""
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, quality=95)


# ------------------------------------------------------------------ the tiny "pets" manifest dataset on disk
COLORS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


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


# ------------------------------------------------------------------ running `lnl`
def lnl(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`lnl ARGS` in a fresh interpreter, as a user runs it (real exit codes, stdout and stderr)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LNL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lnl_cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def lnl_all(*commands: list[str], env: dict | None = None, timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Several `lnl` commands that do not depend on each other, each as `lnl(*command)`, all at once; their
    results in the order given. Most of such a command's time is importing torch, on one core."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(commands)) as pool:
        futures = [pool.submit(lnl, *command, env=env, timeout=timeout) for command in commands]
        return [future.result() for future in futures]


def lnl_in_process(*args: str) -> subprocess.CompletedProcess:
    """`lnl ARGS` in this process (so that a test can monkeypatch the core), as a CompletedProcess."""
    from typer.testing import CliRunner

    from lnl_cli.cli import app

    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error:"), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1, result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# ------------------------------------------------------------------ stdout that cannot be written (exit 74)
def lnl_to(stdout: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`lnl ARGS` with stdout on /dev/full ("full"), closed as by `>&-` ("closed"), or a pipe whose reader
    has gone ("broken-pipe"); stderr is captured."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LNL_DEBUG", None)
    command = [sys.executable, "-m", "lnl_cli", *args]
    run = dict(stderr=subprocess.PIPE, text=True, env=full_env, timeout=timeout)
    if stdout == "full":
        with open("/dev/full", "w") as full:
            return subprocess.run(command, stdout=full, **run)
    if stdout == "closed":
        return subprocess.run(command, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(1), **run)
    assert stdout == "broken-pipe"
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails with EPIPE
    try:
        return subprocess.run(command, stdout=write_end, **run)
    finally:
        os.close(write_end)


REASONS = {"full": "no space left on device", "closed": "stdout is closed", "broken-pipe": "broken pipe"}


def assert_output_error(result: subprocess.CompletedProcess, stdout: str) -> None:
    assert result.returncode == 74, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: cannot write the result to stdout"), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1, result.stderr
    assert REASONS[stdout] in lines[-1], result.stderr


PACKAGE = Path(__file__).resolve().parent.parent / "lnl_cli"


def package_copy_with(tmp_path: Path, module: str, source: str, registry: str,
                      edits: list[tuple[str, str]]) -> Callable[..., subprocess.CompletedProcess]:
    """A copy of the package (and its presets) under `tmp_path` with one new `module` (a path inside
    lnl_cli/) and its `registry` file edited by `edits` (old, new; each must match), and a function
    running `lnl ARGS...` on that copy in `tmp_path`: what proves a new component needs nothing else."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "lnl_cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE.parent / "presets", copy / "presets")
    (copy / "lnl_cli" / module).write_text(source)
    path = copy / "lnl_cli" / registry
    text = path.read_text()
    for old, new in edits:
        assert old in text, f"{registry} no longer holds {old!r}"
        text = text.replace(old, new)
    path.write_text(text)

    def lnl_on_copy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from lnl_cli.cli import main; main()", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                   **(env or {})})

    return lnl_on_copy
