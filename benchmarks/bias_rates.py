"""The "which method when" table: benchmarks/utkface.py reports at several bias rates, joined.

One row per method and bias rate: balanced accuracy, the balanced split's worst group, relative
leakage and training minutes (mean +- 95% half-width over seeds, as each report has them), and a plot
of the worst group against the rate. Every figure is read from the reports; nothing is recomputed.

    python benchmarks/bias_rates.py --reports runs/r100/report.json runs/r99/report.json runs/r95/report.json \\
        --out benchmarks/results/bias-rates
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (("balanced", "balanced accuracy"), ("balanced_worst_group", "worst group (balanced)"),
           ("relative_leakage", "relative leakage"), ("train_minutes", "minutes a run"))


def load(paths: list[Path]) -> list[dict[str, Any]]:
    """The reports, highest bias rate first."""
    reports = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"no report at {path} (run benchmarks/utkface.py first)")
        reports.append(json.loads(path.read_text()))
    return sorted(reports, key=lambda report: -report.get("bias_rate", 1.0))


def _cell(summary: dict[str, Any] | None, digits: int) -> str:
    if not summary:
        return "-"
    half = summary.get("half_width")
    return f"{summary['mean']:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "") \
        + f" (n={summary['n']})"


def markdown(reports: list[dict[str, Any]]) -> str:
    lines = ["| bias rate | method | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for report in reports:
        for key, cell in report["summaries"].items():
            method = key.split("/", 1)[1]
            lines.append(f"| {report.get('bias_rate', 1.0)} | {method} | " + " | ".join(
                _cell(cell.get(column), 1 if column == "train_minutes" else 3) for column, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    """Worst-group accuracy on the balanced split against the bias rate, one line per method."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(key.split("/", 1)[1] for report in reports for key in report["summaries"]))
    figure, axis = plt.subplots(figsize=(6, 4))
    for index, method in enumerate(methods):
        points = [(report.get("bias_rate", 1.0), cell["balanced_worst_group"]) for report in reports
                  for key, cell in report["summaries"].items()
                  if key.split("/", 1)[1] == method and cell.get("balanced_worst_group")]
        if not points:
            continue
        offset = (index - len(methods) / 2) * 0.0008  # side by side, so the intervals do not hide each other
        axis.errorbar([rate + offset for rate, _ in points], [s["mean"] for _, s in points],
                      yerr=[s["half_width"] or 0 for _, s in points], marker="o", capsize=3, label=method)
    axis.set_xlabel("bias rate of the training split (share of bias-aligned images)")
    axis.set_ylabel("worst-group accuracy, balanced test split")
    axis.invert_xaxis()  # from the extreme bias (1.0) towards milder bias
    axis.set_ylim(0.0, 1.0)
    axis.legend(fontsize=8)
    axis.set_title("UTKFace, age-biased gender: mean and 95% CI over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", nargs="+", type=Path, required=True, help="report.json of each utkface.py run")
    parser.add_argument("--out", type=Path, required=True, help="OUT.md and OUT.png are written")
    args = parser.parse_args(argv)
    reports = load(args.reports)
    text = markdown(reports)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    plot(reports, args.out.with_suffix(".png"))
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
