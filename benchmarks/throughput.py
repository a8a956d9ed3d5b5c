"""Training and evaluation throughput: the project's engine against a faithful reference pipeline.

The reference reproduces the official implementation's design in this file: images kept as
HWC uint8 arrays, per-sample PIL conversion, 14x14 nearest resize for the colour labels and
ToTensor/Normalize inside a DataLoader, separate R/G/B predictor modules with their own
optimizers, and two forward passes of the whole network per LNL step. Same networks, same batch
size. One process, so both sides see the same machine state.

    python benchmarks/throughput.py                 # CPU, ~3 minutes
    python benchmarks/throughput.py --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.algorithms.grad_reverse import grad_reverse
from lnl_cli.data import iterate_batches, load_dataset
from lnl_cli.data.colored_mnist import NORMALISE_MEAN, NORMALISE_STD
from lnl_cli.metrics import EVAL_BATCH_SIZE, count_predictions
from lnl_cli.models import FeatureExtractor, LabelClassifier


# ------------------------------------------------------------------ the reference pipeline
class ReferenceData(Dataset):
    """Per-sample work as in the official data loader."""

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


class ReferenceNet(nn.Module):
    """The official convnet: one module returning (features, logits)."""

    def __init__(self):
        super().__init__()
        self.f, self.g = FeatureExtractor(), LabelClassifier(10)

    def forward(self, x):
        feat = self.f(x)
        return feat, self.g(feat)


class ReferencePredictor(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 8, 3, padding=1)

    def forward(self, x):
        logits = self.conv2(F.relu(self.bn(self.conv1(x))))
        return logits, logits.softmax(dim=1)


def reference_steps(loader, device, steps: int, lnl: bool) -> float:
    """Images per second of the official training step design."""
    net = ReferenceNet().to(device)
    heads = [ReferencePredictor().to(device) for _ in range(3)]
    make = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4)  # noqa: E731
    opt, opt_heads = make(net.parameters()), [make(h.parameters()) for h in heads]
    ce = nn.CrossEntropyLoss(ignore_index=255)
    seen, start, done = 0, None, 0
    while done < steps + 3:
        for images, color, labels in loader:
            if done == 3:
                _sync(device)
                start = time.perf_counter()
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
            done += 1
            if done > 3:
                seen += len(labels)
            if done == steps + 3:
                break
    _sync(device)
    return seen / (time.perf_counter() - start)


# ------------------------------------------------------------------ the project's engine
def engine_steps(config, dataset, device, steps: int) -> float:
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8)).prepare(device)
    algorithm.begin_epoch(config.train.pretrain_epochs)  # the method's own phase
    algorithm.train()
    generator = torch.Generator().manual_seed(0)
    seen, done, start = 0, 0, None
    while done < steps + 3:
        for batch in iterate_batches(dataset.train, config.train.batch_size, dataset.mean, dataset.std, generator):
            if done == 3:
                _sync(device)
                start = time.perf_counter()
            algorithm.update(batch)
            done += 1
            if done > 3:
                seen += len(batch.labels)
            if done == steps + 3:
                break
    _sync(device)
    return seen / (time.perf_counter() - start), algorithm


def engine_eval(algorithm, dataset, device) -> float:
    count_predictions(algorithm, dataset.test, dataset)  # warm-up
    _sync(device)
    start = time.perf_counter()
    count_predictions(algorithm, dataset.test, dataset, EVAL_BATCH_SIZE)
    _sync(device)
    return len(dataset.test) / (time.perf_counter() - start)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device) -> float:
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return round(peak, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per configuration (after 3 warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ref-workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    base = [f"train.batch_size={args.batch_size}", "data.train_size=12800", *args.overrides]
    dataset = load_dataset(load_config("colored-mnist", base))
    on_device = dataset.to(device)
    hwc = dataset.train.images.permute(0, 2, 3, 1).contiguous().numpy()
    loader = DataLoader(ReferenceData(hwc, dataset.train.labels.numpy()), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.ref_workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.ref_workers > 0)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "batch_size": args.batch_size, "steps": args.steps}
    for name, lnl in (("reference_baseline", False), ("reference_lnl", True)):
        results[name] = round(reference_steps(loader, device, args.steps, lnl), 1)
        print(f"{name}: {results[name]} img/s", file=sys.stderr, flush=True)
    _peak_mb(device)
    variants = {"engine_baseline": ["method=baseline"], "engine_lnl_alternating": ["method=lnl", "lnl.step=alternating"],
                "engine_lnl_single_pass": ["method=lnl", "lnl.step=single_pass"]}
    for name, overrides in variants.items():
        config = load_config("colored-mnist", [*base, *overrides, "train.pretrain_epochs=0"])
        rate, algorithm = engine_steps(config, on_device, device, args.steps)
        results[name] = round(rate, 1)
        results[name + "_eval"] = round(engine_eval(algorithm, on_device, device), 1)
        results[name + "_peak_mb"] = _peak_mb(device)
        print(f"{name}: {results[name]} img/s train, {results[name + '_eval']} img/s eval", file=sys.stderr,
              flush=True)
    results["speedup_baseline"] = round(results["engine_baseline"] / results["reference_baseline"], 2)
    results["speedup_lnl_alternating"] = round(results["engine_lnl_alternating"] / results["reference_lnl"], 2)
    results["speedup_lnl_single_pass"] = round(results["engine_lnl_single_pass"] / results["reference_lnl"], 2)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
