"""Smoke runs of the methods from the literature on random-tiny (CPU, a few seconds each): on
16 rows of the shared SNLI triplets (supervised) or wiki1m sentences, each trains without
error, its loss falls, train_config.json records its settings, the checkpoint gives the same
embeddings in embeval and sentence-transformers, and a run interrupted at step 4 and resumed
ends with the weights and losses of an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr
from train_helpers import read_log, train_until_interrupted

from embeval.cli import main
from embeval.core.model import random_tiny
from embeval.core.trainer import TrainConfig, Trainer

NLI = "snli_devtest_triplets_for_simcse.csv"
WIKI = "wiki1m_for_simcse.first11914.txt"
METHODS = {  # name: (training file, TrainConfig fields)
    "promcse-hinge": (NLI, {"loss": "promcse-hinge"}),
    "gcse": (NLI, {"loss": "gcse", "reference_model": "initial"}),
    "dclr": (WIKI, {"loss": "dclr", "reference_model": "random-tiny", "negatives": ["dclr-noise"]}),
    "matryoshka": (NLI, {"matryoshka_dims": [32, 16, 8], "matryoshka_weights": [1.0, 0.5, 0.5]}),
    "2dmse": (NLI, {"matryoshka_dims": [32, 16], "matryoshka_layers": 1}),
}
STEPS, CUT = 12, 4


def head(shared_data, name, tmp_path, n=16):
    """The first n examples of a shared training file (a CSV keeps its header)."""
    lines = (shared_data / "train" / name).read_text(encoding="utf-8").splitlines()
    out = tmp_path / name
    out.write_text("\n".join(lines[: n + (name.endswith(".csv"))]) + "\n", encoding="utf-8")
    return out


def make(tmp_path, data, fields, seed=0):
    backbone, tok = random_tiny(seed, hidden=32, layers=1, heads=2)
    base = dict(batch_size=8, max_length=24, lr=2e-3, eval_steps=STEPS, log_steps=1, seed=7)
    base.update(pooler="avg", eval_pooler="avg")  # learns in a few steps, as SBERT pools
    cfg = TrainConfig(**{**base, "steps": STEPS, **fields})
    return Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False)


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_reloads_and_resumes(method, shared_data, tmp_path):
    from sentence_transformers import SentenceTransformer

    from embeval.eval.encoders.transformer import TransformerEncoder

    name, fields = METHODS[method]
    data = head(shared_data, name, tmp_path)
    full = make(tmp_path / "a", data, fields)
    full.train()
    losses = [r["loss"] for r in read_log(tmp_path / "a" / "out") if "loss" in r]
    assert len(losses) == STEPS and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses  # it learns
    saved = json.loads((tmp_path / "a" / "out" / "train_config.json").read_text())
    assert {k: saved[k] for k in fields} == fields  # recorded as run

    last = tmp_path / "a" / "out" / "last"
    texts = ["A man is playing a guitar .", "the cat sleeps", "Wikipedia is an encyclopedia."]
    ours = TransformerEncoder.from_checkpoint(str(last), progress=False, device="cpu").encode(texts)
    st = SentenceTransformer(str(last), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, st, atol=1e-5)

    train_until_interrupted(make(tmp_path / "b", data, fields), CUT)
    make(tmp_path / "b", data, fields).train(resume=True)  # same --model: 'initial' alike
    resumed = TransformerEncoder.from_checkpoint(
        str(tmp_path / "b" / "out" / "last"), progress=False, device="cpu"
    )
    np.testing.assert_array_equal(resumed.encode(texts), ours)
    assert [r["loss"] for r in read_log(tmp_path / "b" / "out") if "loss" in r] == losses


def test_cli_gcse_checkpoint_scores_as_its_embeddings(shared_data, tmp_path):
    """`embeval train --loss gcse --reference-model initial` on random-tiny, then `embeval
    score` on 40 STS-B dev pairs: the Spearman of sentence-transformers' cosines."""
    from sentence_transformers import SentenceTransformer

    from embeval.eval.data.sts import load_sts

    data = head(shared_data, NLI, tmp_path)
    out = tmp_path / "run"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--loss", "gcse", "--reference-model", "initial", "--loss-arg", "alpha=0.2"]
    args += ["--steps", "3", "--batch-size", "8", "--no-eval", "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["loss_args"] == {"alpha": 0.2} and saved["reference_model"] == "initial"
    run_json = tmp_path / "score.json"
    args = ["score", str(out / "last"), "--tasks", "STSBenchmark", "--split", "dev"]
    args += ["--limit", "40", "--no-cache", "--data", str(shared_data), "--out", str(run_json)]
    res = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    scored = json.loads(run_json.read_text())["tasks"]["STSBenchmark"]["spearman"]
    sts = load_sts("STSBenchmark", "dev", shared_data)
    st = SentenceTransformer(str(out / "last"), device="cpu")
    a, b = (st.encode(s[:40], convert_to_tensor=True) for s in (sts.s1, sts.s2))
    cos = torch.nn.functional.cosine_similarity(a, b).numpy()
    assert scored == pytest.approx(100 * spearmanr(cos, sts.gold[:40])[0], abs=1e-3)


def test_a_reference_with_another_tokenizer_is_refused_before_training(tmp_path, shared_data):
    from transformers import BertTokenizerFast

    data = head(shared_data, NLI, tmp_path)
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    other = BertTokenizerFast(str(vocab))
    cfg = TrainConfig(loss="gcse", reference_model="random-tiny", batch_size=8, steps=2)
    with pytest.raises(ValueError, match="tokenizer differs"):
        Trainer(backbone, other, data, cfg, tmp_path / "out", progress=False)
