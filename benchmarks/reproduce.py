"""Reproduce the paper's Colored-MNIST table with the official two-stage procedure and honest statistics.

For each sigma^2 and seed: one warm-up run (method=baseline, the warm-up schedule), which is also the
baseline row; then every adversarial method asked for (lnl, blind_eye, csad) starts from the warm-up's
last.pt (train.init_from, train.pretrain_epochs=0, the adversarial learning rate), as the official LNL code
starts its LNL phase, and the official CSAD README its game, from a trained baseline (csad's bias-branch and
estimator warm-ups, csad.bias_warmup_epochs at train.lr and csad.mi_warmup_epochs, count in its adversarial
epochs). gray is trained on its own with the warm-up schedule. Every run
keeps the model that train.select picks on the validation split; the report reads only the test
metrics of that model (summary.json "test"), never test metrics of other epochs.

Over seeds: mean, sample standard deviation and a Student-t 95% confidence interval per method and
sigma^2, beside the paper's Baseline, BlindEye, Gray and LNL rows (and CSAD's one figure when csad is
measured); a cell is "above the paper" only when
the interval's lower bound is above the paper's figure, "below the paper" only when its upper bound is
below it, otherwise "consistent with the paper" (a single seed: no claim). Writes --out/report.md,
--out/report.json and every run folder under --out; a run whose folder already has summary.json is
reused and an interrupted one resumed, so rerunning the same command continues a benchmark.

    python benchmarks/reproduce.py --color-vars 0.020 --seeds 0 1 2 --out runs/reproduce
    python benchmarks/reproduce.py --preset colored-mnist-fast --adversarial-lr 0.01 --seeds 0 1 2
    python benchmarks/reproduce.py --preset colored-mnist-csad --methods baseline csad --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stats.py lives beside this script
import stats  # noqa: E402
from arguments import positive_float as _positive_float  # noqa: E402
from arguments import positive_int as _positive_int  # noqa: E402

from lnl_cli import api  # noqa: E402
from lnl_cli.selection import selected_model_text  # noqa: E402

# The paper's table: unbiased test accuracy at the seven sigma^2 of the official data files.
PAPER_SOURCE = ("official Learning-Not-to-Learn README (feidfoe/learning-not-to-learn, commit fad2ec8, "
                "\"an alternative of Fig. 4 in the paper\"), as copied in shared/reference/colored-mnist-paper.md")
PAPER_COLOR_VARS = (0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050)
CSAD_SOURCE = ("official CSAD README (zwvews/csad, commit f2d4e20): \"a debiased digit classifer with accuracy "
               "around 0.943\" at sigma^2=0.020, trained from its pretrained baseline; it gives no other sigma^2")
PAPER_ROWS = {  # method -> (the paper's row name, one figure per PAPER_COLOR_VARS; None: no figure)
    "baseline": ("Baseline", (0.4055, 0.4813, 0.5996, 0.6626, 0.7333, 0.7973, 0.8450)),
    "blind_eye": ("BlindEye", (0.6741, 0.7123, 0.7883, 0.8203, 0.8638, 0.8927, 0.9159)),
    "gray": ("Gray", (0.8374, 0.8751, 0.8996, 0.9166, 0.9325, 0.9472, 0.9596)),
    "lnl": ("LNL", (0.8185, 0.8854, 0.9137, 0.9306, 0.9406, 0.9555, 0.9618)),
    "csad": ("CSAD", (0.943, None, None, None, None, None, None)),
}
PAPER = {method: dict(zip(PAPER_COLOR_VARS, figures)) for method, (_, figures) in PAPER_ROWS.items()}
ALWAYS_SHOWN = ("baseline", "blind_eye", "gray", "lnl")  # the LNL paper's table; CSAD's row when csad is measured
PAPER_SOURCES = {**{method: PAPER_SOURCE for method in ALWAYS_SHOWN}, "csad": CSAD_SOURCE}

ADVERSARIAL = ("lnl", "lnl_probe", "blind_eye", "csad")  # branched from the warm-up's last.pt
STANDALONE = ("gray", "group_dro")          # trained from scratch with the warm-up schedule
METHODS = ("baseline", *ADVERSARIAL, *STANDALONE)
DEFAULT_METHODS = ("baseline", "lnl", "blind_eye", "gray")  # the LNL paper's four rows
SELECT_CHOICES = ("last", "val_accuracy", "val_worst_group_accuracy", "val_conflicting_accuracy")
OFFICIAL_ADVERSARIAL_LR = 0.001  # train.sh: --lr 0.001 for the LNL phase
WARMUP_CHECKPOINT = "last.pt"
# Keys this script sets itself; --set must not fight them.
CONTROLLED = {"method": "--methods", "seed": "--seeds", "data.color_var": "--color-vars",
              "train.epochs": "--warmup-epochs / --adversarial-epochs", "train.pretrain_epochs": "(always 0)",
              "train.init_from": "(the warm-up's last.pt)", "train.select": "--select",
              "train.lr": "--warmup-lr", "train.adversarial_lr": "--adversarial-lr", "train.num_threads": "--threads"}
# Keys whose stored value may differ when a finished run is reused: the keys that do not change a result
# (lnl's one set, which `lnl sweep` uses too), and train.init_from, an absolute path that changes when
# --out is moved, while the folder layout already ties a branch to its warm-up.
FREE_ON_REUSE = api.RESULT_NEUTRAL_KEYS | {"train.init_from"}
TEST_KEYS = ("accuracy", "aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy", "bias_head_accuracy")


class ReproduceError(Exception):
    """Something the user must fix (a folder holding another run, a preset without a warm-up)."""


# ---------------------------------------------------------------------------- arguments and plan


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="colored-mnist-paper",
                        help="preset every run starts from (default colored-mnist-paper: 100 + 100 epochs)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS, metavar="METHOD",
                        help=f"any of {', '.join(METHODS)} (default {' '.join(DEFAULT_METHODS)}: the LNL paper's "
                             "rows); the warm-up is trained whenever baseline, lnl, blind_eye or csad is asked for. "
                             "csad runs with the preset's train.optimizer and learning rates: use a CSAD preset "
                             "(colored-mnist-csad) for its official settings")
    parser.add_argument("--color-vars", nargs="+", type=float, default=[0.020], metavar="VAR",
                        help="sigma^2 values (the paper's: " + " ".join(f"{v:.3f}" for v in PAPER_COLOR_VARS) + ")")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="SEED",
                        help="training seeds (weights, batch order); the coloured data (data.seed) stays fixed")
    parser.add_argument("--warmup-epochs", type=_positive_int, metavar="N",
                        help="epochs of the warm-up (baseline) run; default: the preset's train.pretrain_epochs")
    parser.add_argument("--adversarial-epochs", type=_positive_int, metavar="N",
                        help="epochs of each adversarial run; default: the preset's train.epochs minus "
                             "train.pretrain_epochs")
    parser.add_argument("--warmup-lr", type=_positive_float, metavar="LR",
                        help="learning rate of the warm-up and of gray; default: the preset's train.lr")
    parser.add_argument("--adversarial-lr", type=_positive_float, metavar="LR",
                        help="learning rate of the adversarial runs; default: the preset's train.adversarial_lr "
                             f"when it sets one, else {OFFICIAL_ADVERSARIAL_LR} (the official LNL phase)")
    parser.add_argument("--select", choices=SELECT_CHOICES, default="val_accuracy",
                        help="train.select of every run: the model reported (default val_accuracy, chosen on the "
                             "validation split; last: the final epoch's model)")
    parser.add_argument("--threads", type=_positive_int, metavar="N", help="train.num_threads of every run")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run (e.g. train.precision=fp32 data.root=PATH)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"),
                        help="folder of the run folders, report.md and report.json")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the finished runs among those asked for (e.g. 3 seeds at "
                             "some sigma^2 and 1 at others, trained by separate invocations) and name the rest")
    args = parser.parse_args(argv)
    args.color_vars = list(dict.fromkeys(args.color_vars))  # a repeated seed would count one run twice
    args.seeds = list(dict.fromkeys(args.seeds))
    args.methods = list(dict.fromkeys(args.methods))
    for override in args.overrides:
        key = override.split("=", 1)[0].strip()
        if "=" not in override:
            parser.error(f"--set takes KEY=VALUE, got {override!r}")
        if key in CONTROLLED:
            parser.error(f"--set {key}=... is set by this script; use {CONTROLLED[key]}")
    return args


@dataclass(frozen=True)
class Schedule:
    warmup_epochs: int
    warmup_lr: float
    adversarial_epochs: int
    adversarial_lr: float
    adversarial_lr_source: str
    lr_decay_rate: float
    warmup_decay_epochs: int       # the preset's train.pretrain_lr_decay_epochs, else train.lr_decay_epochs
    adversarial_decay_epochs: int  # the preset's train.lr_decay_epochs


def resolve_schedule(args: argparse.Namespace) -> Schedule:
    """The two stages' epochs and learning rates: the flags, else the preset's."""
    base = api.load_config(args.preset, args.overrides)
    train = base.train
    warmup = args.warmup_epochs if args.warmup_epochs is not None else train.pretrain_epochs
    if warmup < 1:
        raise ReproduceError(f"preset {args.preset} has no warm-up (train.pretrain_epochs is 0): "
                             "pass --warmup-epochs")
    adversarial = (args.adversarial_epochs if args.adversarial_epochs is not None
                   else train.epochs - train.pretrain_epochs)
    if adversarial < 1 and any(m in ADVERSARIAL for m in args.methods):
        raise ReproduceError(f"preset {args.preset} has no adversarial epochs (train.epochs equals "
                             "train.pretrain_epochs): pass --adversarial-epochs")
    if args.adversarial_lr is not None:
        lr, source = args.adversarial_lr, "--adversarial-lr"
    elif getattr(train, "adversarial_lr", None) is not None:
        lr, source = train.adversarial_lr, "the preset's train.adversarial_lr"
    else:
        lr, source = OFFICIAL_ADVERSARIAL_LR, "the official LNL phase (train.sh --lr 0.001)"
    return Schedule(warmup, args.warmup_lr if args.warmup_lr is not None else train.lr, adversarial, lr, source,
                    train.lr_decay_rate, train.pretrain_lr_decay_epochs or train.lr_decay_epochs,
                    train.lr_decay_epochs)


@dataclass(frozen=True)
class RunSpec:
    method: str
    color_var: float
    seed: int
    role: str            # "warm-up" (the baseline row too), "branch" (from the warm-up) or "standalone"
    out: Path
    overrides: tuple[str, ...]
    init_from: Path | None = None

    @property
    def tag(self) -> str:
        return f"{self.method} σ²={_var_name(self.color_var)} seed={self.seed}"


def _var_name(color_var: float) -> str:
    """0.020 as in the paper's tables; a value with more decimals keeps them (0.0225 is not 0.023)."""
    return f"{color_var:.3f}" if round(color_var, 3) == color_var else f"{color_var:.6g}"


