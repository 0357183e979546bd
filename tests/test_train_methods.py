"""Training methods from the literature as units: ESimCSE (view `esimcse` + negatives provider
`momentum-queue`) and ConSERT (view `consert` + loss `nt-xent`). Each formula is checked against
an independent computation (by hand or numpy), each method against SimCSE where it reduces to
it, and `--resume` against an uninterrupted run (provider state included)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_helpers import read_log, train_until_interrupted, write_sentences

from embeval.cli import main
from embeval.core import losses
from embeval.core.augment import Cutoff, TokenRepetition, TokenShuffle, embedding_layer_hooks
from embeval.core.model import default_checkpoint_path, random_tiny
from embeval.core.negatives import MomentumQueue
from embeval.core.trainer import TrainConfig, Trainer
from embeval.core.views import VIEWS, esimcse

WIKI = "train/wiki1m_for_simcse.first11914.txt"


def tiny(seed=0):
    return random_tiny(seed, hidden=32, layers=1, heads=2)


def trainer(tmp_path, out="out", n=40, **kw):
    base = dict(batch_size=4, max_length=16, lr=1e-3, eval_steps=3, log_steps=1, seed=7)
    backbone, tok = tiny()
    data = write_sentences(tmp_path / "train.txt", n=n)
    cfg = TrainConfig(**{**base, **kw})
    return Trainer(backbone, tok, data, cfg, tmp_path / out, progress=False)


def weights(tr):
    return {k: v.detach().clone() for k, v in tr.backbone.state_dict().items()}


# ---------------------------------------------------------------------- ESimCSE
def test_token_repetition_repeats_the_drawn_positions(monkeypatch):
    """ids [CLS] a b c d e f g h [SEP] (L = 10): int(0.32 * 10) = 3, so n = randrange(3); with
    the draws forced to n = 2 at positions {2, 5}, tokens 12 and 15 appear twice, in place."""
    ids = [101, 11, 12, 13, 14, 15, 16, 17, 18, 102]
    calls = []
    monkeypatch.setattr(random, "randrange", lambda k: calls.append(("randrange", k)) or 2)
    monkeypatch.setattr(
        random, "sample", lambda pop, k: calls.append(("sample", list(pop), k)) or [5, 2]
    )
    out = TokenRepetition(0.32, 10).token_ids(ids)
    assert out == [101, 11, 12, 12, 13, 14, 15, 15, 16, 17, 18, 102]
    assert calls == [("randrange", 3), ("sample", list(range(1, 9)), 2)]  # never 0 nor 9


def test_token_repetition_statistics_and_bounds():
    """Over many draws: n in [0, min(10, int(rate L)) - 1], [CLS]/[SEP] never repeated, every
    n below the bound occurs; a short sentence (int(rate L) = 0) is left alone and draws
    nothing (the Python RNG state is unchanged)."""
    random.seed(3)
    aug = TokenRepetition(0.32, 10)
    ids = [101, *range(1000, 1040), 102]  # L = 42: bound min(10, 13) = 10
    seen = set()
    for _ in range(500):
        out = aug.token_ids(ids)
        seen.add(len(out) - len(ids))
        assert out[0] == 101 and out[1] != 101 and out[-1] == 102 and out[-2] != 102
        assert sorted(set(out)) == sorted(ids)
    assert seen == set(range(10))
    state = random.getstate()
    assert aug.token_ids([101, 7, 102]) == [101, 7, 102]  # int(0.32 * 3) = 0
    assert random.getstate() == state
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"dup_rate must be in \[0, 1\)"):
            esimcse([("a",)], dup_rate=bad)


def avg_embed(state, texts):
    """Mean-pooled, L2-normalised embeddings (numpy) of a tiny model holding `state`, no dropout."""
    model, tok = tiny()
    model.load_state_dict(state)
    model.eval()
    enc = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state.double().numpy()
    mask = enc["attention_mask"].unsqueeze(-1).double().numpy()
    e = (h * mask).sum(1) / mask.sum(1)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_momentum_queue_formula(tmp_path):
    """Dropout 0 and no repetition, so every embedding can be recomputed. Step 1's loss is
    InfoNCE over [A A^T | A Q^T] / tau (numpy), A = step 1's sentences under theta_1, Q = step
    0's under the momentum copy m theta_0 + (1 - m) theta_0 = theta_0 (updated with the weights
    before the step, as the code does). After step 1 the copy is m theta_0 + (1 - m) theta_1
    and the queue holds steps 0 and 1 (8 rows, newest last)."""
    kw = dict(dropout=0.0, pooler="avg", view="esimcse", view_args={"dup_rate": 0.0})
    kw |= dict(negatives=["momentum-queue"], negatives_args={"queue_size": 8, "momentum": 0.9})
    tr = trainer(tmp_path, steps=2, **kw)
    theta = [weights(tr)]
    tr.on_step_end.append(lambda t, s: theta.append(weights(t)))
    tr.train()
    texts = [[ex[0] for ex in tr.batch_examples(s)] for s in (0, 1)]
    a = avg_embed(theta[1], texts[1])
    q = avg_embed(theta[0], texts[0])
    logits = np.concatenate([a @ a.T, a @ q.T], axis=1) / 0.05  # (4, 8)
    expected = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
    logged = [r["loss"] for r in read_log(tmp_path / "out") if "loss" in r]
    assert logged[1] == pytest.approx(expected, rel=1e-4)
    provider = tr.batches.providers[0]
    queue = provider.queue.double().numpy()
    queue /= np.linalg.norm(queue, axis=1, keepdims=True)
    np.testing.assert_allclose(queue[:4], q, atol=1e-5)
    m = 0.9
    for name, p_m in provider.encoder.backbone.named_parameters():
        if not name.startswith("pooler."):  # the MLP is the live one (unused by avg)
            want = m * theta[0][name].numpy() + (1 - m) * theta[1][name].numpy()
            np.testing.assert_allclose(p_m.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.from_numpy(queue[4:]), torch.from_numpy(avg_embed(provider_state(provider), texts[1]))
    )


def provider_state(provider):
    """The momentum copy's weights with the (unused) live MLP, as a tiny model's state."""
    return {k: v.detach().clone() for k, v in provider.encoder.backbone.state_dict().items()}


def test_esimcse_without_repetition_or_queue_is_simcse(tmp_path):
    """dup_rate 0 and queue_size 0: the same losses and weights as dropout + infonce."""
    runs = {}
    for name, kw in (
        ("simcse", dict(view="dropout")),
        (
            "esimcse",
            dict(
                view="esimcse",
                view_args={"dup_rate": 0.0},
                negatives=["momentum-queue"],
                negatives_args={"queue_size": 0},
            ),
        ),
    ):
        tr = trainer(tmp_path / name, steps=4, **kw)
        tr.train()
        runs[name] = (
            [r["loss"] for r in read_log(tmp_path / name / "out") if "loss" in r],
            weights(tr),
        )
    assert runs["simcse"][0] == runs["esimcse"][0]
    for k, v in runs["simcse"][1].items():
        assert torch.equal(v, runs["esimcse"][1][k]), k


RESUMABLE = {
    "distilcse": dict(view="anchors", negatives=["teacher"]),
    "esimcse": dict(view="esimcse", negatives=["momentum-queue"], negatives_args={"queue_size": 8}),
    "consert": dict(view="consert", loss="nt-xent", view_args={"aug1": "token_cutoff"}),
}


@pytest.mark.parametrize(
    "method, at", [("esimcse", 3), ("esimcse", 4), ("consert", 4), ("distilcse", 4)]
)  # a save at an evaluation (3), the interrupt handler's save (4)
def test_resume_equals_an_uninterrupted_run(tmp_path, method, at):
    """7 steps straight vs interrupted at step `at` and resumed: same weights (and queue and
    momentum encoder, or teacher queue and logit scale, which last/ keeps), same losses."""
    kw = dict(RESUMABLE[method])
    if method == "distilcse":
        teacher = str(default_checkpoint_path())  # 384 wide: W is saved and restored too
        kw["negatives_args"] = {"teacher": teacher, "queue_size": 8}
    full = trainer(tmp_path / "a", steps=7, **kw)
    full.train()
    train_until_interrupted(trainer(tmp_path / "b", steps=7, **kw), at)
    again = trainer(tmp_path / "b", steps=7, **kw)
    again.train(resume=True)
    for k, v in weights(full).items():
        assert torch.equal(v, weights(again)[k]), k
    la = [r["loss"] for r in read_log(tmp_path / "a" / "out") if "loss" in r]
    lb = [r["loss"] for r in read_log(tmp_path / "b" / "out") if "loss" in r]
    assert la == lb
    if method == "distilcse":
        pa, pb = full.batches.providers[0], again.batches.providers[0]
        assert torch.equal(pa.queue, pb.queue) and torch.equal(pa.log_scale, pb.log_scale)
        assert torch.equal(pa.projection.weight, pb.projection.weight)
    if method != "esimcse":
        return
    pa, pb = full.batches.providers[0], again.batches.providers[0]
    assert torch.equal(pa.queue, pb.queue) and pa.queue.shape[0] == 8
    for (na, a), (nb, b) in zip(
        pa.encoder.backbone.state_dict().items(),
        pb.encoder.backbone.state_dict().items(),
        strict=True,
    ):
        assert na == nb and torch.equal(a, b), na
    state = torch.load(tmp_path / "b" / "out" / "last" / "trainer_state.pt", weights_only=False)
    assert state["providers"][0]["queue"].shape == (8, 32)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--view-arg", "dup_rate=1.5"], "dup_rate must be in [0, 1), got 1.5"),
        (["--view-arg", "dup=0.1"], "view esimcse has no argument 'dup'; it accepts: dup_rate"),
        (["--negatives-arg", "queue_size=40"], "queue_size 40 + the global batch 4 exceed the 40"),
        (["--negatives-arg", "momentum=2"], "momentum must be in [0, 1], got 2.0"),
        (["--negatives-arg", "size=3"], "no negatives provider of ['momentum-queue'] takes 'size'"),
    ],
)
def test_esimcse_bad_settings_fail_before_any_step(tmp_path, extra, message):
    data = write_sentences(tmp_path / "train.txt", n=40)
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(tmp_path / "o")]
    args += ["--batch-size", "4", "--no-eval", "--no-progress", "--steps", "2"]
    args += ["--view", "esimcse", "--negatives", "momentum-queue", *extra]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o" / "best").exists()


# ---------------------------------------------------------------------- ConSERT
def test_nt_xent_formula():
    """NT-Xent by numpy: for each a_i, -log exp(s(a_i, b_i) / t) / (sum_j exp(s(a_i, b_j) / t)
    + sum_{j != i} exp(s(a_i, a_j) / t)), the same with a and b swapped; the two means summed."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    t = 0.1

    def direction(x, y):
        total = 0.0
        for i in range(3):
            pos = np.exp(x[i] @ y[i] / t)
            den = sum(np.exp(x[i] @ y[j] / t) for j in range(3))
            den += sum(np.exp(x[i] @ x[j] / t) for j in range(3) if j != i)
            total += -np.log(pos / den)
        return total / 3

    z = np.concatenate([a, b])
    sim = torch.from_numpy(z @ z.T)
    assert losses.nt_xent(sim, t).item() == pytest.approx(direction(a, b) + direction(b, a))
    assert losses.all_views(losses.nt_xent) and not losses.all_views(losses.infonce)
    with pytest.raises(ValueError, match="all-views matrix"):
        losses.nt_xent(torch.zeros(3, 3), t)


