"""Training-time augmentation of whole batches on the training device: random resized crops and
horizontal flips, as users expect for photographs.

A batch is augmented after it is normalised, in one ``affine_grid``/``grid_sample`` call (each image
gets its own crop window and mirror as a row of an affine matrix), so there is no per-sample Python and
no trip back to the host. Evaluation, probes and prediction never augment. The random draws of a batch
come from a seed made of the run's seed, the epoch, the step and the process, so that a resumed epoch
draws exactly the crops the uninterrupted run would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from lnl_cli.data.base import Batch
from lnl_cli.schema import MAX_SEED, option

FLIP_PROBABILITY = 0.5
# torchvision's RandomResizedCrop aspect-ratio range.
DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)
# Draws per image: crop area, aspect ratio, horizontal and vertical position, flip.
DRAWS_PER_IMAGE = 5
# Mixing constants of the per-batch seed (distinct primes, so that neighbouring epochs, steps and
# processes never share a seed within any practical run).
_EPOCH_STRIDE, _STEP_STRIDE, _RANK_STRIDE = 1_000_003, 10_007, 101


@dataclass
class AugmentConfig:
    """The ``data.augment.*`` keys: what happens to each training batch (never to evaluation data)."""

    flip: bool = option(False, "mirror training images left-right with probability 1/2 (photos, not digits)")
    crop_scale: list[float] = option(
        factory=list, help="random resized crop of training images: [min, max] fraction of the image area kept "
                           "(torchvision's default [0.08, 1]); the crop is resized back to data.image_size; "
                           "empty: no crop")
    crop_ratio: list[float] = option(
        factory=lambda: [round(r, 4) for r in DEFAULT_CROP_RATIO],
        help="random resized crop: [min, max] aspect ratio (width / height) of the crop window")


def enabled(settings: AugmentConfig) -> bool:
    return settings.flip or bool(settings.crop_scale)


def check_config(settings: AugmentConfig) -> list[str]:
    """Problems of the data.augment keys, collected with every other config problem."""
    problems = []
    if settings.crop_scale:
        if len(settings.crop_scale) != 2 or not 0 < settings.crop_scale[0] <= settings.crop_scale[1] <= 1:
            problems.append(f"data.augment.crop_scale: needs [min, max] with 0 < min <= max <= 1, got "
                            f"{settings.crop_scale}")
    ratio = settings.crop_ratio
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        problems.append(f"data.augment.crop_ratio: needs [min, max] with 0 < min <= max, got {ratio}")
    return problems


def batch_seed(run_seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of one batch's draws: a function of where the batch is, not of what was drawn before."""
    return (((run_seed * _EPOCH_STRIDE + epoch) * _STEP_STRIDE + step) * _RANK_STRIDE + rank) % MAX_SEED


def crop_windows(draws: torch.Tensor, settings: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height of each crop window as fractions of the image side, from uniform draws: the area
    uniform in crop_scale, the aspect ratio log-uniform in crop_ratio (torchvision's rule). A window
    wider or taller than the image is clipped to it (torchvision redraws up to ten times instead)."""
    low, high = settings.crop_scale
    area = low + (high - low) * draws[:, 0]
    log_low, log_high = math.log(settings.crop_ratio[0]), math.log(settings.crop_ratio[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    return (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)


def augment_images(images: torch.Tensor, settings: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """N x C x H x W float images, each cropped and/or mirrored by its own draw from `generator`."""
    n = images.shape[0]
    draws = torch.rand(n, DRAWS_PER_IMAGE, generator=generator, device=images.device)
    mirrored = (draws[:, 4] < FLIP_PROBABILITY) & settings.flip
    if not settings.crop_scale:
        return torch.where(mirrored.view(n, 1, 1, 1), images.flip(3), images)
    width, height = crop_windows(draws, settings)
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = torch.where(mirrored, -width, width)
    theta[:, 1, 1] = height
    theta[:, 0, 2] = (1 - width) * (2 * draws[:, 2] - 1)  # the window's centre, anywhere it stays inside
    theta[:, 1, 2] = (1 - height) * (2 * draws[:, 3] - 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(batch: Batch, settings: AugmentConfig, seed: int) -> Batch:
    """`batch` with augmented images (labels and bias unchanged), drawn on the batch's device."""
    generator = torch.Generator(device=batch.images.device).manual_seed(seed)
    return replace(batch, images=augment_images(batch.images, settings, generator))
