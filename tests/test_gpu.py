"""CUDA paths: AMP training, encoding on the GPU, half precision (marked `gpu`, skipped in CI).

Run on a machine with a GPU: `pytest -m gpu`. Each test compares the GPU result with the CPU
result of the same weights in the same process, so no stored figure is involved.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import read_log, write_sentences

from embeval.core.model import load_model, random_tiny
from embeval.core.trainer import TrainConfig, Trainer
from embeval.eval.encoders.transformer import TransformerEncoder

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    # Fail, not skip: `pytest -m gpu` on a machine without CUDA must not pass quietly.
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA device; torch.cuda.is_available() is False")


SENTS = ["A man is playing a guitar.", "the cat sleeps", "A man plays guitar.", "x", "Rain."]


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def minilm_model():
    model, tok, _ = load_model(None)  # the packaged all-MiniLM-L6-v2, avg pooling
    return model, tok


def test_cuda_fp32_encoding_matches_cpu(minilm_model):
    model, tok = minilm_model
    cpu = TransformerEncoder(model, tok, device="cpu", progress=False).encode(SENTS)
    gpu = TransformerEncoder(model, tok, device="cuda", progress=False).encode(SENTS)
    model.to("cpu")
    np.testing.assert_allclose(gpu, cpu, atol=2e-4)  # TF32 may be on for matmuls


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_encoding_close_to_fp32(minilm_model, dtype):
    model, tok = minilm_model
    ref = TransformerEncoder(model, tok, device="cpu", progress=False).encode(SENTS)
    got = TransformerEncoder(model, tok, device="cuda", dtype=dtype, progress=False).encode(SENTS)
    model.to("cpu")
    assert got.dtype == np.float32
    assert _cos(ref, got).min() > 0.995


def test_amp_training_learns_and_saves_a_cpu_loadable_checkpoint(tmp_path):
    """20 AMP steps on CUDA: the GradScaler is active, the loss falls, and the saved
    checkpoint gives the same embeddings on CPU as the trained weights gave on the GPU."""
    data = write_sentences(tmp_path / "train.txt", n=256)
    backbone, tok = random_tiny(0, hidden=64, layers=2, heads=2)
    cfg = TrainConfig(batch_size=32, steps=20, lr=1e-3, eval_steps=20, log_steps=1, amp=True)
    tr = Trainer(backbone, tok, data, cfg, tmp_path / "out", device="cuda", progress=False)
    assert tr.amp and tr.scaler.is_enabled()
    tr.train()
    losses = [r["loss"] for r in read_log(tmp_path / "out") if "loss" in r]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    on_gpu = TransformerEncoder(tr.eval_model, tok, device="cuda", progress=False).encode(SENTS)
    saved = TransformerEncoder.from_checkpoint(
        str(tmp_path / "out" / "last"), progress=False, device="cpu"
    ).encode(SENTS)
    np.testing.assert_allclose(saved, on_gpu, atol=2e-4)


def test_default_device_is_cuda_when_available(minilm_model):
    model, tok = minilm_model
    enc = TransformerEncoder(model, tok, progress=False)
    enc.encode(SENTS[:2])
    assert next(model.parameters()).device.type == "cuda"
    model.to("cpu")
