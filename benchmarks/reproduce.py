"""Reproduce the paper's Colored-MNIST table: baseline and LNL over sigma^2 values and seeds.

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

from lnl_cli import load_config, train
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
    parser.add_argument("--methods", nargs="+", default=["baseline", "lnl"])
    parser.add_argument("--color-vars", nargs="+", type=float, default=[0.020])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", dest="common", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--baseline-set", nargs="*", default=[], help="overrides for baseline runs only")
    parser.add_argument("--lnl-set", nargs="*", default=[], help="overrides for lnl runs only")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--json", type=Path, help="also write all results as JSON here")
    return parser.parse_args(argv)


def run_all(args) -> list[dict]:
    results = []
    for color_var in args.color_vars:
        for method in args.methods:
            extra = args.baseline_set if method == "baseline" else args.lnl_set
            for seed in args.seeds:
                overrides = [*args.common, *extra, f"method={method}", f"data.color_var={color_var}", f"seed={seed}"]
                config = load_config(args.preset, overrides)
                out = args.out / f"{method}-var{color_var:.3f}-seed{seed}"
                started = time.perf_counter()
                summary = train(config, out, EpochLog(f"{method} var={color_var} seed={seed}"))
                results.append({"method": method, "color_var": color_var, "seed": seed,
                                "seconds": time.perf_counter() - started, "overrides": overrides,
                                "epochs": config.train.epochs, "pretrain_epochs": config.train.pretrain_epochs,
                                **{k: summary["test"][k] for k in ("accuracy", "aligned_accuracy",
                                                                   "conflicting_accuracy")},
                                "run_dir": str(out)})
    return results


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


def main(argv=None) -> None:
    args = parse_args(argv)
    results = run_all(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
