"""gather_with_grad on CPU: 2 gloo processes vs one process on the full batch; launchers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_helpers import WORDS, read_log, write_sentences

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


def _train(out, batch_size: int, pooler: str, rank: int = 0) -> None:
    """3 steps on 24 short sentences; the first step's gradients go to out/../grads{rank}.pt."""
    from embeval.core.model import random_tiny
    from embeval.core.trainer import TrainConfig, Trainer

    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(  # dropout masks come from each process's RNG: only 0 can match
        batch_size=batch_size,
        steps=3,
        lr=1e-3,
        max_length=16,
        eval_steps=3,
        seed=7,
        pooler=pooler,
        dropout=0.0,
        max_grad_norm=0.0,  # the raw gradients: clipping to norm 1 would hide a wrong scale
    )
    data = out.parent / "train.txt"
    if rank == 0:
        write_sentences(data, n=24)
    distributed.barrier()
    tr = Trainer(backbone, tok, data, cfg, out, device="cpu", progress=False)

    def keep_grads(trainer, step):
        if step == 1:
            grads = {
                n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None
            }
            torch.save(grads, out.parent / f"grads{rank}.pt")

    tr.on_step_end.append(keep_grads)
    tr.train()


def _train_worker(rank: int, world: int, port: int, out, pooler: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _train(out, 4, pooler, rank)  # 4 per process, 8 global
    finally:
        dist.destroy_process_group()


def _losses(out):
    return [r["loss"] for r in read_log(out) if "loss" in r]


@pytest.mark.parametrize("pooler", ["cls", "avg"])
def test_two_process_training_equals_one_process_on_the_global_batch(tmp_path, pooler):
    """The whole torchrun path on CPU (gloo): DDP, per-rank batch slices, gathered negatives,
    the world-size loss scaling, rank-0 saving. 2 processes x 4 sentences must compute the loss
    and the gradient of one process with batch 8 (Adam would hide a wrong gradient scale in the
    weights, so the gradients are compared), and end at the same weights up to float noise that
    Adam's normalisation amplifies. `avg` leaves the MLP pooler unused, which DDP must accept."""
    from safetensors.torch import load_file

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _train(one / "out", 8, pooler)
    mp.spawn(_train_worker, args=(2, _free_port(), two / "out", pooler), nprocs=2, join=True)

    assert _losses(two / "out") == pytest.approx(_losses(one / "out"), rel=1e-5)
    g1 = torch.load(one / "grads0.pt")
    for rank in (0, 1):
        g2 = torch.load(two / f"grads{rank}.pt")
        assert g2.keys() == g1.keys()
        for k in g1:
            torch.testing.assert_close(g2[k], g1[k], atol=1e-6, rtol=1e-4, msg=k)
    w1 = load_file(one / "out" / "last" / "model.safetensors")
    w2 = load_file(two / "out" / "last" / "model.safetensors")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-4, rtol=0, msg=k)


def _objective_run(out, batch_size: int, rank: int = 0) -> None:
    """SBERT's NLI objective, 3 steps on 12 triplets (24 labelled pairs), dropout 0; the first
    step's gradients of the encoder and of the head (outside DDP) go to out/../grads{rank}.pt,
    unclipped (clipping to norm 1 would hide a wrong scale)."""
    from embeval.core.model import random_tiny
    from embeval.core.trainer import TrainConfig, Trainer

    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(batch_size=batch_size, steps=3, lr=1e-3, max_length=16, eval_steps=3,
                      seed=7, pooler="avg", eval_pooler="avg", dropout=0.0, log_steps=1,
                      objective="sbert-nli", max_grad_norm=0.0)  # fmt: skip
    data = out.parent / "nli.csv"
    if rank == 0:
        w = lambda i, k: " ".join(WORDS[(i * k + j) % 16] for j in range(3 + i % 4))  # noqa: E731
        rows = [f"{w(i, 1)},{w(i, 3)},{w(i, 5)}" for i in range(12)]
        data.write_text("sent0,sent1,hard_neg\n" + "\n".join(rows) + "\n")
    distributed.barrier()
    tr = Trainer(backbone, tok, data, cfg, out, device="cpu", progress=False)

    def keep_grads(trainer, step):
        if step == 1:
            head = trainer.objective.named_parameters(prefix="head")
            named = [*backbone.named_parameters(), *head]
            grads = {n: p.grad.clone() for n, p in named if p.grad is not None}
            torch.save(grads, out.parent / f"grads{rank}.pt")

    tr.on_step_end.append(keep_grads)
    tr.train()
    if rank == 0:
        torch.save(tr.objective.state_dict(), out.parent / "head.pt")