def test_consert_augmentations_by_hand(monkeypatch):
    """With random.shuffle forced to reverse: shuffle reverses the real tokens' position ids and
    keeps the padding's; token cutoff 0.5 of 3 real tokens zeroes int(1.5) = 1 row, the last
    index drawn first... here the first of the reversed order; feature cutoff 0.5 of H = 4
    zeroes int(2) = 2 dimensions, likewise."""
    monkeypatch.setattr(random, "shuffle", lambda xs: xs.reverse())
    pos = torch.arange(5).expand(2, -1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = TokenShuffle().position_ids(pos, mask)
    assert out.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]
    emb = torch.ones(2, 5, 4)
    tok = Cutoff("token", 0.5).embeddings(emb, mask).numpy()
    want = np.ones((2, 5, 4))
    want[0, 2] = 0  # reversed [0, 1, 2] -> cut [2]
    want[1, 4] = want[1, 3] = 0  # reversed [0..4], int(2.5) = 2 -> cut [4, 3]
    np.testing.assert_array_equal(tok, want)
    feat = Cutoff("feature", 0.5).embeddings(emb, mask).numpy()
    want = np.ones((2, 5, 4))
    want[:, :, [3, 2]] = 0
    np.testing.assert_array_equal(feat, want)


def test_embedding_layer_hooks_touch_only_their_view(monkeypatch):
    """Two views of two sentences in one forward pass: view 1 shuffled (reversed) equals the
    model run with those position ids; view 0 equals the plain model; with feature cutoff on
    view 0, its embedding output (hidden_states[0]) has the cut dimensions at 0."""
    monkeypatch.setattr(random, "shuffle", lambda xs: xs.reverse())
    backbone, tok = tiny()
    backbone.eval()
    enc = tok(["a cat sat", "the dog"], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].repeat(2, 1), enc["attention_mask"].repeat(2, 1)
    with torch.no_grad(), embedding_layer_hooks(backbone, (None, TokenShuffle()), 2, mask):
        both = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    pos = torch.arange(ids.shape[1]).expand(2, -1).clone()
    for r, n in enumerate(enc["attention_mask"].sum(1).tolist()):
        pos[r, :n] = pos[r, :n].flip(0)
    with torch.no_grad():
        plain = backbone(**enc).last_hidden_state
        shuffled = backbone(**enc, position_ids=pos).last_hidden_state
    torch.testing.assert_close(both[:2], plain)
    torch.testing.assert_close(both[2:], shuffled)
    with torch.no_grad(), embedding_layer_hooks(backbone, (Cutoff("feature", 0.5), None), 2, mask):
        h0 = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[
            0
        ]
    assert (h0[:2, :, 16:] == 0).all() and (h0[:2, :, :16] != 0).any() and (h0[2:] != 0).all()


