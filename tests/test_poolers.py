"""Poolers as registry units: each registered pooler on a hand-made case computed with numpy,
a user's pooler as package.module:function through `embeval score`, names checked at parse time.

The hand-made case: B=2 sentences, T=3 positions, H=2, three layers of states (embeddings, layer
1, layer 2); sentence 0 has 2 real tokens and one pad, sentence 1 has 3. Pad positions hold large
values, so a pooler that averaged them would be far off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr

from embeval.cli import main
from embeval.core.checkpoint import CheckpointError, checkpoint_info
from embeval.core.poolers import POOLERS
from embeval.registry import UnknownUnit

MASK = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32)  # (B, T)
RNG = np.random.default_rng(0)
STATES = [RNG.standard_normal((2, 3, 2)).astype(np.float32) for _ in range(3)]  # 3 x (B, T, H)
for s in STATES:
    s[0, 2] = 100.0  # sentence 0's pad position
POOLER_OUTPUT = np.tanh(RNG.standard_normal((2, 2))).astype(np.float32)  # (B, H)


def mean_real(x: np.ndarray) -> np.ndarray:  # (B, T, H) -> (B, H): sum of real rows / count
    return np.stack([x[b, : int(MASK[b].sum())].mean(0) for b in range(len(x))])


# Written out per name from SimCSE's Pooler (simcse/models.py), not read from the code under
# test; a pooler registered without a case here fails test_every_pooler_has_a_case.
EXPECTED = {
    "cls": lambda hs, po: po,
    "cls_before_pooler": lambda hs, po: hs[-1][:, 0],
    "avg": lambda hs, po: mean_real(hs[-1]),
    "avg_first_last": lambda hs, po: mean_real((hs[1] + hs[-1]) / 2),  # [1]: first layer
    "avg_top2": lambda hs, po: mean_real((hs[-2] + hs[-1]) / 2),
    "avg_first_last_old": lambda hs, po: mean_real((hs[0] + hs[-1]) / 2),  # [0]: embeddings
    # WhiteningBERT's layer sets: the mean of each layer's token mean.
    "layers:0,2": lambda hs, po: (mean_real(hs[0]) + mean_real(hs[2])) / 2,
    "layers:1": lambda hs, po: mean_real(hs[1]),
    "layers:-1,0,1": lambda hs, po: (mean_real(hs[2]) + mean_real(hs[0]) + mean_real(hs[1])) / 3,
    # The last real token: position 1 of sentence 0 (one pad), position 2 of sentence 1.
    "last_token": lambda hs, po: np.stack([hs[-1][0, 1], hs[-1][1, 2]]),
    "last_token:0": lambda hs, po: np.stack([hs[0][0, 1], hs[0][1, 2]]),
}
# Poolers that read token ids, attention maps or a template: tested on tiny models in
# tests/test_prompt_poolers.py.
ELSEWHERE = {"promptbert", "promptbert_denoised", "prompteol", "ditto"}


def test_every_pooler_has_a_case():
    assert set(POOLERS.names()) == {n.split(":")[0] for n in EXPECTED} | ELSEWHERE


@pytest.mark.parametrize("name", list(EXPECTED))
def test_pooler_on_a_hand_made_case(name):
    hs = tuple(torch.from_numpy(s) for s in STATES)
    got = POOLERS.get(name)(torch.from_numpy(MASK).long(), hs, torch.from_numpy(POOLER_OUTPUT))
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got.numpy(), EXPECTED[name](STATES, POOLER_OUTPUT), rtol=1e-6)


def test_avg_first_last_is_not_the_embedding_output():
    """SimCSE's first layer is hidden_states[1]; [0] (the embeddings) would give another vector."""
    hs = tuple(torch.from_numpy(s) for s in STATES)
    got = POOLERS.get("avg_first_last")(torch.from_numpy(MASK), hs, None).numpy()
    assert not np.allclose(got, mean_real((STATES[0] + STATES[-1]) / 2), atol=1e-3)


def test_cls_without_the_mlp_pooler_is_an_error():
    hs = tuple(torch.from_numpy(s) for s in STATES)
    with pytest.raises(CheckpointError, match="needs the model's MLP pooler"):
        POOLERS.get("cls")(torch.from_numpy(MASK), hs, None)


