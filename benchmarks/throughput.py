"""Training throughput: the project's engine against the official code itself.

    python benchmarks/throughput.py --official DIR          # DIR: a checkout of feidfoe/learning-not-to-learn
    python benchmarks/throughput.py --official DIR --steps 20 --rows baseline lnl_alternating --json
    python benchmarks/throughput.py --device cuda --official DIR --steps 200 --official-workers 8

The official rows run the official code (Kim et al., CVPR 2019), not a copy of its design: the .py files
of DIR are copied into a temporary folder (DIR is never modified, and the official code is not part of
this repository), patched as little as the running NumPy and torch need (PATCHES below; the applied ones
are printed and stored in the JSON), and imported from there. The Colored-MNIST file its
``data_loader.WholeDataLoader`` reads (``mnist_10color_jitter_var_%.03f.npy``: a pickled dict of
``train_image`` N x 28 x 28 x 3 uint8 HWC, ``train_label``, ``test_image``, ``test_label``) is written
into that folder from the project's own Colored-MNIST at the same sigma^2 (``lnl_cli.data``: the very
images the engine trains on). Then ``Trainer._train_step`` (LNL: two full passes per batch) and
``Trainer._train_step_baseline`` run over the official ``torch.utils.data.DataLoader(WholeDataLoader,
batch_size, shuffle=True, num_workers)`` with the official options (``option.py``'s defaults: batch 128,
SGD 0.01 / momentum 0.9 / weight decay 5e-4, 4 workers; ``--official-workers`` changes the workers,
``--threads`` the torch threads of both sides). The loader handed to a step method yields ``--warmup``
batches and then ``--steps`` timed ones; images/s = images of the timed batches / seconds from the end
of the last warm-up step to the end of the last timed step (data loading included, as in training).
Images per CPU-second (``images_per_cpu_s``, ``ratios_cpu``) divides the same images by the CPU time
spent over that span: this process's threads and, for the official code, its DataLoader workers
(/proc, Linux). On a machine shared with other jobs it is the steadier figure: wall-clock shares follow
the scheduler, which gives the official code's five processes more of the cores than the engine's one.

Patches (each applied only where the running library needs it):
  data_loader.py  np.load(..., encoding='latin1')  ->  np.load(..., encoding='latin1', allow_pickle=True)
                  (NumPy >= 1.16.3 refuses pickled object arrays unless asked)
  data_loader.py  np.long  ->  np.int64   (only on NumPy 1.24-1.26, which removed np.long; the same type)

Engine rows: ``algorithm.update`` over the engine's in-memory batches (``iterate_batches``), the same
network sizes and batch size, after the same warm-up: ``method=baseline``, ``method=lnl lnl.step=alternating``
(the paper's two-pass step) and ``method=lnl lnl.step=single_pass``, each in fp32 (``train.precision=fp32``)
and in bf16 only where the device runs it natively. Ratios are engine / official (fp32 official).
``--compile`` adds each engine row again with ``train.compile=true`` (``*_compiled``); every engine row
also reports ``first_step_s``, the seconds from building the networks to the end of the first step
(where compilation is paid).

Without ``--official`` the official rows are skipped with the reason printed; a re-creation of the
official pipeline inside this file (per-sample PIL, DataLoader, separate R/G/B heads, two passes per LNL
step: "recreation_*" rows, not the official code) then runs instead (``--recreation yes|no`` forces it
on or off). ``--repeat R`` runs every row R times, interleaved, and reports medians: on a loaded machine
ratios taken back to back are what counts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.algorithms.base import native_bf16
from lnl_cli.algorithms.grad_reverse import grad_reverse
from lnl_cli.data import iterate_batches, load_dataset
from lnl_cli.data.colored_mnist import NORMALISE_MEAN, NORMALISE_STD
from lnl_cli.models import FeatureExtractor, LabelClassifier

OFFICIAL_FILES = ("main.py", "trainer.py", "models.py", "data_loader.py", "option.py", "utils.py")
OFFICIAL_MODULES = ("trainer", "models", "data_loader", "option", "utils")
OFFICIAL_DATA = "mnist_10color_jitter_var_%.03f.npy"  # data_loader.py's file name, % option.color_var
ROWS = ("baseline", "lnl_alternating", "lnl_single_pass")
RATES = ("images_per_s", "images_per_cpu_s")
COMPILED = "_compiled"  # suffix of the engine rows timed with train.compile=true (--compile)


@dataclass(frozen=True)
class Patch:
    file: str
    pattern: str      # a regular expression
    replacement: str
    why: str
    needed: bool = True

    def describe(self) -> str:
        return f"{self.file}: {self.pattern!r} -> {self.replacement!r} ({self.why})"


PATCHES = (
    Patch("data_loader.py", r"encoding='latin1'\)", "encoding='latin1', allow_pickle=True)",
          "NumPy >= 1.16.3 refuses pickled object arrays unless asked"),
    Patch("data_loader.py", r"\bnp\.long\b", "np.int64", "np.long is missing from NumPy 1.24-1.26",
          needed=not hasattr(np, "long")),
)


# ------------------------------------------------------------------ the official code
@dataclass
class OfficialCode:
    folder: Path
    modules: dict
    patches: list[str]


def prepare_official(source: Path, folder: Path) -> OfficialCode:
    """Copy the official .py files from `source` into `folder`, apply the needed PATCHES, import them."""
    source = Path(source)
    missing = [name for name in OFFICIAL_FILES if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"--official {source}: not a checkout of feidfoe/learning-not-to-learn "
                         f"(missing {', '.join(missing)})")
    folder.mkdir(parents=True, exist_ok=True)
    for name in OFFICIAL_FILES:
        shutil.copyfile(source / name, folder / name)
    applied = []
    for patch in PATCHES:
        if not patch.needed:
            continue
        path = folder / patch.file
        text, count = re.subn(patch.pattern, patch.replacement, path.read_text())
        if count == 0:
            raise SystemExit(f"--official {source}: patch not applicable, {patch.describe()}")
        path.write_text(text)
        applied.append(f"{patch.describe()} [{count}x]")
    return OfficialCode(folder, _import_official(folder), applied)


def _import_official(folder: Path) -> dict:
    """Import the official modules by their own names (they import each other so); whatever held those
    names in sys.modules is put back afterwards."""
    saved = {name: sys.modules.pop(name) for name in OFFICIAL_MODULES if name in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        modules = {name: importlib.import_module(name) for name in OFFICIAL_MODULES}
    finally:
        sys.path.remove(str(folder))
        for name in OFFICIAL_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return modules


@contextlib.contextmanager
def official_importable(code: OfficialCode):
    """The official modules under their names while its DataLoader runs (spawned workers import them)."""
    saved = {name: sys.modules.get(name) for name in OFFICIAL_MODULES}
    sys.modules.update(code.modules)
    sys.path.insert(0, str(code.folder))
    try:
        yield
    finally:
        sys.path.remove(str(code.folder))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_official_data(dataset, folder: Path, color_var: float) -> Path:
    """The .npy file data_loader.WholeDataLoader loads, from the project's Colored-MNIST."""
    def hwc(split):
        return split.images.permute(0, 2, 3, 1).contiguous().numpy()

    data = {"train_image": hwc(dataset.train), "train_label": dataset.train.labels.numpy().astype(np.int64),
            "test_image": hwc(dataset.test), "test_label": dataset.test.labels.numpy().astype(np.int64)}
    path = Path(folder) / (OFFICIAL_DATA % color_var)
    np.save(path, data, allow_pickle=True)
    return path


