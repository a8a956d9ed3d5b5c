"""The paper's face experiment on UTKFace's real photographs: EB1 -> EB2 and EB2 -> EB1.

For every direction, method and seed: `lnl train` on one extreme-bias split (the model is selected on
the preset's validation split, val_balanced.csv), its test set the opposite split (every image conflicts
with the shortcut); then `lnl evaluate` and `lnl probe-bias` on the balanced split, where age and gender
are independent. `--bias age_bin` makes the builder's 12 fine-grained age bins the bias (what h predicts
and the probe reads); the worst group is then still taken over gender x age group (the bins pooled), so
both targets report the same groups. Each
step writes its JSON into the run folder, so an interrupted benchmark picks up where it stopped (an
unfinished training run is resumed). The report gives mean +- 95% CI over seeds and a plot.

    python -m lnl_cli.tools.utkface --images ../shared/data/utkface/crop_part1 --out ~/lnl-data/utkface
    python benchmarks/utkface.py --out runs/utkface --jobs 2 --threads 1     # 18 runs, ~1 h on 2 cores
    python benchmarks/utkface.py --out runs/utkface --report-only
    python benchmarks/utkface.py --out runs/utkface-pre --bias age_bin --methods baseline lnl \
        --set model.backbone=efficientnet_lite0 model.pretrained=imagenet --set-for lnl lnl.lambda=0.1

--methods takes registered methods and the named VARIANTS below (a method plus its overrides), e.g.
group_balanced = baseline with train.sampler=group_balanced. --data-root points at a build made with
--bias-rate R < 1 (its counts.json says R): such a build has no opposite split, so the test split is then
balanced_test.csv and the report's opposite column is empty.

    python -m lnl_cli.tools.utkface --images ../shared/data/utkface/crop_part1 --out ~/lnl-data/utkface-r95 \
        --bias-rate 0.95
    python benchmarks/utkface.py --out runs/r95 --data-root ~/lnl-data/utkface-r95 --directions eb1 \
        --methods erm group_balanced group_dro lnl lnl_conditional --set train.select=val_worst_group_accuracy ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats  # noqa: E402
from arguments import add_method_overrides, method_overrides  # noqa: E402
from reproduce import cpu_model, native_bf16  # noqa: E402

from lnl_cli.algorithms import ALGORITHMS  # noqa: E402
from lnl_cli.tools.utkface import AGE_BIN_GROUPS, AGE_BINS, COUNTS_FILE  # noqa: E402

DIRECTIONS = {"eb1": "EB1 -> EB2", "eb2": "EB2 -> EB1"}
BALANCED_SPLIT = "balanced_test.csv"
SUMMARY, BALANCED, PROBE = "summary.json", "balanced.json", "probe_balanced.json"
# What the bias head predicts and the probe reads: the preset's binary age group, or the 12 age bins.
# Named variants: (registered method, its overrides). A registered method's own name is the method alone.
VARIANTS = {"erm": ("baseline", []),
            "group_balanced": ("baseline", ["train.sampler=group_balanced"]),
            "lnl_conditional": ("lnl", ["lnl.conditional=true"])}
BIAS_TARGETS = {"age_group": [], "age_bin": ["data.columns.bias=age_bin", f"data.bias_classes=[{','.join(AGE_BINS)}]"]}


def age_group_of(bias_name: str) -> str:
    """young or old for an age_group or age_bin value (the builder owns which bin is which)."""
    if bias_name in ("young", "old"):
        return bias_name
    group = AGE_BIN_GROUPS.get(bias_name)
    if group is None:
        raise ValueError(f"age bin {bias_name} is neither young nor old")
    return group


def variant(name: str) -> tuple[str, list[str]]:
    """The registered method and overrides that --methods' `name` stands for."""
    return VARIANTS.get(name, (name, []))


def build_bias_rate(data_root: Path | None) -> float:
    """The --bias-rate a UTKFace build was made with (its counts.json; 1.0 for builds older than the key)."""
    if data_root is None:
        return 1.0
    path = data_root.expanduser() / COUNTS_FILE
    if not path.is_file():
        raise SystemExit(f"--data-root {data_root}: no {COUNTS_FILE} (build it with python -m lnl_cli.tools.utkface)")
    return float(json.loads(path.read_text()).get("bias_rate", 1.0))