# ---------------------------------------------------------------------- DistilCSE
def save_teacher(path, seed=1, extra_token=None):
    """A tiny random BERT checkpoint (mean pooling) to distil from; `extra_token` gives it a
    tokenizer of its own (one more word)."""
    from embeval.core.model import save_checkpoint

    backbone, tok = tiny(seed)
    if extra_token:
        tok.add_tokens([extra_token])
        backbone.resize_token_embeddings(len(tok))
    save_checkpoint(backbone, tok, path, "avg", 512)
    return str(path), backbone.state_dict()


def test_distilcse_formula(tmp_path):
    """Dropout 0, avg pooling: step 0's loss is CE(e * A0 T0^T) (the queue empty, scale e) and
    step 1's CE(s1 * [A1 T1^T | A1 T0^T]) with s1 = exp(log_scale after step 0), A the
    student's and T the teacher's normalised embeddings of each step's sentences (numpy)."""
    teacher, t_state = save_teacher(tmp_path / "teacher")
    kw = dict(dropout=0.0, pooler="avg", view="anchors", negatives=["teacher"])
    kw["negatives_args"] = {"teacher": teacher, "queue_size": 8}
    tr = trainer(tmp_path, steps=2, **kw)
    provider = tr.batches.providers[0]
    assert provider.projection is None and provider.same_tokenizer
    assert (
        provider.log_scale.item() == 1.0
        and provider.log_scale in tr.optimizer.param_groups[2]["params"]
    )
    theta, scales = [weights(tr)], [provider.log_scale.item()]
    tr.on_step_end.append(
        lambda t, s: (theta.append(weights(t)), scales.append(provider.log_scale.item()))
    )
    tr.train()
    texts = [[ex[0] for ex in tr.batch_examples(s)] for s in (0, 1)]
    t0, t1 = (avg_embed(t_state, x) for x in texts)
    a0, a1 = avg_embed(theta[0], texts[0]), avg_embed(theta[1], texts[1])

    def ce(logits):
        return np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))

    logged = [r["loss"] for r in read_log(tmp_path / "out") if "loss" in r]
    assert logged[0] == pytest.approx(ce(np.e * a0 @ t0.T), rel=1e-4)
    s1 = np.exp(scales[1])
    assert scales[1] != 1.0  # the scale learns
    assert logged[1] == pytest.approx(ce(s1 * np.concatenate([a1 @ t1.T, a1 @ t0.T], 1)), rel=1e-4)
    np.testing.assert_allclose(provider.queue.numpy(), np.concatenate([t1, t0]), atol=1e-5)


