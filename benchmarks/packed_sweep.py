"""Packed sweeps: what training several runs on one device at once gains over one after another.

    python benchmarks/packed_sweep.py --out runs/packed                          # 8 points, --jobs 1, 4, 8
    python benchmarks/packed_sweep.py --out runs/packed --device cuda --jobs 1 8 --json
    python benchmarks/packed_sweep.py --out runs/packed-cpu --preset smoke --device cpu --points 2 \\
        --jobs 1 2 --threads 1 --set data.train_size=256 data.test_size=128 data.val_size=64

The same K points (``--grid seed=0,1,...,K-1`` over ``--preset``, the ``--set`` values and a short
schedule) are trained by ``lnl sweep`` (a subprocess: ``python -m lnl_cli sweep``) once with ``--jobs 1``
(one point after another in the sweep's process) and once with each ``--jobs J`` asked for (J points at
once, each an ``lnl train`` process), every sweep into a fresh folder ``--out/jobs-J``. The schedule is
``train.epochs=E`` and ``train.pretrain_epochs=E//2`` (``--epochs E``, default 2: one warm-up and one
adversarial epoch, the paper protocol's half-and-half at its smallest; E=1 is one adversarial epoch; a
baseline ignores the warm-up count); ``device=`` is ``--device`` and ``train.num_threads=`` is ``--threads``
when given. A ``--set`` of the same key comes later and wins.

Per J:
  wall_s                   seconds of the whole ``lnl sweep`` process (start-up, data, every run's
                           training, validation and test): what a user waits for
  aggregate_images_per_s   sum over the sweep's run folders of summary.json ``epochs`` x ``train_size``,
                           divided by wall_s
  mean_run_images_per_s    the mean of the runs' own summary.json ``train_images_per_second`` (their
                           training loops alone): how much each run slows down when it shares the device
  speedup                  aggregate_images_per_s over that of --jobs 1 (the same images: wall_s of J=1
                           over wall_s of J)
The run folders are the ones sweep.json lists (``points[].run_dir``, status ``finished``); a sweep that
exits non-zero, or finishes fewer than K points, stops the benchmark with its stderr's last lines and exit
status 1. Nothing is timed in tests: the figures depend on the machine and on what else runs on it.

On a CPU give each process few threads (``--threads C``, J x C at most the cores; a warning says when not),
or the processes fight over the cores. The machine (device name: the GPU's from torch, else the CPU
model; cores; torch version) is read after the sweeps, so that this process holds no GPU while they run.
Output: a table on stdout, or JSON with ``--json``; the sweeps' own messages go to stderr, prefixed with
their --jobs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # arguments.py lives beside this script
from arguments import positive_int as _positive_int  # noqa: E402

STDERR_TAIL = 20  # lines of a failed sweep's stderr shown


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="colored-mnist-paper", help="preset of every point (default: %(default)s)")
    parser.add_argument("--points", type=_positive_int, default=8, metavar="K",
                        help="points of each sweep: --grid seed=0,...,K-1 (default: %(default)s)")
    parser.add_argument("--jobs", type=_positive_int, nargs="+", default=[1, 4, 8], metavar="J",
                        help="--jobs of the sweeps compared; 1 is always run, as the reference (default: 1 4 8)")
    parser.add_argument("--epochs", type=_positive_int, default=2, metavar="E",
                        help="train.epochs of every point, with train.pretrain_epochs=E//2 (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides of every point (after the script's own: they win)")
    parser.add_argument("--device", default=None,
                        help="device= of every point (default: cuda when torch sees one, else cpu)")
    parser.add_argument("--threads", type=_positive_int, default=None, metavar="C",
                        help="train.num_threads of every point's process (default: torch's own)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="the sweeps go to DIR/jobs-J, which must not exist yet or be empty")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="passed to lnl sweep --data-root (default: $LNL_DATA_ROOT)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the sweeps


def jobs_list(asked: list[int]) -> list[int]:
    """1 (the reference) and every J asked for, each once, in increasing order."""
    return sorted({1, *asked})


def schedule(epochs: int) -> list[str]:
    return [f"train.epochs={epochs}", f"train.pretrain_epochs={epochs // 2}"]


def point_overrides(args: argparse.Namespace, device: str) -> list[str]:
    """Every point's fixed overrides: the schedule, the device, the threads, then the user's --set."""
    return [*schedule(args.epochs), f"device={device}",
            *([f"train.num_threads={args.threads}"] if args.threads else []), *args.overrides]


def sweep_command(args: argparse.Namespace, overrides: list[str], jobs: int, out: Path) -> list[str]:
    command = [sys.executable, "-m", "lnl_cli", "sweep", "--preset", args.preset,
               "--grid", "seed=" + ",".join(str(seed) for seed in range(args.points))]
    for override in overrides:
        command += ["--set", override]
    command += ["--out", str(out), "--jobs", str(jobs)]
    if args.data_root is not None:
        command += ["--data-root", str(args.data_root)]
    return command


def run_sweep(command: list[str], jobs: int) -> tuple[int, float, list[str]]:
    """Run one sweep, passing its stderr on (prefixed); its exit status, wall seconds and last stderr lines."""
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
    assert process.stderr is not None
    for line in process.stderr:
        line = line.rstrip("\n")
        tail.append(line)
        say(f"[jobs {jobs}] {line}")
    code = process.wait()
    return code, time.perf_counter() - started, list(tail)


def read_runs(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """sweep.json of the sweep in `out`, and the summary figures of each finished point it lists."""
    document = json.loads((out / "sweep.json").read_text())
    runs = []
    for point in document["points"]:
        if point.get("status") != "finished":
            continue
        run_dir = Path(point["run_dir"])
        summary = json.loads((run_dir if run_dir.is_absolute() else Path.cwd() / run_dir).joinpath(
            "summary.json").read_text())
        runs.append({"name": point["name"], "run_dir": str(run_dir), "epochs": summary["epochs"],
                     "train_size": summary["train_size"], "images": summary["epochs"] * summary["train_size"],
                     "train_images_per_second": summary.get("train_images_per_second"),
                     "train_seconds": summary.get("train_seconds"), "seconds": summary.get("seconds"),
                     "device": summary.get("device")})
    return document, runs


def measure(jobs: int, wall_s: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall_s = round(wall_s, 3)
    images = sum(run["images"] for run in runs)
    rates = [run["train_images_per_second"] for run in runs if run["train_images_per_second"] is not None]
    return {"jobs": jobs, "wall_s": wall_s, "finished_runs": len(runs), "images": images,
            "aggregate_images_per_s": round(images / wall_s, 2) if wall_s > 0 else None,
            "mean_run_images_per_s": round(statistics.fmean(rates), 2) if rates else None}


# ---------------------------------------------------------------------------- the machine


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "cpu": cpu_model(), "cores": os.cpu_count(),
                            "torch": str(torch.__version__), "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["gpus"] = torch.cuda.device_count()
    else:
        info["device_name"] = info["cpu"]
    return info


def oversubscription(device: str, jobs: list[int], threads: int | None) -> list[str]:
    """On a CPU: the --jobs whose processes would want more threads than the machine has cores."""
    if not device.startswith("cpu"):
        return []
    cores = os.cpu_count() or 1
    if threads is None:
        return [f"--jobs {j}: every process uses torch's default threads (about {cores}), {j} processes on "
                f"{cores} cores; give --threads C with {j} x C at most {cores}" for j in jobs if j > 1]
    return [f"--jobs {j} x --threads {threads} = {j * threads} threads on {cores} cores: the processes slow "
            "each other down" for j in jobs if j * threads > cores]


# ---------------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    s, m = results["settings"], results["machine"]
    lines = [f"packed sweep: {s['preset']}, {s['points']} points ({s['grid']}), {s['epochs']} epochs each "
             f"(train.pretrain_epochs={s['pretrain_epochs']}), device {s['device']}"
             + (f", train.num_threads={s['threads']} per process" if s["threads"] else ""),
             f"machine: {m['device_name']}, {m['cores']} cores, torch {m['torch']}"]
    if s["overrides"]:
        lines.append("overrides: " + " ".join(s["overrides"]))
    lines.append(f"{'jobs':>4} {'wall s':>9} {'runs':>6} {'images':>10} {'img/s (all)':>12} "
                 f"{'img/s per run':>14} {'speed-up':>9}")
    for row in results["sweeps"]:
        lines.append(f"{row['jobs']:>4} {row['wall_s']:>9.1f} {row['finished_runs']:>3}/{s['points']:<2} "
                     f"{row['images']:>10} {_number(row['aggregate_images_per_s']):>12} "
                     f"{_number(row['mean_run_images_per_s']):>14} "
                     f"{(_number(row['speedup']) + 'x') if row.get('speedup') else '-':>9}")
    lines += [f"warning: {warning}" for warning in results["warnings"]]
    if results.get("error"):
        lines.append(f"failed: {results['error']['message']}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 100 else f"{value:.2f}"


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device or default_device()
    jobs = jobs_list(args.jobs)
    folders = {j: args.out / f"jobs-{j}" for j in jobs}
    taken = [str(folder) for folder in folders.values() if folder.exists() and any(folder.iterdir())]
    if taken:
        say(f"error: {', '.join(taken)} already hold{'s' if len(taken) == 1 else ''} files; every sweep needs a "
            "fresh folder (a reused one would skip its finished points): remove them or give another --out")
        return 2
    overrides = point_overrides(args, device)
    warnings = oversubscription(device, jobs, args.threads)
    for warning in warnings:
        say(f"warning: {warning}")
    results: dict[str, Any] = {
        "settings": {"preset": args.preset, "points": args.points, "grid": f"seed=0..{args.points - 1}",
                     "epochs": args.epochs, "pretrain_epochs": args.epochs // 2, "device": device,
                     "threads": args.threads, "jobs": jobs, "overrides": overrides, "data_root": args.data_root,
                     "out": str(args.out)},
        "sweeps": [], "warnings": warnings}
    failure = None
    for j in jobs:
        command = sweep_command(args, overrides, j, folders[j])
        say(f"sweep --jobs {j}: {args.points} points -> {folders[j]}")
        code, wall_s, tail = run_sweep(command, j)
        row: dict[str, Any] = {"jobs": j, "out": str(folders[j]), "command": command, "exit_code": code}
        runs: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            runs = read_runs(folders[j])[1]
        row.update(measure(j, wall_s, runs), runs=runs, exit_code=code)
        results["sweeps"].append(row)
        if code != 0 or len(runs) != args.points:
            why = (f"exit {code}" if code != 0 else
                   f"exit 0 but {len(runs)} of {args.points} points finished in {folders[j] / 'sweep.json'}")
            failure = {"jobs": j, "exit_code": code, "stderr_tail": tail,
                       "message": f"lnl sweep --jobs {j} failed ({why})"}
            break
        say(f"sweep --jobs {j}: {row['wall_s']:.1f} s, {row['aggregate_images_per_s']} images/s in all")
    complete = [row for row in results["sweeps"] if row["exit_code"] == 0 and row["finished_runs"] == args.points]
    reference = next((row for row in complete if row["jobs"] == 1), None)
    for row in results["sweeps"]:
        row["speedup"] = (round(row["aggregate_images_per_s"] / reference["aggregate_images_per_s"], 2)
                          if reference and row in complete and reference["aggregate_images_per_s"] else None)
    results["machine"] = machine(device)
    if failure is not None:
        results["error"] = failure
        say(f"error: {failure['message']}; the last lines of its stderr:")
        for line in failure["stderr_tail"]:
            say(f"  {line}")
    print(json.dumps(results, indent=2) if args.json else table(results), flush=True)
    return 1 if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