def _objective_worker(rank: int, world: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _objective_run(out, 4, rank)  # 4 pairs per process, 8 global
    finally:
        dist.destroy_process_group()


def test_an_objective_on_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    """An objective's head is outside DDP: its gradients are averaged by hand, and its loss (a
    per-process mean) enters the backward pass at 1 / world. 2 processes x 4 pairs must give
    the loss values, the encoder's and the head's gradients, and the weights of 1 x 8."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _objective_run(one / "out", 8)
    mp.spawn(_objective_worker, args=(2, _free_port(), two / "out"), nprocs=2, join=True)

    assert _losses(two / "out") == pytest.approx(_losses(one / "out"), rel=1e-5)
    g1 = torch.load(one / "grads0.pt")
    assert any(k.startswith("head.") for k in g1)
    for rank in (0, 1):
        g2 = torch.load(two / f"grads{rank}.pt")
        assert g2.keys() == g1.keys()
        for k in g1:
            torch.testing.assert_close(g2[k], g1[k], atol=1e-6, rtol=1e-4, msg=k)
    h1, h2 = torch.load(one / "head.pt"), torch.load(two / "head.pt")
    for k in h1:
        torch.testing.assert_close(h2[k], h1[k], atol=2e-4, rtol=0, msg=k)


class _Stop(Exception):
    pass


def _resumable_worker(
    rank: int, port: int, out, stop_at: int | None, resume: bool, fields: dict | None = None
) -> None:
    """2 processes, dropout on, sentences of uneven length (so each rank's padded batches, and
    with them its dropout RNG stream, differ; the longer ones are cut to 8 tokens); 5 steps,
    last/ saved at steps 2 and 4; `fields`: more TrainConfig settings."""
    from embeval.core.model import random_tiny
    from embeval.core.trainer import TrainConfig, Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)  # one thread per rank, as torchrun sets OMP_NUM_THREADS=1
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
        cfg = TrainConfig(
            batch_size=4, steps=5, lr=1e-3, max_length=8, eval_steps=2, seed=7, **(fields or {})
        )
        cfg.log_steps = 1
        data = out.parent / "train.txt"
        tr = Trainer(backbone, tok, data, cfg, out, device="cpu", progress=False)

        def stop(trainer, step):
            if step == stop_at:  # right after the collective save at step 2
                raise _Stop

        tr.on_step_end.append(stop)
        try:
            tr.train(resume=resume)
        except _Stop:
            pass
        # Both ranks past their last collective before either tears the group down: a rank
        # that destroys it while the other's gloo thread still sends aborts the other (SIGABRT).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _stopped_and_resumed(tmp_path, lines, fields=None) -> None:
    """tmp_path/full: 5 steps uninterrupted; tmp_path/part: stopped after step 2, resumed."""
    for run in ("full", "part"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "train.txt").write_text("\n".join(lines) + "\n")
    full, part = tmp_path / "full" / "out", tmp_path / "part" / "out"
    mp.spawn(_resumable_worker, args=(_free_port(), full, None, False, fields), nprocs=2)
    mp.spawn(_resumable_worker, args=(_free_port(), part, 2, False, fields), nprocs=2)
    mp.spawn(_resumable_worker, args=(_free_port(), part, None, True, fields), nprocs=2)


def _same_weights(tmp_path) -> None:
    from safetensors.torch import load_file

    full = load_file(tmp_path / "full" / "out" / "last" / "model.safetensors")
    part = load_file(tmp_path / "part" / "out" / "last" / "model.safetensors")
    assert full.keys() == part.keys()
    for k in full:
        assert torch.equal(full[k], part[k]), k
    assert _losses(tmp_path / "part" / "out") == _losses(tmp_path / "full" / "out")


def test_two_process_resume_restores_every_rank_s_momentum_queue(tmp_path):
    """ESimCSE on 2 processes: each rank queues its own anchors' momentum embeddings, so the
    queues differ by rank; stopped after step 2 (queues of steps 1-2 in the same epoch) and
    resumed, the run ends at the uninterrupted weights only if every rank gets its own back."""
    lines = [" ".join(WORDS[(i + j) % 16] for j in range(2 + (i * 5) % 11)) for i in range(24)]
    fields = {"view": "esimcse", "negatives": ["momentum-queue"]}
    fields["negatives_args"] = {"queue_size": 8}
    _stopped_and_resumed(tmp_path, lines, fields)
    _same_weights(tmp_path)


def test_two_process_resume_restores_every_rank_s_rng(tmp_path):
    """Stopped after step 2 and resumed, a 2-process run ends at the weights (and truncation
    count) of an uninterrupted one. Each rank's dropout stream has its own state by then;
    restoring rank 0's on both (as a single saved RNG state would) gives rank 1 other masks and
    other weights."""
    lines = [" ".join(WORDS[(i + j) % 16] for j in range(2 + (i * 5) % 11)) for i in range(24)]
    _stopped_and_resumed(tmp_path, lines)
    _same_weights(tmp_path)
    # The truncation count covers both ranks' slices: every sentence drawn in the 5 global
    # batches of 8 (epoch order as the Trainer draws it) that is longer than 8 tokens.
    from embeval.core.model import random_tiny
    from embeval.core.train_data import epoch_order

    tok = random_tiny(0, hidden=32, layers=1, heads=2)[1]
    drawn = [epoch_order(24, 7, step // 3)[(step % 3) * 8 :][:8].tolist() for step in range(5)]
    expected = sum(len(tok(lines[i])["input_ids"]) > 8 for batch in drawn for i in batch)
    assert 0 < expected < 40
    for run in ("full", "part"):
        assert read_log(tmp_path / run / "out")[-1]["truncated"] == expected, run


@pytest.mark.slow
def test_accelerate_launch_runs_the_multi_process_path(tmp_path):
    """`accelerate launch --multi_gpu` starts its processes through torch.distributed.run with
    the environment torchrun sets, so `embeval train` joins one process group (gloo on CPU) and
    splits the global batch as under torchrun."""
    data, out = write_sentences(tmp_path / "train.txt", n=32), tmp_path / "out"
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "-m", "embeval.cli"]
    train = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    train += ["--steps", "3", "--batch-size", "4", "--no-eval", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([*launch, *train], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["total_steps"] == 3
    assert [r["step"] for r in read_log(out) if "loss" in r][-1] == 3
    assert (out / "best" / "model.safetensors").is_file()