def test_distilcse_teacher_of_another_width_and_tokenizer(tmp_path):
    """The packaged all-MiniLM-L6-v2 (384 wide) teaching a 32-wide student: a linear map W into
    the teacher's width is learnt with it (not saved with the student); a teacher whose
    tokenizer differs reads the text with its own. Both train; bad settings fail first."""
    from embeval.core.model import default_checkpoint_path

    kw = dict(pooler="avg", view="anchors", negatives=["teacher"], steps=2)
    mini = str(default_checkpoint_path())
    tr = trainer(tmp_path / "a", negatives_args={"teacher": mini, "queue_size": 8}, **kw)
    provider = tr.batches.providers[0]
    assert tuple(provider.projection.weight.shape) == (384, 32)
    w0 = provider.projection.weight.detach().clone()
    tr.train()
    assert not torch.equal(w0, provider.projection.weight)
    assert provider.queue.shape == (8, 384)
    other, _ = save_teacher(tmp_path / "other", extra_token="zzqxword")
    tr = trainer(tmp_path / "b", negatives_args={"teacher": other, "queue_size": 8}, **kw)
    assert not tr.batches.providers[0].same_tokenizer
    tr.train()
    with pytest.raises(ValueError, match="needs --negatives-arg teacher=CHECKPOINT"):
        trainer(tmp_path / "c", negatives_args={"queue_size": 8}, **kw)
    with pytest.raises(ValueError, match="queue_size 40 \\+ the global batch 4 exceed the 40"):
        trainer(tmp_path / "d", negatives_args={"teacher": other, "queue_size": 40}, **kw)
    with pytest.raises(ValueError, match="view anchors gives anchors only"):
        trainer(tmp_path / "e", pooler="avg", view="anchors", steps=1)