def official_option(code: OfficialCode, color_var: float, batch_size: int, workers: int, device, name: str):
    """The official option.py's defaults, with the data folder, sigma^2, batch size and workers set."""
    argv = ["--exp_name", name, "--data_dir", str(code.folder), "--save_dir", str(code.folder),
            "--color_var", str(color_var), "--batch_size", str(batch_size), "--num_workers", str(workers),
            "--random_seed", "0"]
    if device.type == "cuda":
        argv.append("--cuda")
    return code.modules["option"].parser.parse_args(argv)


class TimedBatches:
    """What the official step methods iterate: `warmup` untimed batches, then `steps` timed ones from one
    pass of `loader` (started again if it runs out). The clock starts when the step on the last warm-up
    batch has finished (the method asks for the next batch) and stops when the last timed step has.
    CPU time is counted over the same span: this process's and its DataLoader workers'."""

    def __init__(self, loader, warmup: int, steps: int, device: torch.device):
        self.loader, self.warmup, self.steps, self.device = loader, warmup, steps, device
        self.images, self.seconds, self.cpu_seconds = 0, None, None

    def __len__(self):
        return self.warmup + self.steps

    def __iter__(self):
        iterator, start, cpu_start, cpu_done = iter(self.loader), None, None, 0.0
        for index in range(self.warmup + self.steps):
            if index == self.warmup:
                _sync(self.device)
                start, cpu_start = time.perf_counter(), _cpu_seconds(iterator)
            try:
                batch = next(iterator)
            except StopIteration:
                if cpu_start is not None:  # the finished pass's workers exit with their CPU time
                    cpu_done += _cpu_seconds(iterator) - cpu_start
                iterator = iter(self.loader)
                cpu_start = None if cpu_start is None else _cpu_seconds(iterator)
                batch = next(iterator)
            if index >= self.warmup:
                self.images += len(batch[2])
            yield batch
        _sync(self.device)
        self.seconds = time.perf_counter() - start
        self.cpu_seconds = cpu_done + _cpu_seconds(iterator) - cpu_start

    @property
    def rates(self) -> dict:
        return {"images_per_s": self.images / self.seconds, "images_per_cpu_s": self.images / self.cpu_seconds}


