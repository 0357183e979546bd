"""Evaluation sharded over processes: split/gather, 2 gloo processes vs 1, the shared cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from click.testing import CliRunner
from conftest import FakeEncoder, write_tiny_sts

from embeval.cli import main
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.encoders.shard import ShardedEncoder, ShardError, assemble, share
from embeval.eval.scoring.score import score
from embeval.results.files import load_run

# Figures (in percent) of 2 processes vs 1 agree to 1e-4, the batch-composition invariance the
# STS figures have (CHANGELOG): each process batches its own share, so vectors differ by ~1e-7
# and Pearson by ~1e-6 (measured 1.4e-6 on STS-B, --limit 64); Spearman is usually identical.
TOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each process, and its process group (gloo, CPU)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(LOCAL_RANK=str(rank), WORLD_SIZE=str(world), CUDA_VISIBLE_DEVICES="")
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=90))


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_share_covers_every_sentence_once_in_balanced_shares(world):
    lengths = np.random.default_rng(0).integers(1, 200, size=101)
    shares = [share(lengths, r, world) for r in range(world)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(101))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    totals = [int(lengths[s].sum()) for s in shares]  # longest first, dealt round-robin
    assert max(totals) - min(totals) <= lengths.max()
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        share(lengths, 2, 2)


def test_assemble_restores_the_order_and_refuses_a_gap():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    parts = [(share([3, 1, 4, 1, 5, 9], r, 2), None) for r in range(2)]
    parts = [(idx, x[idx]) for idx, _ in parts]
    assert np.array_equal(assemble(parts, 6), x)
    with pytest.raises(ShardError, match="1 of 6 sentences were encoded by no process"):
        assemble([(np.array([0, 1, 2, 3, 4]), x[:5])], 6)


class _Failing(FakeEncoder):
    def encode(self, sentences):
        raise RuntimeError("out of memory")


def _score_worker(rank: int, port: int, data: Path, cache: Path, out) -> None:
    """First rank 1's encoder fails (every rank must raise, none wait); then both score."""
    _join(rank, 2, port)
    try:
        try:
            score(ShardedEncoder(_Failing() if rank else FakeEncoder()), root=data)
        except Exception as exc:
            out[f"error{rank}"] = (type(exc).__name__, str(exc))
        inner = FakeEncoder()
        run = score(ShardedEncoder(CachedEncoder(inner, cache)), root=data)
        shard = [s for call in inner.calls for s in call]
        out[rank] = (shard, None if run is None else (run.tasks, run.meta, run.pairs))
    finally:
        dist.destroy_process_group()


def test_two_processes_score_like_one_and_share_one_cache(tmp_path):
    """FakeEncoder's vectors do not depend on the batch, so rank 0's figures must equal one
    process's exactly; each rank encodes a disjoint share; both write one cache, which a fresh
    single-process run then reads back whole (nothing re-encoded). Before that, a rank whose
    encoder raises makes rank 0 raise too, naming it, instead of waiting in the gather."""
    data, cache = write_tiny_sts(tmp_path / "data"), tmp_path / "cache"
    one = score(FakeEncoder(), root=data)

    out = mp.Manager().dict()
    mp.spawn(_score_worker, args=(_free_port(), data, cache, out), nprocs=2)
    assert out["error1"] == ("RuntimeError", "out of memory")
    assert out["error0"] == (
        "ShardError",
        "process 1 of 2 failed to encode its share: RuntimeError: out of memory",
    )
    (share0, run), (share1, other) = out[0], out[1]
    assert other is None  # only rank 0 measures
    tasks, meta, pairs = run
    assert tasks == one.tasks and meta["world_size"] == 2 and one.meta["world_size"] == 1
    for t in one.pairs:
        assert np.array_equal(pairs[t]["sim"], one.pairs[t]["sim"])
    assert not set(share0) & set(share1)
    assert len(share0) + len(share1) == meta["n_sentences"] == one.meta["n_sentences"]
    assert abs(len(share0) - len(share1)) <= 1
    assert meta["cache_misses"] == meta["n_sentences"] and meta["cache_hits"] == 0  # summed

    assert len(list(cache.glob("*/shard-*.npz"))) == 2  # one per rank, no name clash
    again = FakeEncoder()
    cached = CachedEncoder(again, cache)
    assert score(cached, root=data).tasks == one.tasks
    assert again.calls == [] and cached.misses == 0 and cached.hits == one.meta["n_sentences"]


