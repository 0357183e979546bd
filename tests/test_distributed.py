"""gather_with_grad on CPU: 2 gloo processes vs one process on the full batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embeval.core import distributed, losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _full_batch(seed: int = 0):
    """Both views of an 8-sentence global batch, (8, 4) each; deterministic."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)


def _loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    sim = torch.nn.functional.normalize(z1, dim=1) @ torch.nn.functional.normalize(z2, dim=1).T
    return losses.focal_infonce(sim, 0.05)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        z1, z2 = _full_batch()
        b = 8 // world
        x1 = z1[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        x2 = z2[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        g1, g2 = distributed.gather_with_grad(x1), distributed.gather_with_grad(x2)
        loss = _loss(g1, g2)
        loss.backward()
        out[rank] = (g1.detach(), loss.item(), x1.grad.clone(), x2.grad.clone())
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_two_processes_matches_one_process():
    z1, z2 = _full_batch()
    y1, y2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full_loss = _loss(y1, y2)
    full_loss.backward()

    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)

    for r in (0, 1):
        gathered, loss, gx1, gx2 = out[r]
        assert torch.equal(gathered, z1)  # every rank sees the whole global batch, in order
        assert abs(loss - full_loss.item()) < 1e-5  # same loss as one process on the full batch
    # Gradients reach each rank's own slice; together they are the full-batch gradient.
    assert torch.allclose(torch.cat([out[0][2], out[1][2]]), y1.grad, atol=1e-6)
    assert torch.allclose(torch.cat([out[0][3], out[1][3]]), y2.grad, atol=1e-6)


def test_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert distributed.world_size() == 1 and distributed.is_main()
