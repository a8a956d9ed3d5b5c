"""Several processes training one model (torchrun): process group, gradient averaging, agreement.

There are no DDP module wrappers. Every process holds the same networks and optimizers; before each
optimizer step the algorithm averages that optimizer's gradients across processes
(:func:`average_gradients`), so a parameter's gradient is averaged exactly once per step however
many backward passes produced it (LNL's alternating step runs two through f). Parameters stay
bitwise identical on every process because they start identical (:func:`broadcast_state`) and
receive identical averaged gradients.

Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) every helper is a no-op and nothing
here touches the single-process path.
"""

from __future__ import annotations

import gc
import os
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from lnl_cli.errors import EXIT_SIGINT, EXIT_SIGTERM, ConfigError, TrainingDiverged, TrainingInterrupted
from lnl_cli.runtime import StopRequest

# Largest flat buffer of gradients all-reduced at once (DDP's default bucket size).
GRADIENT_BUCKET_BYTES = 25 * 2 ** 20
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_world_size() -> int:
    """Processes torchrun started (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside a torchrun worker of a job with more than one process."""
    return launched_world_size() > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (also before the process group exists and after it is gone): the one that writes."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """cuda:LOCAL_RANK under torchrun (one GPU per process), else `device` unchanged."""
    if not launched() or device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                          "start at most one process per GPU (--nproc-per-node)")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def choose_backend(requested: str, device: torch.device) -> str:
    """auto: NCCL for CUDA tensors, gloo for CPU tensors."""
    backend = requested if requested != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("dist.backend=nccl needs device=cuda; use dist.backend=gloo (or auto) on the CPU")
    return backend


def setup(requested_backend: str, device: torch.device) -> None:
    """Join the process group torchrun described in the environment; a no-op in a single process."""
    if not launched() or is_distributed():
        return
    missing = [name for name in LAUNCH_ENV if name not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start with torchrun")
    backend = choose_backend(requested_backend, device)
    dist.init_process_group(backend, init_method="env://",
                            device_id=device if device.type == "cuda" else None)


def finish() -> None:
    """Every process waits for the others before leaving: one that closes its connections while a
    peer still finishes its last steps could make gloo abort that peer."""
    if is_distributed():
        dist.barrier()


def teardown() -> None:
    """Leave the process group, then collect garbage: gloo work objects and the tensors they hold, kept
    alive by reference cycles (an exception's traceback), must not be freed during interpreter shutdown,
    where gloo can abort the process."""
    if is_distributed():
        dist.destroy_process_group()
        gc.collect()


def agree(sums: dict[str, torch.Tensor], seen: int, stop: StopRequest) -> tuple[dict[str, torch.Tensor], int]:
    """Loss sums and sample count over all processes, and a stop every process agrees on.

    The training loop calls it where it checks the losses anyway (every few steps): one all-reduce
    carries the sums, the count and each process's stop flags, so a NaN on any process makes the
    sums NaN everywhere (all processes raise together) and a signal that reached any process stops
    all of them at the same step. One process: the inputs unchanged."""
    if not is_distributed():
        return sums, seen
    device = next(iter(sums.values())).device
    local = {f"loss/{name}": value for name, value in sums.items()}
    local.update({name: torch.tensor(value, dtype=torch.float64, device=device)
                  for name, value in {"seen": seen, **_stop_flags(stop)}.items()})
    total = all_reduce_dict(local)
    _take_agreed_stop(stop, {name: float(total[name]) for name in _stop_flags(stop)})
    return {name: total[f"loss/{name}"] for name in sums}, int(total["seen"])


def stop_agreed(stop: StopRequest) -> bool:
    """Between epochs: has any process been asked to stop? (One small all-reduce when distributed.)"""
    if is_distributed():
        counts = all_reduce_dict({k: torch.tensor(v) for k, v in _stop_flags(stop).items()})
        _take_agreed_stop(stop, {k: float(v) for k, v in counts.items()})
    return stop.requested


def _stop_flags(stop: StopRequest) -> dict[str, float]:
    return {"stop/SIGINT": float(stop.signal_name == "SIGINT"),
            "stop/SIGTERM": float(stop.signal_name not in (None, "SIGINT"))}


def _take_agreed_stop(stop: StopRequest, counts: dict[str, float]) -> None:
    """Every process takes the same stop, and so exits with the same code: SIGINT if any process
    got one, else SIGTERM if any process got a signal."""
    if counts["stop/SIGINT"] > 0:
        stop.request("SIGINT", EXIT_SIGINT)
    elif counts["stop/SIGTERM"] > 0:
        stop.request("SIGTERM", EXIT_SIGTERM)


def run_in_group(body: Callable[[], Any]) -> Any:
    """Run `body`, then leave the process group (if any) together.

    Processes wait for each other before tearing down: one that closes its connections while a peer is
    still finishing can make gloo abort that peer. A finished run and an agreed stop (a signal or a NaN:
    every process raises it at the same step) reach the barrier on every process; any other error may
    be one process's alone, so it leaves without waiting (torchrun then ends the job)."""
    try:
        result = body()
        finish()
        return result
    except (TrainingInterrupted, TrainingDiverged):
        finish()
        raise
    finally:
        teardown()


def _reduce_device(tensor: torch.Tensor) -> torch.device:
    """NCCL reduces only CUDA tensors: CPU tensors travel to this process's GPU and back."""
    if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over all processes, as a new tensor on its device (a copy when not distributed)."""
    if not is_distributed():
        return tensor.clone()
    work = tensor.to(_reduce_device(tensor), copy=True)
    dist.all_reduce(work)
    return work.to(tensor.device)


def all_reduce_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum each tensor over all processes in one collective (same keys, shapes and dtypes everywhere)."""
    if not is_distributed():
        return tensors
    names = sorted(tensors)
    flat = all_reduce_sum(torch.cat([tensors[name].reshape(-1).double() for name in names]))
    out, offset = {}, 0
    for name in names:
        original = tensors[name]
        out[name] = flat[offset:offset + original.numel()].view(original.shape).to(original.dtype)
        offset += original.numel()
    return out


def _buckets(tensors: list[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    """Consecutive runs of same-dtype, same-device tensors of at most GRADIENT_BUCKET_BYTES."""
    bucket: list[torch.Tensor] = []
    size = 0
    for tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and (size + nbytes > GRADIENT_BUCKET_BYTES or tensor.dtype != bucket[0].dtype
                       or tensor.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(tensor)
        size += nbytes
    if bucket:
        yield bucket


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over processes: one flattened all-reduce per bucket.

    Parameters without a gradient (a head the step did not use) are skipped; the graph, and so the
    set of gradients, is the same on every process."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    world = dist.get_world_size()
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for grad in bucket:
            grad.copy_(flat[offset:offset + grad.numel()].view(grad.shape))
            offset += grad.numel()


def broadcast_state(module: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere, so all processes start from the same weights."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        with torch.no_grad():
            work = tensor.detach().to(_reduce_device(tensor), copy=True)
            dist.broadcast(work, src=0)
            tensor.copy_(work)


def average_buffers(module: nn.Module) -> None:
    """Floating-point buffers (BatchNorm running statistics) averaged over processes.

    Without synchronised BatchNorm each process tracks statistics of its own shares; averaging them
    before evaluating or saving makes the evaluated and saved model one model, identical on all
    ranks. With synchronised BatchNorm they are already equal and this leaves them so."""
    if not is_distributed():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    averaged = all_reduce_dict({str(i): b for i, b in enumerate(buffers)})
    world = dist.get_world_size()
    with torch.no_grad():
        for i, buffer in enumerate(buffers):
            buffer.copy_(averaged[str(i)] / world)


def global_mean(local_mean: torch.Tensor, local_count: torch.Tensor) -> torch.Tensor:
    """Rescale a mean over this process's `local_count` items so that averaging the processes' values
    (and gradients) gives the mean over all items of the global batch, as one process computes it.

    Needed where shares hold different numbers of items, e.g. stroke pixels of a per-pixel loss."""
    if not is_distributed():
        return local_mean
    count = local_count.to(local_mean.dtype)
    total = all_reduce_sum(count.detach())
    return local_mean * (count * dist.get_world_size() / total)


# ---------------------------------------------------------------------------- synchronised BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _AllReduceSum.apply(grad)


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the global batch on any backend (torch's SyncBatchNorm runs on GPUs only).

    Training-mode statistics are sums all-reduced across processes (two-pass: mean, then centred
    squares), differentiably, so the gradients equal those of one process seeing the whole batch.
    Same parameters and buffers as BatchNorm2d: checkpoints load into plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not is_distributed():
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        data = x.float()
        local = torch.cat([data.sum(dims), data.new_tensor([data.numel() / data.shape[1]])])
        stats = _AllReduceSum.apply(local)
        count = stats[-1]
        mean = stats[:-1] / count
        centred = data - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        self._track(mean.detach(), var.detach(), count.detach())
        return out.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(var * count / (count - 1), alpha=factor)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d computes its statistics over the global batch: torch's SyncBatchNorm on CUDA,
    GlooSyncBatchNorm2d elsewhere. Parameters are the same objects, so optimizers keep working."""
    if not is_distributed():
        return module
    device = next(module.parameters()).device
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for child in module.modules():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = GlooSyncBatchNorm2d
    return module
