"""BatchNorm on the input images followed by a convolution, without the gradient the images do not need.

The paper's network starts with ``conv(bn(x))`` on the images. Autograd gets the batch norm's two
parameters from the gradient with respect to the convolution's input, a full transposed convolution that
is the costliest kernel of the whole backward pass on a CPU (3 output channels from 32), followed by the
batch norm's backward. The images themselves need no gradient, and with y = gamma * x_hat + beta (x_hat:
the images normalised by the batch statistics; zero padding added after) the same gradients follow from
weight gradients alone, for the incoming gradient G:

    A = weight gradient of the convolution for the input x_hat      (one kernel, as costly as dW)
    B = weight gradient for an all-ones image (summed over the batch: a tiny kernel)
    dW = gamma_c * A + beta_c * B        d gamma_c = sum_{o,k} W[o,c,k] A[o,c,k]
    d beta_c = sum_{o,k} W[o,c,k] B[o,k]  d bias = sum of G

Exact algebra: the same gradients as autograd's, up to float rounding. The batch statistics, the running
statistics and their counter are those of the module in training mode (``_normalise`` follows
``BatchNorm2d.forward``); x_hat is kept for the backward pass, and y = gamma * x_hat + beta is formed in
the forward.
"""

from __future__ import annotations

import torch
from torch import nn


class _AffineInputConv(torch.autograd.Function):
    """conv(gamma * x_hat + beta) for the normalised images x_hat; gradients for gamma, beta, W and the bias."""

    @staticmethod
    def forward(ctx, x_hat, gamma, beta, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x_hat, gamma, beta, weight)
        ctx.conv = (stride, padding, dilation, bias is not None)
        shape = (1, -1, 1, 1)
        y = torch.addcmul(beta.view(shape), x_hat, gamma.view(shape))  # the batch norm's output
        return torch.nn.functional.conv2d(y, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        x_hat, gamma, beta, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conv
        conv_backward = torch.ops.aten.convolution_backward
        bias_sizes = [weight.shape[0]] if has_bias else None
        _, a, grad_bias = conv_backward(grad, x_hat, weight, bias_sizes, stride, padding, dilation,
                                        False, [0, 0], 1, [False, True, has_bias])
        ones = x_hat.new_ones(1, 1, *x_hat.shape[2:])
        _, b, _ = conv_backward(_batch_sum(grad), ones, weight[:, :1], None, stride, padding, dilation,
                                False, [0, 0], 1, [False, True, False])
        grad_weight = a * gamma.view(1, -1, 1, 1) + b * beta.view(1, -1, 1, 1)
        grad_gamma = (weight * a).sum(dim=(0, 2, 3))
        grad_beta = (weight * b).sum(dim=(0, 2, 3))
        return None, grad_gamma, grad_beta, grad_weight, grad_bias, None, None, None


def _normalise(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """x_hat: `x` normalised by its batch statistics, without the affine part, with the running statistics
    and their counter updated exactly as ``norm(x)`` in training mode does."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    stats = (norm.running_mean, norm.running_var) if norm.track_running_stats else (None, None)
    return torch.nn.functional.batch_norm(x, *stats, None, None, True, factor, norm.eps)


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _like(t: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """`t` in the memory layout of `layout` (NCHW or channels-last)."""
    return t.contiguous(memory_format=torch.channels_last if _channels_last(layout) else torch.contiguous_format)


def _batch_sum(t: torch.Tensor) -> torch.Tensor:
    """t.sum(0, keepdim=True), summed along memory: a channels-last reduction over the batch is slow on a CPU."""
    if not _channels_last(t):
        return t.sum(dim=0, keepdim=True)
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(n, -1).sum(dim=0).view(1, h, w, c).permute(0, 3, 1, 2)


def fits(norm: nn.BatchNorm2d, conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether `x` and the modules are what the shortcut computes exactly: training mode with batch
    statistics, an affine batch norm, a plain zero-padded convolution, no gradient wanted for the input,
    no autocast (its dtype rules are autograd's). Only a plain BatchNorm2d: a subclass such as the
    global-batch norm of several processes (distributed.GlooSyncBatchNorm2d) computes other statistics."""
    return (type(norm) is nn.BatchNorm2d and torch.is_grad_enabled() and norm.training and norm.affine
            and not x.requires_grad
            and x.dim() == 4 and conv.groups == 1 and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str) and not torch.is_autocast_enabled(x.device.type)
            and norm.weight.requires_grad and norm.bias.requires_grad and conv.weight.requires_grad
            and (conv.bias is None or conv.bias.requires_grad))


def input_norm_conv(norm: nn.BatchNorm2d, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(norm(x))``: the same values, gradients and statistics updates; on a CPU the batch norm runs on
    NCHW (channels-last over 3 channels is several times slower there) and the backward skips the images'
    gradient where `fits`."""
    if x.device.type != "cpu":  # measured on CPUs only
        return conv(norm(x))
    layout = x  # the convolution's layout; the batch norm over a few channels is far faster on NCHW on a CPU
    x = x.contiguous()
    if not fits(norm, conv, x):
        return conv(_like(norm(x), layout))
    with torch.no_grad():
        x_hat = _like(_normalise(norm, x), layout)
    return _AffineInputConv.apply(x_hat, norm.weight, norm.bias, conv.weight, conv.bias, conv.stride, conv.padding,
                                  conv.dilation)