def _cpu_seconds(iterator=None) -> float:
    """CPU seconds of this process (all threads) and of `iterator`'s DataLoader worker processes (Linux)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for worker in getattr(iterator, "_workers", []):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def official_rate(code: OfficialCode, option, device, warmup: int, steps: int, lnl: bool) -> dict:
    """Images/s and images per CPU-second of the official Trainer._train_step (lnl) or _train_step_baseline."""
    with official_importable(code), warnings.catch_warnings():
        # Two harmless warnings of current torch on the official code, once per worker and per step.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        # What main.backend_setting does before training: the log folder, the seed, cuDNN autotuning.
        (Path(option.save_dir) / option.exp_name).mkdir(parents=True, exist_ok=True)
        torch.manual_seed(option.random_seed)
        cudnn_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = bool(getattr(option, "cudnn_benchmark", False)) and device.type == "cuda"
        trainer = code.modules["trainer"].Trainer(option)
        trainer._initialization()
        trainer._mode_setting(is_train=True)
        data = code.modules["data_loader"].WholeDataLoader(option)
        loader = DataLoader(data, batch_size=option.batch_size, shuffle=True, num_workers=option.num_workers)
        timed = TimedBatches(loader, warmup, steps, device)
        (trainer._train_step if lnl else trainer._train_step_baseline)(timed, 0)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        for handler in list(trainer.logger.handlers):  # the official logger_setting adds them per Trainer
            trainer.logger.removeHandler(handler)
            handler.close()
    return timed.rates


# ------------------------------------------------------------------ a re-creation of the official pipeline
class RecreatedData(Dataset):
    """Per-sample work as in the official data loader (a re-creation, not the official code)."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images_hwc, labels
        import torchvision.transforms as T

        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(NORMALISE_MEAN, NORMALISE_STD)])
        self.to_pil = T.ToPILImage()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.to_pil(self.images[index])
        small = torch.from_numpy(np.transpose(np.asarray(image.resize((14, 14), Image.NEAREST)), (2, 0, 1)).copy())
        mask = (small.float() - 1e-5 < 0).long() * 255
        color_label = (small // 32).long() + mask
        return self.to_tensor(image), color_label, int(self.labels[index])


class RecreatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f, self.g = FeatureExtractor(), LabelClassifier(10)

    def forward(self, x):
        feat = self.f(x)
        return feat, self.g(feat)


class RecreatedPredictor(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 8, 3, padding=1)

    def forward(self, x):
        logits = self.conv2(F.relu(self.bn(self.conv1(x))))
        return logits, logits.softmax(dim=1)


def recreation_rate(loader, device, warmup: int, steps: int, lnl: bool) -> dict:
    net = RecreatedNet().to(device)
    heads = [RecreatedPredictor().to(device) for _ in range(3)]
    make = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4)  # noqa: E731
    opt, opt_heads = make(net.parameters()), [make(h.parameters()) for h in heads]
    ce = nn.CrossEntropyLoss(ignore_index=255)
    timed = TimedBatches(loader, warmup, steps, device)
    for images, color, labels in timed:
        images, color, labels = images.to(device), color.to(device), labels.to(device)
        for o in [opt, *opt_heads]:
            o.zero_grad()
        feat, logits = net(images)
        loss = ce(logits, labels)
        if lnl:
            probs = [h(feat)[1] for h in heads]
            loss = loss + 0.01 * sum(torch.mean(torch.sum(p * torch.log(p), 1)) for p in probs) / 3
        loss.backward()
        opt.step()
        if lnl:
            for o in [opt, *opt_heads]:
                o.zero_grad()
            feat, _ = net(images)
            feat = grad_reverse(feat, 0.1)
            sum(ce(h(feat)[0], color[:, c]) for c, h in enumerate(heads)).backward()
            for o in [opt, *opt_heads]:
                o.step()
    return timed.rates