def plan(args: argparse.Namespace, schedule: Schedule) -> list[RunSpec]:
    """Every run in the order it is trained: per (sigma^2, seed) the warm-up first, then its branches."""
    common = [*args.overrides, f"train.select={args.select}"]
    if args.threads is not None:
        common.append(f"train.num_threads={args.threads}")
    needs_warmup = any(m in ("baseline", *ADVERSARIAL) for m in args.methods)
    runs = []
    for color_var in args.color_vars:
        for seed in args.seeds:
            folder = args.out / f"var{_var_name(color_var)}-seed{seed}"
            where = [f"data.color_var={color_var}", f"seed={seed}"]
            plain = [*common, *where, f"train.epochs={schedule.warmup_epochs}", "train.pretrain_epochs=0",
                     f"train.lr={schedule.warmup_lr}"]
            warmup = folder / "baseline"
            if needs_warmup:
                runs.append(RunSpec("baseline", color_var, seed, "warm-up", warmup,
                                    ("method=baseline", *plain)))
            for method in ADVERSARIAL:
                if method in args.methods:
                    init_from = (warmup / WARMUP_CHECKPOINT).absolute()
                    runs.append(RunSpec(method, color_var, seed, "branch", folder / method, (
                        f"method={method}", *common, *where, f"train.init_from={init_from}",
                        f"train.epochs={schedule.adversarial_epochs}", "train.pretrain_epochs=0",
                        f"train.adversarial_lr={schedule.adversarial_lr}"), init_from))
            for method in STANDALONE:
                if method in args.methods:
                    runs.append(RunSpec(method, color_var, seed, "standalone", folder / method,
                                        (f"method={method}", *plain)))
    return runs


