"""Manifest path benchmark: Background-MNIST, every method's unbiased accuracy and bias leakage over seeds.

Builds the dataset once (PNG files + CSVs + preset, see lnl_cli.tools.background_mnist; its validation
split has random colours like the test set), trains every method and seed on the preset's schedule
(`--set` for all runs, `--set-for METHOD KEY=VALUE ...` for one method's), selects each run's model on
validation (the preset's train.select), probes that model's features for the background colour, and
writes a markdown table with the mean and 95% interval over seeds of the accuracy, the leakage and the
leakage relative to the input ceiling (OUT/report.md, OUT/results.json).

A run whose folder already holds leakage.json is finished and reused, so several invocations (one per
method, side by side with train.num_threads=1) can fill the same OUT; the report covers every finished run
of the methods asked for.

    python benchmarks/background_mnist.py --data-root ../shared/data --out runs/background-mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stats.py lives beside this script
import stats  # noqa: E402
from arguments import add_method_overrides, method_overrides  # noqa: E402

from lnl_cli import load_config, train  # noqa: E402
from lnl_cli.algorithms import ALGORITHMS  # noqa: E402
from lnl_cli.probe import ProbeSettings, probe_checkpoint  # noqa: E402
from lnl_cli.tools import background_mnist, one_line_errors  # noqa: E402

LEAKAGE_FILE = "leakage.json"  # written last into a run folder: its presence marks the run finished
COLUMNS = ("unbiased acc", "conflicting", "leakage (linear probe)", "relative leakage", "MI ≥ (bits)",
           "train time")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--out", type=Path, default=Path("runs/background-mnist"))
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--methods", nargs="+", default=["baseline", "lnl"], choices=sorted(ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="overrides for every run")
    add_method_overrides(parser)
    parser.add_argument("--probe-steps", type=int, default=ProbeSettings.steps,
                        help="optimizer steps of each leakage probe (default: probe-bias's)")
    parser.add_argument("--probe-seeds", type=int, default=ProbeSettings.seeds, help="probe seeds")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    args = parser.parse_args(argv)
    args.per_method = method_overrides(parser, args.method_overrides, ALGORITHMS)
    return args


def run_one(preset: Path, run: Path, method: str, seed: int, overrides: list[str], probe: ProbeSettings) -> dict:
    """Train (into a fresh folder: an unfinished one is removed first), probe, write leakage.json."""
    if run.exists():
        print(f"{run}: unfinished, trained again", file=sys.stderr)
        shutil.rmtree(run)
    started = time.perf_counter()
    summary = train(load_config(preset, [f"method={method}", f"seed={seed}", *overrides]), run)
    seconds = time.perf_counter() - started
    leak = probe_checkpoint(run / "best.pt", settings=probe)
    record = {"method": method, "seed": seed, "overrides": overrides, "test": summary["test"],
              "selected": summary.get("selected"), "seconds": seconds, "leakage": leak["leakage"],
              "relative_leakage": leak.get("relative_leakage"), "input_ceiling": leak.get("input_ceiling"),
              "mi_bits": leak["mi_lower_bound_bits"]}
    (run / LEAKAGE_FILE).write_text(json.dumps(record, indent=2))
    return record


def _interval(values: list[float]) -> str:
    s = stats.summarize(values)
    if s.half_width is None:
        return f"{s.mean:.4f} (n=1)"
    return f"**{s.mean:.4f} ± {s.half_width:.4f}** ({s.low:.3f}–{s.high:.3f})"


def report(results: list[dict]) -> str:
    """One row per run, then per method the mean ± 95% half-width (Student's t over seeds) and interval."""
    rows = ["| method | seed | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in results:
        relative = (r["relative_leakage"] or {}).get("mean")
        rows.append(f"| {r['method']} | {r['seed']} | {r['test']['accuracy']:.4f} | "
                    f"{r['test']['conflicting_accuracy']:.4f} | {r['leakage']['mean']:.4f} | "
                    f"{'—' if relative is None else f'{relative:.4f}'} | {r['mi_bits']['mean']:.3f} | "
                    f"{r['seconds'] / 60:.1f} min |")
    for method in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == method]
        relative = [(r["relative_leakage"] or {}).get("mean") for r in runs]
        rows.append(f"| **{method}, mean** | {', '.join(str(r['seed']) for r in runs)} | "
                    f"{_interval([r['test']['accuracy'] for r in runs])} | "
                    f"{_interval([r['test']['conflicting_accuracy'] for r in runs])} | "
                    f"{_interval([r['leakage']['mean'] for r in runs])} | "
                    f"{'—' if None in relative else _interval(relative)} | "
                    f"{_interval([r['mi_bits']['mean'] for r in runs])} | |")
    return "\n".join(rows)


@one_line_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    preset = args.out / "data" / "background-mnist.yaml"
    if not preset.is_file() and not args.report_only:
        background_mnist.build(args.data_root, args.out / "data", args.train_size, args.test_size,
                               val_size=args.val_size)
    probe = ProbeSettings(steps=args.probe_steps, seeds=args.probe_seeds)
    results = []
    for method in args.methods:
        for seed in args.seeds:
            run = args.out / f"{method}-seed{seed}"
            if (run / LEAKAGE_FILE).is_file():
                results.append(json.loads((run / LEAKAGE_FILE).read_text()))
            elif not args.report_only:
                overrides = [*args.overrides, *args.per_method.get(method, [])]
                results.append(run_one(preset, run, method, seed, overrides, probe))
    table = report(results)
    (args.out / "report.md").write_text(f"# Background-MNIST\n\npreset `{preset}`\n\n{table}\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