def test_unknown_pooler_gets_a_suggestion(tmp_path):
    with pytest.raises(CheckpointError, match="unknown pooler 'avg_top3'; did you mean 'avg_top2'"):
        checkpoint_info(pooler="avg_top3")
    res = CliRunner().invoke(main, ["score", "--pooler", "avg_frist_last", "--no-cache"])
    assert res.exit_code == 2 and "did you mean 'avg_first_last'" in res.output, res.output
    with pytest.raises(UnknownUnit, match="expected a function"):
        POOLERS.get("json:decoder")  # a module attribute that is not callable


def test_help_lists_each_pooler_with_its_first_docstring_line():
    res = CliRunner().invoke(main, ["score", "--help"], terminal_width=1000)
    text = " ".join(res.output.split())
    for name, unit in POOLERS.items():
        first = unit.__doc__.split("\n\n")[0].split(". ")[0].rstrip(".")
        assert f"{name}: {' '.join(first.split())}" in text, name
    assert "package.module:function" in text
    train = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert "avg_top2: Mean over real tokens of the last two layers" in train


USER_POOLER = '''
def max_last(mask, hidden_states, pooler_output):
    """Max over real tokens of the last layer (no torch import: tensor methods only)."""
    return hidden_states[-1].masked_fill(mask.unsqueeze(-1) == 0, -1e4).max(1).values
'''


@pytest.fixture
def user_pooler(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "my_poolers.py").write_text(textwrap.dedent(USER_POOLER))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "my_poolers", raising=False)
    return folder


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """random_tiny (seed 0) saved as a checkpoint with avg pooling."""
    from embeval.core.model import random_tiny, save_checkpoint

    backbone, tok = random_tiny(seed=0)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 64)


def by_hand(ckpt, s1, s2) -> float:
    """STS Spearman x100 of the max_last pooler computed with transformers and numpy alone."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(str(ckpt)), AutoModel.from_pretrained(str(ckpt))
    model.eval()

    def embed(texts):
        out = []
        for t in texts:  # one at a time: no padding at all
            ids = tok(t, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                h = model(**ids).last_hidden_state[0].numpy()  # (T, H)
            out.append(h.max(0))
        return np.array(out)

    a, b = embed(s1), embed(s2)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos


def test_user_pooler_through_embeval_score(tiny_ckpt, user_pooler, shared_data, tmp_path):
    """`--pooler my_poolers:max_last` scores STS-B dev (50 pairs) with the user's function: the
    figure equals one computed by hand; the results record the name; the cache key differs from
    the checkpoint's own pooler and changes when the function's source does. A warm re-run in a
    fresh process never imports torch."""
    from embeval.eval.data.sts import load_sts

    cache, out = tmp_path / "cache", tmp_path / "r.json"
    args = ["score", str(tiny_ckpt), "--tasks", "stsb", "--split", "dev", "--limit", "50"]
    args += ["--data", str(shared_data), "--cache-dir", str(cache), "--device", "cpu"]
    res = CliRunner().invoke(main, [*args, "--pooler", "my_poolers:max_last", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = json.loads(out.read_text())
    assert run["meta"]["pooler"] == "my_poolers:max_last"
    d = load_sts("STSBenchmark", "dev", shared_data).head(50)
    want = 100 * spearmanr(by_hand(tiny_ckpt, d.s1, d.s2), d.gold)[0]
    assert run["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(want, abs=1e-4)

    own = checkpoint_info(tiny_ckpt)
    user = checkpoint_info(tiny_ckpt, pooler="my_poolers:max_last")
    assert user.pooled_fingerprint != own.pooled_fingerprint
    assert run["meta"]["fingerprint"] == user.fingerprint
    edit = USER_POOLER.replace("-1e4", "-1e5")  # another function under the same name
    (user_pooler / "my_poolers.py").write_text(textwrap.dedent(edit))
    sys.modules.pop("my_poolers")
    edited = checkpoint_info(tiny_ckpt, pooler="my_poolers:max_last")
    assert edited.pooled_fingerprint != user.pooled_fingerprint
    (user_pooler / "my_poolers.py").write_text(textwrap.dedent(USER_POOLER))
    sys.modules.pop("my_poolers")

    warm = f"""
import sys
from click.testing import CliRunner
from embeval.cli import main
res = CliRunner().invoke(main, {[*args, "--pooler", "my_poolers:max_last"]!r}
                         + ["--out", {str(tmp_path / "warm.json")!r}])
