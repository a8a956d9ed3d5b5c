"""Gradient reversal (Ganin & Lempitsky, 2015): identity forward, -scale * gradient backward."""

from __future__ import annotations

import torch


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.scale, None


def grad_reverse(x: torch.Tensor, scale: float) -> torch.Tensor:
    """f is trained to *increase* the loss of whatever reads this tensor, at `scale` strength."""
    return _GradReverse.apply(x, scale)
