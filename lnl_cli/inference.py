"""Models that leave the tool: raw images in, class probabilities out.

A trained algorithm expects normalised tensors and returns logits; a user has image files. The
:class:`ProbabilityModel` closes that gap inside the network (normalisation, the algorithm's own
input transform such as Gray's luma, softmax), so that an exported TorchScript or ONNX file and
``lnl predict`` give the same numbers as ``lnl evaluate``.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from lnl_cli.algorithms import Algorithm
from lnl_cli.checkpoint import checkpoint_config, load_checkpoint, restore_algorithm
from lnl_cli.data import DATASETS
from lnl_cli.data.images import quiet_large_images, read_image
from lnl_cli.errors import ConfigError, DataError, OutputError
from lnl_cli.export_formats import EXPORT_FORMATS
from lnl_cli.fileio import atomic_write
from lnl_cli.runtime import select_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PREDICT_BATCH_SIZE = 256
ONNX_OPSET = 18


class ProbabilityModel(nn.Module):
    """f then g of a trained algorithm, wrapped to take N x C x H x W images in [0, 1] (float) and
    return N x classes probabilities."""

    def __init__(self, algorithm: Algorithm):
        super().__init__()
        task = algorithm.task
        shape = (1, task.in_channels, 1, 1)
        self.algorithm = algorithm
        self.register_buffer("mean", torch.tensor(task.input_mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(task.input_std, dtype=torch.float32).view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.algorithm.predict((images - self.mean) / self.std)
        return torch.softmax(logits.float(), dim=1)


def probability_model(algorithm: Algorithm) -> ProbabilityModel:
    """Eval mode, fp32 and contiguous layout: what runs the same in every runtime."""
    algorithm.autocast_dtype = None
    algorithm.channels_last = False
    model = ProbabilityModel(algorithm.to(memory_format=torch.contiguous_format)).eval()
    model.requires_grad_(False)
    return model


@dataclass(frozen=True)
class InputShape:
    channels: int
    size: int

    def example(self, batch: int = 2) -> torch.Tensor:
        return torch.rand(batch, self.channels, self.size, self.size)


@dataclass
class LoadedModel:
    """A checkpoint ready to leave the tool: the wrapped model, the images it takes, its class names."""

    model: ProbabilityModel
    shape: InputShape
    class_names: tuple[str, ...]


def load_probability_model(path: Path, device: str | None = "cpu") -> LoadedModel:
    """The checkpoint at `path` as a :class:`ProbabilityModel`, with the input shape its data had."""
    checkpoint = load_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    algorithm = restore_algorithm(checkpoint, config, path).prepare(select_device(device or config.device))
    task = algorithm.task
    names = task.class_names or tuple(str(i) for i in range(task.num_classes))
    shape = InputShape(task.in_channels, DATASETS[config.data.type].image_size(config))
    return LoadedModel(probability_model(algorithm), shape, names)


def export_model(loaded: LoadedModel, fmt: str, out: Path) -> Path:
    """Write the model as TorchScript (traced) or ONNX (dynamic batch size) to `out`, atomically."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    model, example = loaded.model, loaded.shape.example()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks both exporters deprecated in favour of torch.export; the files they write are current.
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example), buffer)
        else:
            _export_onnx(model, example, buffer)
    payload = buffer.getvalue()
    try:
        atomic_write(out, lambda handle: handle.write(payload))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _export_onnx(model: nn.Module, example: torch.Tensor, buffer: io.BytesIO) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'lnl[onnx]'") from None
    torch.onnx.export(model, (example,), buffer, input_names=["images"], output_names=["probabilities"],
                      dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
                      opset_version=ONNX_OPSET, dynamo=False)


# ---------------------------------------------------------------------------- predict


def find_images(sources: Iterable[str | Path], path_column: str = "path") -> list[Path]:
    """Image files named directly, found (recursively, sorted) in folders, or listed in a CSV's
    `path_column` (relative to the CSV's folder)."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif source.suffix.lower() == ".csv":
            found += _csv_paths(source, path_column)
        elif source.is_file():
            found.append(source)
        else:
            raise DataError(f"no such image, folder or CSV: {source}")
    if not found:
        raise DataError("no images found in " + ", ".join(map(str, sources)))
    return found


def _csv_paths(path: Path, column: str) -> list[Path]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                raise DataError(f"{path}: no '{column}' column (columns: {', '.join(reader.fieldnames or [])})")
            rows = []
            for row in reader:
                cell = (row.get(column) or "").strip()
                if not cell:  # dropping it would shift every later prediction against the input's rows
                    raise DataError(f"{path} line {reader.line_num}: the '{column}' cell is empty; every row must "
                                    "name an image (predictions are one row per input row)")
                rows.append(cell)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return [p if p.is_absolute() else path.parent / p for p in map(Path, rows)]


def load_images(paths: list[Path], size: int, channels: int) -> torch.Tensor:
    """N x C x size x size floats in [0, 1], decoded and resized as the training data was."""
    with quiet_large_images():  # as when training data is decoded: every image is resized anyway
        images = torch.stack([_read(path, size) for path in paths]).float().div_(255.0)
    if channels != images.shape[1]:
        raise DataError(f"the model takes {channels}-channel images, the files decode to {images.shape[1]}")
    return images


def _read(path: Path, size: int) -> torch.Tensor:
    try:
        return read_image(path, size)
    except Exception as exc:  # any decoder failure is the file's fault
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}: {str(exc)[:160]})") from None


def predict_files(loaded: LoadedModel, paths: list[Path]) -> list[dict[str, object]]:
    """One row per image: its path, the predicted class and every class's probability."""
    model, size, channels, class_names = loaded.model, loaded.shape.size, loaded.shape.channels, loaded.class_names
    rows = []
    for start in range(0, len(paths), PREDICT_BATCH_SIZE):
        chunk = paths[start:start + PREDICT_BATCH_SIZE]
        with torch.no_grad():
            probabilities = model(load_images(chunk, size, channels).to(model.mean.device)).cpu()
        for path, p in zip(chunk, probabilities):
            best = int(p.argmax())
            rows.append({"path": str(path), "prediction": class_names[best], "confidence": round(float(p[best]), 6),
                         **{f"p_{name}": round(float(v), 6) for name, v in zip(class_names, p)}})
    return rows