assert res.exit_code == 0, res.output
assert "torch" not in sys.modules, "a warm run imported torch"
"""
    path = os.pathsep.join([str(user_pooler), *sys.path])
    done = subprocess.run(
        [sys.executable, "-c", warm], env={**os.environ, "PYTHONPATH": path}, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    again = json.loads((tmp_path / "warm.json").read_text())
    assert again["tasks"] == run["tasks"] and again["meta"]["cache_misses"] == 0


def test_a_checkpoint_saved_with_a_user_pooler_records_it_for_embeval_only(
    tiny_ckpt, user_pooler, tmp_path, caplog
):
    """sentence-transformers has no such pooling mode: embeval_config.json names the user's
    function (embeval loads it back), the sentence-transformers files say mean, and a warning
    says so at save time."""
    from embeval.core.model import load_model, save_checkpoint

    model, tok, _ = load_model(tiny_ckpt)
    out = save_checkpoint(model.backbone, tok, tmp_path / "saved", "my_poolers:max_last", 64)
    assert "my_poolers:max_last" in caplog.text and "embeval_config.json" in caplog.text
    assert json.loads((out / "embeval_config.json").read_text())["pooler"] == "my_poolers:max_last"
    st = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert st["pooling_mode_mean_tokens"] is True
    assert checkpoint_info(out).pooler == "my_poolers:max_last"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("layers", "expected distinct comma-separated layer indices"),
        ("layers:1,x", "expected distinct comma-separated layer indices"),
        ("layers:1,1", "expected distinct comma-separated layer indices"),
        ("avg:1", "pooler 'avg' takes no argument"),
    ],
)
def test_bad_layer_sets_are_refused_by_name(spec, message):
    with pytest.raises(UnknownUnit, match=message):
        POOLERS.get(spec)
    res = CliRunner().invoke(main, ["score", "--pooler", spec, "--no-cache"])
    assert res.exit_code == 2 and message in res.output, res.output


def test_a_layer_out_of_range_is_an_error_before_loading(tiny_ckpt):
    """random_tiny has 2 layers: hidden states 0..2. Layer 3 fails from config.json alone, and
    on the states themselves when a pooler is called directly."""
    with pytest.raises(CheckpointError, match=r"layer\(s\) 3 out of range.* 0 \(embeddings\) to 2"):
        checkpoint_info(tiny_ckpt, pooler="layers:1,3")
    with pytest.raises(CheckpointError, match=r"layer\(s\) -4 out of range"):
        checkpoint_info(tiny_ckpt, pooler="layers:-4")
    hs = tuple(torch.from_numpy(s) for s in STATES)
    with pytest.raises(ValueError, match=r"layer\(s\) 3 out of range"):
        POOLERS.get("layers:3")(torch.from_numpy(MASK), hs, None)


def test_layer_set_names_are_canonical_and_keyed(tiny_ckpt):
    """`LAYERS:1, 2` is recorded as layers:1,2; two layer sets never share a cache key."""
    assert POOLERS.canonical(" LAYERS:1,2 ") == "layers:1,2"
    one, two = (checkpoint_info(tiny_ckpt, pooler=p) for p in ("layers:1", "layers:2"))
    assert one.pooler == "layers:1" and one.pooled_fingerprint != two.pooled_fingerprint


def test_layers_pooler_on_a_tiny_model_equals_numpy(tiny_ckpt):
    """layers:0,2 through load_model and the encoder equals the mean of the two layers' token
    means computed from transformers' hidden states, one sentence at a time (no padding)."""
    from transformers import AutoModel, AutoTokenizer

    from embeval.eval.encoders.transformer import TransformerEncoder

    texts = ["a cat sat on the mat .", "dogs bark", "the weather is nice today , is it not ?"]
    enc = TransformerEncoder.from_checkpoint(str(tiny_ckpt), pooler="layers:0,2", device="cpu")
    got = enc.encode(texts)
    tok = AutoTokenizer.from_pretrained(str(tiny_ckpt))
    model = AutoModel.from_pretrained(str(tiny_ckpt))
    want = []
    for t in texts:
        with torch.no_grad():
            hs = model(**tok(t, return_tensors="pt"), output_hidden_states=True).hidden_states
        want.append((hs[0][0].numpy().mean(0) + hs[2][0].numpy().mean(0)) / 2)
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-6)