# ---------------------------------------------------------------------------- running


class EpochLog(api.TrainCallbacks):
    """One stderr line per epoch: losses and the validation figures (never test metrics)."""

    def __init__(self, tag: str):
        self.tag = tag

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        shown = " ".join(f"{key}={value:.4f}" for key, value in record.items()
                         if (key.startswith("val_") or key.endswith("_loss")) and isinstance(value, (int, float)))
        print(f"[{self.tag}] epoch {record.get('epoch')} {record.get('phase', '')} {shown} "
              f"({record.get('seconds', float('nan')):.1f}s)", file=sys.stderr, flush=True)

    def on_message(self, text: str) -> None:
        print(f"[{self.tag}] {text}", file=sys.stderr, flush=True)


def train_run(preset: str, overrides: list[str], out: Path, tag: str, resume: bool = False,
              resume_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or resume) one run folder through the public API; returns its summary. Tests replace this."""
    callbacks = EpochLog(tag)
    if resume:
        return api.resume(out, resume_overrides or {}, callbacks)
    config = api.load_config(preset, overrides)
    return api.train(config, out, callbacks)


def folder_check(spec: RunSpec, config: "api.Config") -> "api.FolderCheck":
    """What spec.out holds, read as `lnl sweep` reads a point's folder: nothing yet ("train"), an unfinished
    run ("resume") or a finished one ("skip"). A run there must have been trained with spec's overrides
    (FREE_ON_REUSE aside); keys its config.yaml leaves out, or a folder without one, are not checked."""
    keys = [override.partition("=")[0].strip() for override in spec.overrides]
    check = api.check_folder(spec.out, config, keys, free=FREE_ON_REUSE, partial=True, label=spec.tag)
    if check.differ:
        key, (stored, wanted) = next(iter(check.differ.items()))  # the first override that differs
        raise ReproduceError(f"{spec.out} holds a run with {key}={stored!r}, but this benchmark asks for "
                             f"{key}={wanted!r}; choose another --out or remove that folder")
    return check


def execute(spec: RunSpec, args: argparse.Namespace) -> tuple[dict[str, Any], str, "api.Config"]:
    """The run's summary, what was done ("trained", "resumed" or "reused") and the run's config."""
    summary_path = spec.out / "summary.json"
    config = api.load_config(args.preset, list(spec.overrides))
    check = folder_check(spec, config)
    if check.action == "skip":
        print(f"reusing {spec.tag}: {spec.out} already has summary.json", file=sys.stderr, flush=True)
        return json.loads(summary_path.read_text()), "reused", check.stored or config
    if spec.init_from is not None and not spec.init_from.is_file():
        raise ReproduceError(f"{spec.tag} starts from {spec.init_from}, which does not exist")
    if check.action == "resume":
        print(f"resuming {spec.tag}: {spec.out} holds an unfinished run", file=sys.stderr, flush=True)
        summary = train_run(args.preset, list(spec.overrides), spec.out, spec.tag, resume=True,
                            resume_overrides=check.resume_overrides)
        status = "resumed"
    else:
        print(f"training {spec.tag} -> {spec.out}", file=sys.stderr, flush=True)
        summary = train_run(args.preset, list(spec.overrides), spec.out, spec.tag)
        status = "trained"
    if summary_path.is_file():  # what the run folder says, the same whether trained now or reused later
        summary = json.loads(summary_path.read_text())
    return summary, status, check.stored or config


def run_all(args: argparse.Namespace, specs: list[RunSpec]) -> list[dict[str, Any]]:
    records = []
    for spec in specs:
        if args.report_only and not (spec.out / "summary.json").is_file():
            print(f"not in the report (--report-only, not finished): {spec.tag}", file=sys.stderr, flush=True)
            continue
        summary, status, config = execute(spec, args)
        records.append(record_of(spec, summary, status, config))
    return records


def record_of(spec: RunSpec, summary: dict[str, Any], status: str, config: "api.Config") -> dict[str, Any]:
    """One run's figures for the report: the selected model's test metrics only."""
    test = summary.get("test") or {}
    return {
        "method": spec.method, "color_var": spec.color_var, "seed": spec.seed, "role": spec.role,
        "run_dir": str(spec.out), "status": status, "overrides": list(spec.overrides),
        "init_from": None if spec.init_from is None else str(spec.init_from),
        "selected": summary.get("selected"),
        "test": {key: test.get(key) for key in TEST_KEYS if key in test},
        "epochs": summary.get("epochs"), "seconds": summary.get("seconds"),
        "train_seconds": summary.get("train_seconds"), "device": summary.get("device"),
        "precision": summary.get("precision") or resolved_precision(config.train.precision, summary.get("device")),
        "versions": summary.get("versions"),
    }


# ---------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


_NATIVE: dict[str, bool | None] = {}


def native_bf16(device: str | None) -> bool | None:
    """Whether `device` ("cpu", "cuda:0") computes bf16 natively here; None when that cannot be told."""
    kind = (device or "cpu").split(":")[0]
    if kind not in _NATIVE:
        try:
            import torch

            from lnl_cli.algorithms.base import native_bf16 as check

            _NATIVE[kind] = bool(check(torch.device(kind)))
        except Exception:
            _NATIVE[kind] = None
    return _NATIVE[kind]


def resolved_precision(setting: str | None, device: str | None) -> str:
    """What train.precision means on this machine: auto is bf16 where bf16 is native, else fp32."""
    if setting in ("bf16", "fp32"):
        return setting
    native = native_bf16(device)
    return "unknown" if native is None else "bf16" if native else "fp32"


def machine_info(threads: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
                            "threads": threads if threads is not None else f"all ({os.cpu_count()})",
                            "native_bf16_cpu": native_bf16("cpu"), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        import torch

        info["torch"] = str(torch.__version__)
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    info["lnl"] = api.__version__
    return info


# ---------------------------------------------------------------------------- statistics and report


def paper_figure(method: str, color_var: float) -> float | None:
    return PAPER.get(method, {}).get(color_var)  # exact: 0.0201 has no paper figure


def cells(records: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """One cell per (method, sigma^2) measured: the selected models' unbiased test accuracy over seeds."""
    out = []
    for method in ordered_methods(methods):
        for color_var in sorted({r["color_var"] for r in records if r["method"] == method}):
            runs = [r for r in records if r["method"] == method and r["color_var"] == color_var]
            accuracy = [r["test"]["accuracy"] for r in runs if r["test"].get("accuracy") is not None]
            if not accuracy:
                continue
            summary = stats.summarize(accuracy)
            paper = paper_figure(method, color_var)
            cell = {"method": method, "color_var": color_var, "seeds": [r["seed"] for r in runs],
                    "accuracy": accuracy, **summary.to_dict(), "paper": paper,
                    "delta": None if paper is None else summary.mean - paper,
                    "verdict": stats.verdict(summary, paper)}
            for key in ("conflicting_accuracy", "worst_group_accuracy"):
                values = [r["test"][key] for r in runs if r["test"].get(key) is not None]
                cell[f"mean_{key}"] = sum(values) / len(values) if values else None
            out.append(cell)
    return out


