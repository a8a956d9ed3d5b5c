"""Manifest path benchmark: Background-MNIST, baseline vs LNL, unbiased accuracy and bias leakage.

Builds the dataset (PNG files + CSVs + preset, see lnl_cli.tools.background_mnist), trains every
method on the preset's schedule, probes each checkpoint's features for the background colour and
prints a markdown table (also written to OUT/report.md).

    python benchmarks/background_mnist.py --data-root ../shared/data --out runs/background-mnist
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lnl_cli import load_config, train
from lnl_cli.probe import ProbeSettings, probe_checkpoint
from lnl_cli.tools import background_mnist


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--out", type=Path, default=Path("runs/background-mnist"))
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--methods", nargs="+", default=["baseline", "lnl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="overrides for every run")
    parser.add_argument("--probe-steps", type=int, default=ProbeSettings.steps,
                        help="optimizer steps of each leakage probe (default: probe-bias's)")
    parser.add_argument("--probe-seeds", type=int, default=ProbeSettings.seeds, help="probe seeds")
    args = parser.parse_args(argv)

    preset = args.out / "data" / "background-mnist.yaml"
    if not preset.is_file():
        background_mnist.build(args.data_root, args.out / "data", args.train_size, args.test_size)
    rows = ["| method | seed | unbiased acc | aligned | conflicting | worst group | leakage (linear probe) "
            "| MI ≥ (bits) | train time |", "|---|---|---|---|---|---|---|---|---|"]
    results = []
    for method in args.methods:
        for seed in args.seeds:
            run = args.out / f"{method}-seed{seed}"
            started = time.perf_counter()
            summary = train(load_config(preset, [f"method={method}", f"seed={seed}", *args.overrides]), run)
            seconds = time.perf_counter() - started
            probe = probe_checkpoint(run / "best.pt", settings=ProbeSettings(steps=args.probe_steps,
                                                                                seeds=args.probe_seeds))
            test = summary["test"]
            results.append({"method": method, "seed": seed, "test": test, "seconds": seconds,
                            "leakage": probe["leakage"], "mi_bits": probe["mi_lower_bound_bits"]})
            rows.append(f"| {method} | {seed} | {test['accuracy']:.4f} | {test['aligned_accuracy']:.4f} | "
                        f"{test['conflicting_accuracy']:.4f} | {test['worst_group_accuracy']:.4f} | "
                        f"{probe['leakage']['mean']:.4f} ± {probe['leakage']['std']:.4f} | "
                        f"{probe['mi_lower_bound_bits']['mean']:.3f} | {seconds / 60:.1f} min |")
    table = "\n".join(rows)
    (args.out / "report.md").write_text(f"# Background-MNIST\n\npreset `{preset}`\n\n{table}\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
