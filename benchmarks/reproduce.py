"""Reproduce the paper's Colored-MNIST table: baseline, LNL, Gray and BlindEye over sigma^2 values and seeds.

Prints a markdown table of unbiased test accuracy (mean ± std over seeds) beside the paper's
numbers, with the wall time per run; writes every run folder under --out.

    python benchmarks/reproduce.py --color-vars 0.020 --seeds 0 --out runs/reproduce
    python benchmarks/reproduce.py --preset colored-mnist-paper --color-vars 0.020 0.030 0.040 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from lnl_cli import load_config, train
from lnl_cli.config import SPECS, from_dict, get_value
from lnl_cli.engine import RESUME_SAFE_KEYS
from lnl_cli.engine import TrainCallbacks

PAPER = {  # official README, unbiased test accuracy
    "baseline": {0.020: .4055, 0.025: .4813, 0.030: .5996, 0.035: .6626, 0.040: .7333, 0.045: .7973, 0.050: .8450},
    "lnl": {0.020: .8185, 0.025: .8854, 0.030: .9137, 0.035: .9306, 0.040: .9406, 0.045: .9555, 0.050: .9618},
}


class EpochLog(TrainCallbacks):
    def __init__(self, tag: str):
        self.tag = tag

    def on_epoch_end(self, record):
        print(f"[{self.tag}] epoch {record['epoch']} {record['phase']} "
              f"acc={record.get('test_accuracy', float('nan')):.4f} ({record['seconds']:.1f}s)",
              file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="colored-mnist")
    parser.add_argument("--methods", nargs="+", default=["baseline", "lnl", "gray", "blind_eye"],
                        help="any of baseline, lnl, gray, blind_eye")
    parser.add_argument("--color-vars", nargs="+", type=float, default=[0.020])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", dest="common", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--baseline-set", nargs="*", default=[], help="overrides for baseline and gray runs")
    parser.add_argument("--lnl-set", nargs="*", default=[], help="overrides for lnl and blind_eye runs")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--json", type=Path, help="also write all results as JSON here")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a finished run folder under --out whose stored config matches, instead of "
                             "training it again (e.g. to add methods to an earlier report)")
    return parser.parse_args(argv)


def run_all(args) -> list[dict]:
    results = []
    for color_var in args.color_vars:
        for method in args.methods:
            extra = args.lnl_set if method in ("lnl", "blind_eye") else args.baseline_set
            for seed in args.seeds:
                overrides = [*args.common, *extra, f"method={method}", f"data.color_var={color_var}", f"seed={seed}"]
                config = load_config(args.preset, overrides)
                out = args.out / f"{method}-var{color_var:.3f}-seed{seed}"
                summary = finished_run(out, config) if args.reuse else None
                if summary is None:
                    started = time.perf_counter()
                    summary = train(config, out, EpochLog(f"{method} var={color_var} seed={seed}"))
                    summary["seconds"] = time.perf_counter() - started
                results.append({"method": method, "color_var": color_var, "seed": seed,
                                "seconds": summary["seconds"], "overrides": overrides,
                                "epochs": config.train.epochs, "pretrain_epochs": config.train.pretrain_epochs,
                                **{k: summary["test"][k] for k in ("accuracy", "aligned_accuracy",
                                                                   "conflicting_accuracy")},
                                "run_dir": str(out)})
    return results


def finished_run(out: Path, config) -> dict | None:
    """The summary of a finished run in `out` trained with `config`, else None. Keys that do not change what
    is trained (threads, device, data.root: the resume-safe keys, train.epochs aside) may differ."""
    summary_path, config_path = out / "summary.json", out / "config.yaml"
    if not (summary_path.is_file() and config_path.is_file()):
        return None
    stored = load_config(None, {}, base=from_dict(yaml.safe_load(config_path.read_text())))
    free = RESUME_SAFE_KEYS - {"train.epochs"}
    same = all(get_value(stored, key) == get_value(config, key) for key in SPECS if key not in free)
    return json.loads(summary_path.read_text()) if same else None


def markdown(results: list[dict]) -> str:
    lines = ["| method | σ² | seeds | unbiased acc (mean ± std) | paper | Δ vs paper | aligned | conflicting "
             "| wall time / run |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["color_var"]), []).append(r)
    for (method, color_var), runs in groups.items():
        acc = [r["accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        paper = PAPER.get(method, {}).get(round(color_var, 3))
        delta = f"{statistics.fmean(acc) - paper:+.4f}" if paper is not None else "-"
        lines.append(
            f"| {method} | {color_var:.3f} | {len(runs)} | {statistics.fmean(acc):.4f} ± {std:.4f} | "
            f"{paper if paper is not None else '-'} | {delta} | "
            f"{statistics.fmean(r['aligned_accuracy'] for r in runs):.4f} | "
            f"{statistics.fmean(r['conflicting_accuracy'] for r in runs):.4f} | "
            f"{statistics.fmean(r['seconds'] for r in runs) / 60:.1f} min |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> Path | None:
    """Unbiased accuracy versus sigma^2 per method (mean over seeds), beside the paper's curves we have."""
    try:
        from lnl_cli.plots import _pyplot, _save
        plt = _pyplot()
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, method in enumerate(dict.fromkeys(r["method"] for r in results)):
        color = f"C{index}"
        points = {}
        for r in results:
            if r["method"] == method:
                points.setdefault(r["color_var"], []).append(r["accuracy"])
        xs = sorted(points)
        ax.plot(xs, [statistics.fmean(points[x]) for x in xs], "o-", color=color, label=f"{method} (measured)")
        if method in PAPER:
            paper_xs = sorted(PAPER[method])
            ax.plot(paper_xs, [PAPER[method][x] for x in paper_xs], "--", color=color, alpha=0.6,
                    label=f"{method} (paper)")
    ax.set_xlabel("colour variance σ²")
    ax.set_ylabel("unbiased test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    args = parse_args(argv)
    results = run_all(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot(results, args.out / "accuracy_vs_variance.png")
    report = ["# Colored-MNIST reproduction\n", f"preset `{args.preset}`, common overrides `{' '.join(args.common)}`",
              f"baseline overrides `{' '.join(args.baseline_set)}`, lnl overrides `{' '.join(args.lnl_set)}`\n",
              table, ""]
    if figure:
        report.append(f"![accuracy vs variance]({figure.name})")
    (args.out / "report.md").write_text("\n".join(report) + "\n")
    print(table)


if __name__ == "__main__":
    main()