def ordered_methods(methods: list[str]) -> list[str]:
    """The paper's row order (Baseline, BlindEye, Gray, LNL, CSAD), then any other method."""
    return [m for m in PAPER_ROWS if m in methods] + [m for m in methods if m not in PAPER_ROWS]


def _f(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    if cell["n"] < 2:
        return f"{cell['mean']:.4f} (n=1)"
    return f"{cell['mean']:.4f} ± {cell['half_width']:.4f} (n={cell['n']})"


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def table(cell_list: list[dict[str, Any]], methods: list[str]) -> str:
    """Measured rows (mean ± 95% CI half-width, n) beside the paper's rows (the LNL paper's four, and CSAD's
    when csad is measured), one column per sigma^2."""
    color_vars = sorted(set(PAPER_COLOR_VARS) | {c["color_var"] for c in cell_list})
    lines = ["| method | " + " | ".join(f"σ² {_var_name(v)}" for v in color_vars) + " |",
             "|---|" + "---|" * len(color_vars)]
    by_key = {(c["method"], c["color_var"]): c for c in cell_list}
    measured = ordered_methods(methods)
    for method in [*PAPER_ROWS, *(m for m in measured if m not in PAPER_ROWS)]:
        if method in measured:
            lines.append(f"| **{method}, measured** | "
                         + " | ".join(_cell_text(by_key.get((method, v))) for v in color_vars) + " |")
        if method in PAPER_ROWS and (method in ALWAYS_SHOWN or method in measured):
            name = PAPER_ROWS[method][0]
            lines.append(f"| {name}, paper | "
                         + " | ".join(_f(paper_figure(method, v)) for v in color_vars) + " |")
    return "\n".join(lines)


def comparison(cell_list: list[dict[str, Any]]) -> str:
    lines = ["| method | σ² | n | mean | sd | 95% CI | paper | Δ vs paper | verdict | conflicting | worst group |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cell_list:
        interval = "n=1" if c["n"] < 2 else f"[{c['low']:.4f}, {c['high']:.4f}]"
        delta = "—" if c["delta"] is None else f"{c['delta']:+.4f}"
        lines.append(f"| {c['method']} | {_var_name(c['color_var'])} | {c['n']} | {c['mean']:.4f} | {_f(c['sd'])} | "
                     f"{interval} | {_f(c['paper'])} | {delta} | {c['verdict']} | "
                     f"{_f(c['mean_conflicting_accuracy'])} | {_f(c['mean_worst_group_accuracy'])} |")
    return "\n".join(lines)


def _selected_text(selected: dict[str, Any] | None) -> str:
    if not selected:
        return "—"
    value = selected.get("value")
    shown = "" if value is None else f" = {value:.4f}"
    return f"{selected.get('metric')} @ {selected_model_text(selected)}{shown}"


def runs_table(records: list[dict[str, Any]]) -> str:
    lines = ["| method | σ² | seed | role | run folder | status | selected model | test accuracy | conflicting "
             "| wall time | train time | device, precision |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['method']} | {_var_name(r['color_var'])} | {r['seed']} | {r['role']} | `{r['run_dir']}` | "
                     f"{r['status']} | {_selected_text(r['selected'])} | {_f(r['test'].get('accuracy'))} | "
                     f"{_f(r['test'].get('conflicting_accuracy'))} | {_minutes(r['seconds'])} | "
                     f"{_minutes(r['train_seconds'])} | {r['device'] or '—'}, {r['precision']} |")
    return "\n".join(lines)


READING = """\
How to read it: a measured cell is the mean over seeds of the unbiased test accuracy of each run's
selected model, ± the half-width of its 95% confidence interval (Student's t with n - 1 degrees of
freedom, sample standard deviation); n is the number of seeds. "above the paper" means the whole
interval lies above the paper's figure (its lower bound is higher), "below the paper" that the whole
interval lies below it; otherwise the measurement is "consistent with the paper" at this n. One seed
gives no interval and no claim. The interval covers training randomness (weights, batch order, seed)
only: the coloured data set (data.seed) is the same for every seed, as the official data files are."""


def report_markdown(args: argparse.Namespace, schedule: Schedule, records: list[dict[str, Any]],
                    cell_list: list[dict[str, Any]], machine: dict[str, Any], figure: Path | None) -> str:
    adversarial = [m for m in ADVERSARIAL if m in args.methods]
    precisions = sorted({f"{r['device'] or '?'}: {r['precision']}" for r in records})
    threads = machine["threads"]
    lines = [
        "# Colored-MNIST reproduction", "",
        table(cell_list, args.methods), "",
        READING, "",
        "## Against the paper, cell by cell", "",
        comparison(cell_list), "",
        "## Procedure", "",
        f"- preset `{args.preset}`; extra overrides `{' '.join(args.overrides) or 'none'}`",
        f"- warm-up (the baseline row): method=baseline, {schedule.warmup_epochs} epochs from scratch at "
        f"lr {schedule.warmup_lr:g}, ×{schedule.lr_decay_rate:g} every {schedule.warmup_decay_epochs} epochs",
        (f"- {', '.join(adversarial)}: start from the warm-up's `{WARMUP_CHECKPOINT}` (train.init_from), "
         f"train.pretrain_epochs=0, {schedule.adversarial_epochs} epochs at lr {schedule.adversarial_lr:g} "
         f"({schedule.adversarial_lr_source}), ×{schedule.lr_decay_rate:g} every "
         f"{schedule.adversarial_decay_epochs} epochs" if adversarial else "- no adversarial method"),
        ("- gray: trained from scratch with the warm-up's schedule" if "gray" in args.methods else None),
        f"- model reported: train.select={args.select}"
        + (" (the final epoch's model)" if args.select == "last" else
           " (chosen on the validation split held out of the training digits)")
        + "; the test set is read once per run, for that model",
        f"- paper figures: {PAPER_SOURCE}",
        (f"- CSAD figure: {CSAD_SOURCE}" if "csad" in args.methods else None), "",
        "## Machine", "",
        f"- CPU: {machine['cpu']} ({machine['logical_cores']} logical cores), threads per run: {threads}",
        f"- native bf16 on this CPU: {machine['native_bf16_cpu']}; precision of the runs: "
        + (", ".join(precisions) or "—"),
        f"- torch {machine.get('torch', '?')}, Python {machine['python']}, lnl {machine['lnl']}"
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else ""), "",
        "## Runs", "",
        runs_table(records), "",
        "Wall time is the run's own (summary.json `seconds`: data loading, training, evaluation; of the last "
        "segment for a resumed run); train time counts the training epochs only (every segment).",
    ]
    if figure is not None:
        lines += ["", f"![accuracy vs variance]({figure.name})"]
    return "\n".join(line for line in lines if line is not None) + "\n"


def plot(cell_list: list[dict[str, Any]], path: Path) -> Path | None:
    """Measured means with their 95% intervals against sigma^2, beside the paper's curves (the LNL paper's
    four; CSAD's one figure when csad is measured)."""
    try:
        from lnl_cli.plots import _pyplot, _save

        plt = _pyplot()
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, method in enumerate(PAPER_ROWS):
        color = f"C{index}"
        mine = [c for c in cell_list if c["method"] == method]
        if method not in ALWAYS_SHOWN and not mine:
            continue
        xs = [x for x in PAPER_COLOR_VARS if PAPER[method][x] is not None]
        ax.plot(xs, [PAPER[method][x] for x in xs], "--o" if len(xs) == 1 else "--", color=color, alpha=0.6,
                label=f"{PAPER_ROWS[method][0]} (paper)")
        if mine:
            ax.errorbar([c["color_var"] for c in mine], [c["mean"] for c in mine],
                        yerr=[c["half_width"] or 0.0 for c in mine], fmt="o-", color=color, capsize=3,
                        label=f"{method} (measured, 95% CI)")
    ax.set_xlabel("colour variance σ²")
    ax.set_ylabel("unbiased test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        _save(fig, path)
    except Exception:
        return None
    finally:
        plt.close(fig)
    return path


def write_report(args: argparse.Namespace, schedule: Schedule, records: list[dict[str, Any]]) -> str:
    cell_list = cells(records, args.methods)
    machine = machine_info(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot(cell_list, args.out / "accuracy_vs_variance.png")
    markdown = report_markdown(args, schedule, records, cell_list, machine, figure)
    (args.out / "report.md").write_text(markdown)
    payload = {
        "preset": args.preset, "methods": args.methods, "color_vars": args.color_vars, "seeds": args.seeds,
        "select": args.select, "overrides": args.overrides, "schedule": schedule.__dict__, "machine": machine,
        "paper": {"source": PAPER_SOURCE, "rows": {m: {"name": name, "source": PAPER_SOURCES[m],
                                                       "figures": dict(zip(map(str, PAPER_COLOR_VARS), figures))}
                                                  for m, (name, figures) in PAPER_ROWS.items()}},
        "cells": cell_list, "runs": records,
    }
    (args.out / "report.json").write_text(api.to_json(payload, indent=2) + "\n")
    return markdown


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        schedule = resolve_schedule(args)
        started = time.perf_counter()
        records = run_all(args, plan(args, schedule))
        markdown = write_report(args, schedule, records)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except api.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, api.TrainingInterrupted):
        print("interrupted: run the same command again; finished runs are reused and the interrupted one "
              "resumed", file=sys.stderr)
        return 130
    print(markdown.split("\n## Procedure", 1)[0].rstrip())  # tables and how to read them; all in report.md
    print(f"\nreport: {args.out / 'report.md'}, {args.out / 'report.json'} "
          f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
