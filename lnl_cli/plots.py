"""PNG plots of runs and evaluation reports (optional extra: ``pip install lnl[plots]``).

matplotlib is imported lazily with the non-interactive Agg backend, so the rest of the tool
works without it and no display is ever needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lnl_cli import run_folder
from lnl_cli.errors import ConfigError
from lnl_cli.fileio import atomic_write, output_errors

LOSS_KEYS = ("label_loss", "bias_loss", "neg_entropy", "confusion")
ACCURACY_KEYS = ("test_accuracy", "test_aligned_accuracy", "test_conflicting_accuracy",
                 "test_worst_group_accuracy", "test_bias_head_accuracy")
FIGURE_SIZE = (7.0, 4.5)
DPI = 110


class PlotsUnavailable(ConfigError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'lnl[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with output_errors(path):
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def plot_training(run_dir: Path) -> list[Path]:
    """losses.png and accuracy.png from a run's metrics.jsonl."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    if not run_folder.metrics_path(run_dir).is_file():
        return []
    records = run_folder.read_metrics(run_dir)
    if not records:
        return []
    written = []
    for name, keys, ylabel in ((run_folder.LOSSES_PLOT, LOSS_KEYS, "loss (epoch mean)"),
                               (run_folder.ACCURACY_PLOT, ACCURACY_KEYS, "accuracy (unbiased test set)")):
        fig, ax = plt.subplots(figsize=FIGURE_SIZE)
        for key in keys:
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=key.removeprefix("test_"))
        _shade_warm_up(ax, records)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{run_dir.name}: {ylabel.split(' (')[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, run_dir / name))
        plt.close(fig)
    return written


def _shade_warm_up(ax, records: list[dict[str, Any]]) -> None:
    warm = [r["epoch"] for r in records if r.get("phase") == "warm-up"]
    if warm and len(warm) < len(records):
        ax.axvspan(0.5, max(warm) + 0.5, color="gray", alpha=0.12, label="warm-up")


def _axis_names(cells: list[dict[str, Any]], axis: str, count: int) -> list[str]:
    """Tick labels of one axis: the data's names (manifests, CelebA) or the indices."""
    names = [str(i) for i in range(count)]
    for cell in cells:
        if f"{axis}_name" in cell:
            names[cell[axis]] = cell[f"{axis}_name"]
    return names


def plot_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """confusion_matrix.png and cell_accuracy.png (label x bias: a shortcut shows as bright aligned cells, the
    diagonal for Colored-MNIST). Axes carry class and bias names when the data has them."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    confusion = report["confusion_matrix"]
    cells = report["cells"]
    labels = 1 + max(c["label"] for c in cells)
    biases = 1 + max(c["bias"] for c in cells)
    grid = [[float("nan")] * biases for _ in range(labels)]
    for cell in cells:
        if cell["accuracy"] is not None:
            grid[cell["label"]][cell["bias"]] = cell["accuracy"]
    label_names = _axis_names(cells, "label", labels)
    bias_names = _axis_names(cells, "bias", biases)
    written = []
    for name, matrix, title, xlabel, x_names, vmax in (
            ("confusion_matrix.png", confusion, "label confusion matrix", "predicted label", label_names, None),
            ("cell_accuracy.png", grid, "accuracy per (label, bias) cell", "bias", bias_names, 1.0)):
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax)
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_xticks(range(len(matrix[0])), x_names, rotation=90 if len(x_names) > 4 else 0)
        ax.set_yticks(range(len(matrix)), label_names)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("true label")
        ax.set_title(f"{title}\n{report['method']}: accuracy {report['accuracy']:.3f}")
        written.append(_save(fig, out_dir / name))
        plt.close(fig)
    return written