def worst_age_group_accuracy(cells: list[dict[str, Any]]) -> float | None:
    """The lowest accuracy over (gender, age group) of an evaluation's (label, bias) cells, bins pooled."""
    pooled: dict[tuple[str, str], list[int]] = {}
    for cell in cells:
        if cell["count"]:
            counts = pooled.setdefault((cell["label_name"], age_group_of(cell["bias_name"])), [0, 0])
            counts[0] += cell["correct"]
            counts[1] += cell["count"]
    return min(correct / count for correct, count in pooled.values()) if pooled else None


@dataclass(frozen=True)
class RunSpec:
    direction: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.direction}-{self.method}-seed{self.seed}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/utkface"))
    parser.add_argument("--directions", nargs="+", choices=list(DIRECTIONS), default=list(DIRECTIONS))
    parser.add_argument("--methods", nargs="+", default=["baseline", "lnl", "blind_eye"],
                        choices=sorted({*ALGORITHMS, *VARIANTS}), help="registered methods and named variants")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the UTKFace build to train on (data.root; default the preset's ~/lnl-data/utkface)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (give each --threads)")
    parser.add_argument("--threads", type=int, default=None, help="train.num_threads of every run")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides for every run, key=value")
    add_method_overrides(parser)
    parser.add_argument("--bias", choices=list(BIAS_TARGETS), default="age_group",
                        help="the bias column: the preset's age_group or the 12 age bins (age_bin)")
    parser.add_argument("--report-only", action="store_true", help="only join the finished runs into the report")
    args = parser.parse_args(argv)
    args.per_method = method_overrides(parser, args.method_overrides, {*ALGORITHMS, *VARIANTS})
    args.bias_rate = build_bias_rate(args.data_root)
    args.data = ([f"data.root={args.data_root.expanduser()}"] if args.data_root else []) \
        + ([] if args.bias_rate >= 1 else [f"data.test={BALANCED_SPLIT}"])
    return args


def lnl(arguments: list[str], threads: int | None) -> dict[str, Any]:
    """One `lnl` command with --json; its JSON result (a failed command stops the benchmark with its error)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    done = subprocess.run([sys.executable, "-m", "lnl_cli", *arguments, "--json"], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise SystemExit(f"lnl {' '.join(arguments)} failed (exit {done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return json.loads(done.stdout)


def execute(spec: RunSpec, args: argparse.Namespace) -> None:
    """Train (or resume), then evaluate and probe on the balanced split; each step skipped when done."""
    run = args.out / spec.name
    threads = [f"train.num_threads={args.threads}"] if args.threads else []
    if not (run / SUMMARY).is_file():
        if (run / "last.pt").is_file():
            lnl(["train", "--resume", str(run)], args.threads)
        else:
            method, variant_overrides = variant(spec.method)
            lnl(["train", "--preset", f"utkface-{spec.direction}", "--out", str(run), f"method={method}",
                 f"seed={spec.seed}", *threads, *BIAS_TARGETS[args.bias], *args.data, *args.set,
                 *variant_overrides, *args.per_method.get(spec.method, [])], args.threads)
    overrides = [f"data.test={BALANCED_SPLIT}", *threads]
    for name, command in ((BALANCED, "evaluate"), (PROBE, "probe-bias")):
        if not (run / name).is_file():
            result = lnl([command, "--checkpoint", str(run), *overrides], args.threads)
            (run / name).write_text(json.dumps(result, indent=1))
    print(f"done {spec.name}", file=sys.stderr, flush=True)


def read(run: Path, has_opposite: bool = True) -> dict[str, Any] | None:
    if not all((run / name).is_file() for name in (SUMMARY, BALANCED, PROBE)):
        return None
    summary, balanced, probe = (json.loads((run / name).read_text()) for name in (SUMMARY, BALANCED, PROBE))
    relative = probe.get("relative_leakage") or {}
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    return {"threads": ((config or {}).get("train") or {}).get("num_threads"),
            "opposite": summary["test"]["accuracy"] if has_opposite else None,
            "balanced": balanced["accuracy"],
            "balanced_worst_group": worst_age_group_accuracy(balanced["cells"]),
            "leakage": probe["leakage"]["mean"], "relative_leakage": relative.get("mean"),
            "ceiling": probe["input_ceiling"]["mean"], "train_minutes": summary["train_seconds"] / 60,
            "selected_epoch": summary["selected"]["epoch"], "images_per_second": summary["train_images_per_second"],
            # what settings are chosen by: the selection metric's best validation value (never a test figure)
            "validation": summary["selected"].get("value")}


COLUMNS = ("validation", "opposite", "balanced", "balanced_worst_group", "leakage", "relative_leakage",
           "train_minutes")


def report(args: argparse.Namespace, specs: list[RunSpec]) -> dict[str, Any]:
    rows: dict[str, dict[str, list[float]]] = {}
    per_run = {}
    for spec in specs:
        record = read(args.out / spec.name, args.bias_rate >= 1)
        if record is None:
            continue
        per_run[spec.name] = record
        cell = rows.setdefault(f"{spec.direction}/{spec.method}", {c: [] for c in COLUMNS})
        for column in COLUMNS:
            if record[column] is not None:
                cell[column].append(record[column])
    summaries = {key: {c: stats.summarize(v).to_dict() for c, v in cell.items() if v} for key, cell in rows.items()}
    threads = sorted({str(record["threads"]) for record in per_run.values()})
    result = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "native_bf16": native_bf16("cpu"),
                          "threads_per_run": threads,
                          "runs_at_once": None if args.report_only else args.jobs},
              "bias_rate": args.bias_rate, "data_root": None if args.data_root is None else str(args.data_root),
              "variants": {name: VARIANTS[name] for name in {spec.method for spec in specs} if name in VARIANTS},
              "overrides": args.set, "method_overrides": args.per_method, "bias": args.bias,
              "summaries": summaries, "runs": per_run}
    (args.out / "report.json").write_text(json.dumps(result, indent=1))
    (args.out / "report.md").write_text(markdown(result))
    plot(result, args.out / "utkface.png")
    print(markdown(result))
    return result


def _cell(summary: dict[str, Any] | None, digits: int = 3) -> str:
    if not summary:
        return "-"
    text = f"{summary['mean']:.{digits}f}"
    return text + (f" ± {summary['half_width']:.{digits}f}" if summary["half_width"] is not None else "") \
        + f" (n={summary['n']})"


def markdown(result: dict[str, Any]) -> str:
    lines = ["| train -> test | method | validation (selection) | opposite split | balanced split | balanced worst "
             "group | leakage (balanced) | relative leakage | training minutes |", "|---|---|---|---|---|---|---|---|---|"]
    for key, cell in result["summaries"].items():
        direction, method = key.split("/")
        lines.append(f"| {DIRECTIONS[direction]} | {method} | " + " | ".join(
            _cell(cell.get(c), 1 if c == "train_minutes" else 3) for c in COLUMNS) + " |")
    lines += ["", "| run | validation | opposite | balanced | leakage | relative | selected epoch | minutes | images/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["runs"].items():
        relative = "-" if r["relative_leakage"] is None else f"{r['relative_leakage']:.3f}"
        validation = "-" if r.get("validation") is None else f"{r['validation']:.4f}"
        opposite = "-" if r["opposite"] is None else f"{r['opposite']:.4f}"
        lines.append(f"| {name} | {validation} | {opposite} | {r['balanced']:.4f} | {r['leakage']:.3f} | {relative} | "
                     f"{r['selected_epoch']} | {r['train_minutes']:.1f} | {r['images_per_second']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy on the opposite split (when the build has one), the balanced split and its worst group, per
    direction and method, with 95% intervals."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result["summaries"])
    figure, axis = plt.subplots(figsize=(1.2 * len(keys) + 2, 4))
    shown = [(column, label) for column, label in (("opposite", "opposite split"), ("balanced", "balanced split"),
                                                   ("balanced_worst_group", "balanced, worst group"))
             if any(result["summaries"][key].get(column) for key in keys)]
    width = 0.8 / len(shown)
    for offset, (column, label) in enumerate(shown):
        cells = [result["summaries"][key].get(column) for key in keys]
        axis.bar([i + width * offset for i in range(len(keys))], [c["mean"] if c else 0 for c in cells], width=width,
                 yerr=[(c["half_width"] or 0) if c else 0 for c in cells], capsize=3, label=label)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], [k.replace("/", "\n") for k in keys],
                    fontsize=8)
    axis.set_ylabel("gender accuracy")
    axis.set_ylim(0.0, 1.0)
    axis.axhline(0.5, color="grey", linewidth=0.5)  # chance: below it, the model follows the age shortcut
    axis.legend()
    axis.set_title(f"UTKFace, age-biased gender (bias rate {result['bias_rate']}): mean and 95% CI over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> None:
    args = parse_args(argv)
    specs = [RunSpec(d, m, s) for s in args.seeds for d in args.directions for m in args.methods]  # seed 0 first
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda spec: execute(spec, args), specs))
    report(args, specs)


if __name__ == "__main__":
    main()