def _cli_worker(rank: int, port: int, args: list[str], out) -> None:
    _join(rank, 2, port)  # run_score joins the group itself: init_from_env sees it is done
    try:
        res = CliRunner().invoke(main, args, catch_exceptions=False)
        out[rank] = (res.exit_code, res.output)
    finally:
        dist.destroy_process_group()


def _figures(run) -> dict:
    return {t: {k: v for k, v in m.items() if isinstance(v, float)} for t, m in run.tasks.items()}


def assert_same_figures(a, b) -> None:
    fa, fb = _figures(a), _figures(b)
    assert fa.keys() == fb.keys()
    for t in fa:
        assert fa[t].keys() == fb[t].keys()
        for k in fa[t]:
            assert fa[t][k] == pytest.approx(fb[t][k], abs=TOL, rel=0), (t, k)


@pytest.mark.slow
def test_cli_score_under_two_processes(tmp_path):
    """`embeval score` as torchrun starts it (2 gloo processes, a random tiny checkpoint): rank 0
    alone prints and writes; the figures equal a single-process run's to 1e-4."""
    from embeval.core.model import random_tiny, save_checkpoint

    data = write_tiny_sts(tmp_path / "data")
    ckpt = save_checkpoint(*random_tiny(seed=0), tmp_path / "tiny", "avg", 32)
    common = ["score", str(ckpt), "--data", str(data), "--device", "cpu", "--batch-size", "4"]
    res = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "one.json"), "--no-cache"])
    assert res.exit_code == 0, res.output
    out = mp.Manager().dict()
    two = [*common, "--out", str(tmp_path / "two.json"), "--cache-dir", str(tmp_path / "c")]
    mp.spawn(_cli_worker, args=(_free_port(), two, out), nprocs=2)
    assert out[0][0] == 0 and out[1] == (0, "")  # rank 1: exit 0, nothing printed
    assert "STSBenchmark" in out[0][1] and "two.json" in out[0][1]
    one, run = load_run(tmp_path / "one.json"), load_run(tmp_path / "two.json")
    assert run.meta["world_size"] == 2 and one.meta["world_size"] == 1
    assert run.meta["cache_misses"] == one.meta["n_sentences"]
    assert_same_figures(run, one)


def _launch(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_launched_score_of_the_packaged_model_equals_one_process(launcher, shared_data, tmp_path):
    """The real launchers (`accelerate launch` starts torch.distributed.run with the same env)
    on the packaged model, a --limit 64 run of STS-B and SICK-R: figures equal an uncached
    single-process run's to 1e-4, rank 0 alone prints, and the cache the two processes wrote
    serves every embedding of the run again."""
    from embeval.eval.encoders.transformer import TransformerEncoder

    args = ["score", "--tasks", "stsb,sickr", "--limit", "64", "--data", str(shared_data)]
    args += ["--device", "cpu"]
    if launcher == "torchrun":
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    else:
        launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu"]
        launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
        launch += ["--dynamo_backend", "no"]
    cache = tmp_path / "c"
    two = [*launch, "-m", "embeval.cli", *args, "--out", "two.json", "--cache-dir", str(cache)]
    res = _launch(two, tmp_path)
    assert res.stdout.count("results: two.json") == 1  # one table: rank 0's
    _launch(
        [sys.executable, "-m", "embeval.cli", *args, "--out", "one.json", "--no-cache"], tmp_path
    )
    one, two = load_run(tmp_path / "one.json"), load_run(tmp_path / "two.json")
    assert two.meta["world_size"] == 2 and two.meta["cache_misses"] == two.meta["n_sentences"]
    assert_same_figures(two, one)
    assert json.loads((tmp_path / "two.json").read_text())["meta"]["partial"] is True
    # The same run in this process, through the cache (the model is never loaded if all hit).
    enc = TransformerEncoder.from_checkpoint(device="cpu", progress=False)
    cached = CachedEncoder(enc, cache)
    score(cached, ["stsb", "sickr"], root=shared_data, limit=64)
    assert cached.misses == 0 and enc.model is None