# ---------------------------------------------------------------------- CLI smoke runs
METHODS = {
    "esimcse": ["--view", "esimcse", "--negatives", "momentum-queue"],
    "consert": ["--view", "consert", "--loss", "nt-xent", "--temp", "0.1", "--dropout", "0"],
    # no queue: a filling queue adds columns, and the loss with them, in 10 steps (the queue
    # has its formula and resume tests above)
    "distilcse": ["--view", "anchors", "--negatives", "teacher", "--negatives-arg", "queue_size=0"],
}


@pytest.mark.slow  # about 20 s each on 2 idle cores (training, then STS-B dev scoring)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_on_wiki_and_reloads_everywhere(method, shared_data, tmp_path):
    """random-tiny, 10 steps of batch 8 on wiki1m sentences: the loss falls; the checkpoint
    scores in `embeval score` and gives sentence-transformers' embeddings."""
    from sentence_transformers import SentenceTransformer

    from embeval.eval.encoders.transformer import TransformerEncoder

    out = tmp_path / method
    args = ["train", "--model", "random-tiny", "--data", str(shared_data / WIKI)]
    args += ["--out", str(out), "--steps", "10", "--batch-size", "8", "--max-length", "16"]
    args += ["--lr", "1e-3", "--no-eval", "--no-progress", "--device", "cpu", "--log-steps", "5"]
    args += ["--pooler", "avg", *METHODS[method]]
    if method == "distilcse":  # the packaged all-MiniLM-L6-v2 teaches random-tiny
        args += ["--negatives-arg", f"teacher={default_checkpoint_path()}"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    losses_ = [r["loss"] for r in read_log(out) if "loss" in r]
    assert losses_[-1] < losses_[0], losses_
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["view"] == METHODS[method][1]
    texts = ["A man is playing a guitar .", "the cat sleeps"]
    ours = TransformerEncoder.from_checkpoint(str(out / "best"), progress=False, device="cpu")
    st = SentenceTransformer(str(out / "best"), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours.encode(texts), st, atol=1e-5)
    run_json = tmp_path / "run.json"
    res = CliRunner().invoke(
        main,
        ["score", str(out / "best"), "--tasks", "STSBenchmark", "--split", "dev", "--no-cache"]
        + ["--data", str(shared_data), "--out", str(run_json), "--device", "cpu"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(run_json.read_text())["tasks"]["STSBenchmark"]["spearman"] is not None


def test_methods_are_registered():
    assert {"esimcse", "consert"} <= set(VIEWS.names())
    assert MomentumQueue.__doc__ and "Wu et al." in MomentumQueue.__doc__
