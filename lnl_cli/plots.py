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
from lnl_cli.metric_names import BIAS_HEAD_ACCURACY, LABEL_METRICS
from lnl_cli.selection import VAL_PREFIX

LABEL_ACCURACY_KEYS = tuple(VAL_PREFIX + name for name in LABEL_METRICS)
BIAS_HEAD_KEY = VAL_PREFIX + BIAS_HEAD_ACCURACY
# Cells are annotated with their values up to this many rows and columns; beyond, text would not fit.
MAX_ANNOTATED = 16
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


def check_plots_available() -> None:
    """PlotsUnavailable now, before any work, when plots will be asked for and matplotlib is missing."""
    _pyplot()


def _save(fig, path: Path) -> Path:
    with output_errors(path):
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def plot_training(run_dir: Path, num_classes: int | None = None) -> list[Path]:
    """losses.png and accuracy.png from a run's metrics.jsonl. The accuracy plot has the label accuracies
    (with the chance line 1/num_classes when given) above and the bias head's accuracy on its own axis
    below: h's accuracy falling towards chance is the adversarial game working, not f getting worse.
    Nothing (and no matplotlib needed) before the first epoch has finished."""
    run_dir = Path(run_dir)
    if not run_folder.metrics_path(run_dir).is_file():
        return []
    records = run_folder.read_metrics(run_dir)
    if not records:
        return []
    plt = _pyplot()
    return [_plot_losses(plt, run_dir, records), _plot_accuracies(plt, run_dir, records, num_classes)]


def _plot_curves(ax, records: list[dict[str, Any]], keys: tuple[str, ...]) -> bool:
    drawn = False
    for key in keys:
        points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=key.removeprefix(VAL_PREFIX))
            drawn = True
    _shade_warm_up(ax, records)
    ax.grid(alpha=0.3)
    return drawn


def loss_keys() -> tuple[str, ...]:
    """Every registered method's losses (the registry loads torch: asked for only when plotting)."""
    from lnl_cli.algorithms import loss_names

    return tuple(loss_names())


def _plot_losses(plt, run_dir: Path, records: list[dict[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    _plot_curves(ax, records, loss_keys())
    ax.set(xlabel="epoch", ylabel="loss (epoch mean)", title=f"{run_dir.name}: loss")
    ax.legend(fontsize=8)
    path = _save(fig, run_dir / run_folder.LOSSES_PLOT)
    plt.close(fig)
    return path


def _plot_accuracies(plt, run_dir: Path, records: list[dict[str, Any]], num_classes: int | None) -> Path:
    has_head = any(r.get(BIAS_HEAD_KEY) is not None for r in records)
    fig, axes = plt.subplots(2 if has_head else 1, 1, sharex=True, squeeze=False,
                             figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * (1.5 if has_head else 1)),
                             gridspec_kw={"height_ratios": [2, 1]} if has_head else None)
    label_ax = axes[0][0]
    _plot_curves(label_ax, records, LABEL_ACCURACY_KEYS)
    if num_classes:
        label_ax.axhline(1 / num_classes, color="black", linestyle=":", linewidth=1,
                         label=f"chance (1/{num_classes})")
    label_ax.set(ylabel="label accuracy (validation split)", ylim=(0, 1.02), title=f"{run_dir.name}: accuracy")
    label_ax.legend(fontsize=8)
    if has_head:
        head_ax = axes[1][0]
        _plot_curves(head_ax, records, (BIAS_HEAD_KEY,))
        head_ax.set(ylabel="bias head h accuracy", ylim=(0, 1.02))
    axes[-1][0].set_xlabel("epoch")
    path = _save(fig, run_dir / run_folder.ACCURACY_PLOT)
    plt.close(fig)
    return path


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
    """confusion_matrix.png (each true label's row normalised to 1, so classes of any size compare) and
    cell_accuracy.png (accuracy per (label, bias) cell with its number of images: a shortcut shows as
    bright aligned cells, framed in red: the diagonal for Colored-MNIST). Axes carry class and bias names when the data
    has them; small matrices are annotated."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    cells = report["cells"]
    labels = 1 + max(c["label"] for c in cells)
    biases = 1 + max(c["bias"] for c in cells)
    accuracy = [[float("nan")] * biases for _ in range(labels)]
    counts = [[0] * biases for _ in range(labels)]
    for cell in cells:
        counts[cell["label"]][cell["bias"]] = cell["count"]
        if cell["accuracy"] is not None:
            accuracy[cell["label"]][cell["bias"]] = cell["accuracy"]
    label_names = _axis_names(cells, "label", labels)
    bias_names = _axis_names(cells, "bias", biases)
    confusion = _row_normalised(report["confusion_matrix"])
    cell_text = [[f"{a:.2f}\nn={n}" if n else "n=0" for a, n in zip(row_a, row_n)]
                 for row_a, row_n in zip(accuracy, counts)]
    confusion_text = [[f"{v:.2f}" for v in row] for row in confusion]
    written = []
    for name, matrix, text, title, xlabel, x_names in (
            ("confusion_matrix.png", confusion, confusion_text, "confusion matrix (rows sum to 1)",
             "predicted label", label_names),
            ("cell_accuracy.png", accuracy, cell_text, "accuracy per (label, bias) cell", "bias", bias_names)):
        fig, ax = plt.subplots(figsize=(5.5 + 0.25 * len(x_names), 4.8 + 0.2 * len(label_names)))
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, fraction=0.046)
        _annotate(ax, matrix, text)
        if name == "cell_accuracy.png":
            _outline(ax, cells)
        ax.set_xticks(range(len(matrix[0])), x_names, rotation=90 if len(x_names) > 4 else 0)
        ax.set_yticks(range(len(matrix)), label_names)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("true label")
        ax.set_title(f"{title}\n{report['method']}: accuracy {report['accuracy']:.3f}")
        written.append(_save(fig, out_dir / name))
        plt.close(fig)
    return written


def _row_normalised(matrix: list[list[int]]) -> list[list[float]]:
    return [[v / sum(row) if sum(row) else float("nan") for v in row] for row in matrix]


def _annotate(ax, matrix: list[list[float]], text: list[list[str]]) -> None:
    if len(matrix) > MAX_ANNOTATED or len(matrix[0]) > MAX_ANNOTATED:
        return
    size = 7 if max(len(matrix), len(matrix[0])) > 8 else 9
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "gray" if value != value else "white" if value < 0.5 else "black"  # NaN: an empty cell
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=size, color=color)


def _outline(ax, cells: list[dict[str, Any]]) -> None:
    """A frame around each aligned cell: the training set's shortcut."""
    from matplotlib.patches import Rectangle

    for cell in cells:
        if cell.get("aligned"):
            ax.add_patch(Rectangle((cell["bias"] - 0.5, cell["label"] - 0.5), 1, 1, fill=False, edgecolor="red",
                                   linewidth=1.5))
