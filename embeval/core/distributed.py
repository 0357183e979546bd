"""Multi-process training helpers: torchrun set-up and SimCSE's gradient-preserving all-gather.

With `torchrun --nproc_per_node N -m embeval.cli train ...` every process encodes its own
slice of the global batch; the embeddings are all-gathered so that each anchor sees the
whole global batch as negatives (SimCSE, `cl_forward`). `all_gather` returns tensors without
autograd history, so the local slice is put back in place: gradients flow to this process's
embeddings, and DDP's gradient all-reduce combines the slices.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def init_from_env() -> torch.device | None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this rank's device.

    Returns None when not launched by torchrun (single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        log.info("process group %s: rank %d of %d", backend, rank(), world_size())
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def all_gather_objects(obj) -> list:
    """Every process's `obj`, in rank order (picklable objects; a collective call)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:  # () -> ()
    """`x` averaged over processes (a copy; a collective call). Single process: `x`."""
    if world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / world_size()


def average_gradients(params) -> None:
    """Average the .grad of `params` over processes in place: what DDP does for the model, for
    weights outside it (an objective's head). Every process passes the same parameters."""
    if world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:  # (b, D) -> (world * b, D)
    """All-gather along dim 0, keeping autograd history for this process's own slice.

    Every process must pass the same shape (equal per-process batches; the trainer drops the
    ragged last batch when world > 1). Single process, or no rows (an empty queue at an
    epoch's start, empty on every process alike): `x` itself; gloo's all-gather of empty
    tensors aborts now and then (SIGABRT) instead of returning.
    """
    n = world_size()
    if n == 1 or x.shape[0] == 0:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank()] = x  # the local slice, with its gradient path
    return torch.cat(parts, 0)