# ------------------------------------------------------------------ the project's engine
ENGINE_ROWS = {"baseline": ["method=baseline"], "lnl_alternating": ["method=lnl", "lnl.step=alternating"],
               "lnl_single_pass": ["method=lnl", "lnl.step=single_pass"]}


def engine_rate(config, dataset, device, warmup: int, steps: int) -> dict:
    """Steady images/s after `warmup` steps, and the seconds from building the networks to the end of the
    first step (``first_step_s``: where ``train.compile`` pays its compilation)."""
    built = time.perf_counter()
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8)).prepare(device)
    algorithm.begin_epoch(config.train.pretrain_epochs)  # the method's own phase (LNL: adversarial)
    algorithm.train()
    generator = torch.Generator().manual_seed(0)
    seen, done, start, cpu_start, first_step_s = 0, 0, None, None, None
    while done < warmup + steps:
        for batch in iterate_batches(dataset.train, config.train.batch_size, dataset.mean, dataset.std, generator):
            if done == warmup:
                _sync(device)
                start, cpu_start = time.perf_counter(), _cpu_seconds()
            algorithm.update(batch)
            done += 1
            if done == 1:
                _sync(device)
                first_step_s = time.perf_counter() - built
            if done > warmup:
                seen += len(batch.labels)
            if done == warmup + steps:
                break
    _sync(device)
    return {"images_per_s": seen / (time.perf_counter() - start), "images_per_cpu_s": seen / (_cpu_seconds() - cpu_start),
            "first_step_s": first_step_s}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict:
    info = {"device": device.type, "torch": torch.__version__, "numpy": np.__version__,
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16_native": native_bf16(device), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["cpu"] = _cpu_model()
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_benchmark_data(overrides: list[str]):
    """The Colored-MNIST both sides train on (the engine from memory, the official code from its .npy)."""
    config = load_config("colored-mnist", overrides)
    return config, load_dataset(config)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, metavar="DIR",
                        help="a checkout of feidfoe/learning-not-to-learn; without it the official rows are skipped")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every row, interleaved; medians reported")
    parser.add_argument("--batch-size", type=int, default=128, help="both sides (official default: 128)")
    parser.add_argument("--train-size", type=int, default=12800, help="training images of both sides")
    parser.add_argument("--official-workers", "--ref-workers", type=int, default=4,
                        help="DataLoader workers of the official code (its option.py default: 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--recreation", choices=("auto", "yes", "no"), default="auto",
                        help="also time the re-creation of the official pipeline (auto: without --official)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="engine config overrides")
    parser.add_argument("--compile", action="store_true",
                        help="also time every engine row with train.compile=true (rows suffixed _compiled)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    base = [f"train.batch_size={args.batch_size}", f"data.train_size={args.train_size}", *args.overrides]
    config, dataset = load_benchmark_data(base)
    color_var = config.data.color_var
    on_device = dataset.to(device)

    precisions = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    settings = {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "repeat": args.repeat,
                "train_size": len(dataset.train), "color_var": color_var, "official_workers": args.official_workers,
                "official_precision": "fp32", "engine_precisions": precisions, "engine_overrides": args.overrides}
    results = {"machine": machine(device), "settings": settings, "patches": [], "skipped": {}, "rows": {}}
    if not native_bf16(device):
        results["skipped"]["engine_*_bf16"] = f"bf16 is not native on this {device.type} (it would be emulated)"

    plan = []  # (row name, description, callable returning images/s)
    # What the engine rows are compared with: the official baseline step, and its LNL step for both LNL rows.
    reference_rows = [(row, lnl) for row, lnl in (("baseline", False), ("lnl", True))
                      if (lnl and any(r.startswith("lnl") for r in args.rows)) or (not lnl and "baseline" in args.rows)]
    with tempfile.TemporaryDirectory(prefix="lnl-official-") as tmp:
        if args.official is not None:
            code = prepare_official(args.official, Path(tmp) / "official")
            results["patches"] = code.patches
            results["official_dir"] = str(args.official.resolve())
            write_official_data(dataset, code.folder, color_var)
            for row, lnl in reference_rows:
                method = "_train_step" if lnl else "_train_step_baseline"

                def run(lnl=lnl, row=row, counter=[0]):
                    counter[0] += 1
                    option = official_option(code, color_var, args.batch_size, args.official_workers, device,
                                             f"bench_{row}_{counter[0]}")
                    return official_rate(code, option, device, args.warmup, args.steps, lnl)

                plan.append((f"official_{row}", f"official Trainer.{method}, fp32", run))
        else:
            results["skipped"]["official_*"] = ("no --official DIR given (a checkout of "
                                                "feidfoe/learning-not-to-learn): the official code was not run")
        if args.recreation == "yes" or (args.recreation == "auto" and args.official is None):
            hwc = dataset.train.images.permute(0, 2, 3, 1).contiguous().numpy()
            loader = DataLoader(RecreatedData(hwc, dataset.train.labels.numpy()), batch_size=args.batch_size,
                                shuffle=True, num_workers=args.official_workers,
                                pin_memory=device.type == "cuda", persistent_workers=args.official_workers > 0)
            for row, lnl in reference_rows:
                plan.append((f"recreation_{row}", "re-creation of the official pipeline (not the official code)",
                             lambda lnl=lnl: recreation_rate(loader, device, args.warmup, args.steps, lnl)))
        for precision in precisions:
            for row in args.rows:
                for compiled in (False, True) if args.compile else (False,):
                    engine_config = load_config("colored-mnist", [
                        *base, *ENGINE_ROWS[row], "train.pretrain_epochs=0", f"train.precision={precision}",
                        *(["train.compile=true"] if compiled else [])])
                    plan.append((f"engine_{row}_{precision}{COMPILED if compiled else ''}",
                                 f"engine {' '.join(ENGINE_ROWS[row])}, {precision}"
                                 + (", torch.compile" if compiled else ""),
                                 lambda c=engine_config: engine_rate(c, on_device, device, args.warmup, args.steps)))
        if results["patches"]:
            print("official code patched:", *results["patches"], sep="\n  ", file=sys.stderr)
        for reason in results["skipped"].items():
            print("skipped %s: %s" % reason, file=sys.stderr)
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
        for _ in range(args.repeat):
            for name, _, run in plan:
                runs[name].append({key: round(value, 2) for key, value in run().items()})
                print(f"{name}: {runs[name][-1]['images_per_s']} img/s, {runs[name][-1]['images_per_cpu_s']} "
                      "img per CPU-s", file=sys.stderr, flush=True)
    for name, what, _ in plan:
        results["rows"][name] = {key: round(statistics.median(run[key] for run in runs[name]), 2)
                                 for key in (*RATES, "first_step_s") if key in runs[name][0]}
        results["rows"][name].update(runs=runs[name], what=what)
    results["ratios"] = ratios(results["rows"], precisions, "images_per_s")
    results["ratios_cpu"] = ratios(results["rows"], precisions, "images_per_cpu_s")
    results["machine"]["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
    return results


def ratios(rows: dict, precisions: list[str], rate: str) -> dict:
    """engine / official (and engine / re-creation) per row and precision, where both were timed."""
    out = {}
    for against in ("official", "recreation"):
        for precision in precisions:
            for row in ROWS:
                for suffix in ("", COMPILED):
                    engine = rows.get(f"engine_{row}_{precision}{suffix}")
                    other = rows.get(f"{against}_{'baseline' if row == 'baseline' else 'lnl'}")
                    if engine and other:
                        out[f"engine_{row}_{precision}{suffix}/{against}"] = round(engine[rate] / other[rate], 2)
    return out


def report(results: dict) -> str:
    m = results["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, bf16 native: "
             f"{m['bf16_native']}, load average {m['load_average']}" + (f", {m['gpu']}" if "gpu" in m else ""),
             "settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items())]
    lines += [f"patch: {p}" for p in results["patches"]]
    lines += [f"skipped {k}: {v}" for k, v in results["skipped"].items()]
    lines += [f"{name:32s} {row['images_per_s']:>9} img/s {row['images_per_cpu_s']:>9} img/CPU-s"
              + (f"  first step {row['first_step_s']} s" if "first_step_s" in row else "") + f"  ({row['what']})"
              for name, row in results["rows"].items()]
    lines += [f"{name:40s} {value}x img/s, {results['ratios_cpu'][name]}x img/CPU-s"
              for name, value in results["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
