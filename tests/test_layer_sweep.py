"""`embeval score --layers`: every layer's masked-mean STS table from one encode, each equal
to the single run `--pooler layers:K` (exactly: same batches, same pooler code), with one
forward pass per sentence for all layers, and the single runs' cache entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_prompt_poolers import gpt2_ckpt  # noqa: F401  (a tiny GPT-2 folder fixture)

from embeval.cli import main
from embeval.core.model import SentenceModel, random_tiny, save_checkpoint
from embeval.eval.encoders.transformer import TransformerEncoder
from embeval.eval.scoring.layer_sweep import LayerSweep


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=0)  # 2 layers: hidden states 0, 1, 2
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 64)


TEXTS = ["a cat sat on the mat", "dogs bark .", "is it nice today ?", "a cat sat on the mat"]


def test_each_layer_equals_its_single_run_from_one_forward_per_sentence(tiny_ckpt, monkeypatch):
    rows = []
    forward = SentenceModel.forward

    def counting(self, input_ids, *a, **kw):
        rows.append(len(input_ids))
        return forward(self, input_ids, *a, **kw)

    monkeypatch.setattr(SentenceModel, "forward", counting)
    sweep = LayerSweep(str(tiny_ckpt), "all", device="cpu", batch_size=2)
    views = sweep.views()
    assert list(views) == [0, 1, 2]
    got = {k: v.encode(TEXTS) for k, v in views.items()}
    assert sum(rows) == 3  # three distinct sentences, once each, for the three layers
    for k, vecs in got.items():
        single = TransformerEncoder.from_checkpoint(
            str(tiny_ckpt), pooler=f"layers:{k}", device="cpu", batch_size=2
        ).encode(TEXTS)
        assert np.array_equal(vecs, single), k
        assert views[k].describe() == {**single_describe(tiny_ckpt, k), "device": "cpu"}
    assert not np.allclose(got[0], got[2], atol=1e-3)  # the layers do differ


def single_describe(ckpt, k):
    return TransformerEncoder.from_checkpoint(
        str(ckpt), pooler=f"layers:{k}", device="cpu", batch_size=2
    ).describe()


def test_cli_sweep_files_equal_single_runs_and_share_their_cache(tiny_ckpt, shared_data, tmp_path):
    cache = tmp_path / "cache"
    args = ["score", str(tiny_ckpt), "--tasks", "stsb,sickr", "--split", "test", "--limit", "30"]
    args += ["--data", str(shared_data), "--device", "cpu", "--cache-dir", str(cache)]
    res = CliRunner().invoke(main, [*args, "--layers", "0,2", "--out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("layers") and "STSBenchmark" in res.output
    for k in (0, 2):
        sweep = json.loads((tmp_path / f"s-layers{k}.json").read_text())
        one = tmp_path / f"one{k}.json"
        single = [*args, "--no-cache", "--pooler", f"layers:{k}", "--out", str(one)]
        assert CliRunner().invoke(main, single).exit_code == 0
        alone = json.loads(one.read_text())
        assert sweep["tasks"] == alone["tasks"]  # exact: every figure, every task
        assert sweep["meta"]["pooler"] == f"layers:{k}"
        assert sweep["meta"]["sweep"]["axis"] == "layers" and sweep["meta"]["sweep"]["value"] == k
        assert sweep["meta"]["fingerprint"] == alone["meta"]["fingerprint"]
    warm = [*args, "--pooler", "layers:2", "--out", str(tmp_path / "warm.json")]
    assert CliRunner().invoke(main, warm).exit_code == 0
    assert json.loads((tmp_path / "warm.json").read_text())["meta"]["cache_misses"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "3"], "layer(s) 3 out of range; this model has hidden states 0"),
        (["--layers", "1,x"], "expected all or comma-separated layer indices"),
        (["--layers", "all", "--pooler", "cls"], "--layers sweeps the masked mean"),
        (["--layers", "all", "--quantize", "int8"], "--layers runs in float32"),
    ],
)
def test_bad_layer_sweeps_are_refused(tiny_ckpt, extra, message):
    res = CliRunner().invoke(main, ["score", str(tiny_ckpt), "--no-cache", *extra])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output


def test_a_decoder_sweeps_the_last_token_of_each_layer(gpt2_ckpt):  # noqa: F811
    """--pooler last_token sweeps last_token:K, each equal to its single run; layer 0 is the
    last real token's embedding, by hand from transformers."""
    from transformers import AutoModel

    sweep = LayerSweep(str(gpt2_ckpt), "0,2", pooler="last_token", device="cpu", batch_size=2)
    views = sweep.views()
    for k, view in views.items():
        single = TransformerEncoder.from_checkpoint(
            str(gpt2_ckpt), pooler=f"last_token:{k}", device="cpu", batch_size=2
        )
        assert view.describe()["pooler"] == f"last_token:{k}"
        assert np.array_equal(view.encode(TEXTS), single.encode(TEXTS)), k
    tok = single.tokenizer
    model = AutoModel.from_pretrained(str(gpt2_ckpt)).eval()
    ids = tok(TEXTS[1], return_tensors="pt")
    with torch.no_grad():
        h0 = model(**ids, output_hidden_states=True).hidden_states[0][0, -1].numpy()
    np.testing.assert_allclose(views[0].encode([TEXTS[1]])[0], h0, rtol=1e-6)
