import math

import torch

from lnl_cli.algorithms.lnl import bias_loss, negative_entropy
from lnl_cli.data.base import IGNORE_INDEX


def test_negative_entropy_is_minus_log_k_for_uniform_and_zero_for_certain_predictions():
    bins = 8
    uniform = torch.zeros(2, bins, 3, 4, 4)
    assert math.isclose(float(negative_entropy(uniform)), -math.log(bins), rel_tol=1e-6)
    certain = torch.full((2, bins, 3, 4, 4), -1e4)
    certain[:, 0] = 1e4
    assert abs(float(negative_entropy(certain))) < 1e-6


def test_negative_entropy_matches_the_papers_formula_and_stays_finite_when_saturated():
    torch.manual_seed(0)
    logits = torch.randn(3, 8, 3, 5, 5)
    p = logits.softmax(dim=1)
    expected = (p * p.log()).sum(dim=1).mean()
    assert torch.allclose(negative_entropy(logits), expected, atol=1e-6)
    saturated = torch.zeros(1, 8, 1, 1, 1)
    saturated[0, 0] = 200.0
    assert torch.isfinite(negative_entropy(saturated))


def test_negative_entropy_gradient_pushes_towards_uniform():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0]]).view(1, 4, 1, 1, 1).requires_grad_()
    negative_entropy(logits).backward()
    # descending the negative entropy lowers the dominant logit relative to the others
    assert logits.grad[0, 0] > 0
    assert (logits.grad[0, 1:] < 0).all()


def test_bias_loss_ignores_background_pixels_and_sums_the_three_heads():
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 3, 4, 4)
    targets = torch.randint(0, 8, (2, 3, 4, 4))
    masked = targets.clone()
    masked[:, :, :2] = IGNORE_INDEX
    changed = logits.clone()
    changed[:, :, :, :2] += 100 * torch.randn_like(changed[:, :, :, :2])  # background logits do not matter
    assert torch.allclose(bias_loss(logits, masked, 3), bias_loss(changed, masked, 3))
    per_head = sum(
        torch.nn.functional.cross_entropy(logits[:, :, c], masked[:, c], ignore_index=IGNORE_INDEX) for c in range(3))
    assert torch.allclose(bias_loss(logits, masked, 3), per_head, atol=1e-6)
