"""Objectives (heads trained beside the encoder): SBERT's NLI softmax objective reads labelled
pairs or SimCSE triplets, refuses other data before any step, trains random-tiny (the loss
falls), keeps its head out of the checkpoint but in last/ for --resume, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from train_helpers import read_log, train_until_interrupted, write_sentences

from embeval.cli import main
from embeval.core.model import random_tiny
from embeval.core.objectives import SBertNLI
from embeval.core.train_data import read_training_file
from embeval.core.trainer import TrainConfig, Trainer

NLI = "snli_devtest_triplets_for_simcse.csv"


def head_rows(shared_data, tmp_path, n=8):
    lines = (shared_data / "train" / NLI).read_text(encoding="utf-8").splitlines()
    out = tmp_path / NLI
    out.write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return out


def make(out, data, steps=10, **kw):
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(
        objective="sbert-nli", batch_size=8, steps=steps, lr=2e-3, eval_steps=steps,
        log_steps=1, seed=7, max_length=24, pooler="avg", eval_pooler="avg", **kw,
    )  # fmt: skip
    return Trainer(backbone, tok, data, cfg, out, progress=False)


def same_embeddings_everywhere(last):
    """embeval and sentence-transformers load the checkpoint alike (the head is not in it)."""
    from sentence_transformers import SentenceTransformer

    from embeval.eval.encoders.transformer import TransformerEncoder

    texts = ["A man is playing a guitar .", "the cat sleeps"]
    ours = TransformerEncoder.from_checkpoint(str(last), progress=False, device="cpu").encode(texts)
    st = SentenceTransformer(str(last), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, st, atol=1e-5)


def test_triplets_become_labelled_pairs_and_labels_are_checked(tmp_path):
    trip = tmp_path / "t.csv"
    trip.write_text("sent0,sent1,hard_neg\na,b,c\nd,e,f\n")
    rows = SBertNLI.prepare(read_training_file(trip))
    assert rows.columns == ("sent0", "sent1", "label")
    assert rows.examples == [
        ("a", "b", "entailment"), ("a", "c", "contradiction"),
        ("d", "e", "entailment"), ("d", "f", "contradiction"),
    ]  # fmt: skip
    labelled = tmp_path / "l.csv"
    labelled.write_text("sent0,sent1,label\na,b,neutral\nc,d,maybe\n")
    with pytest.raises(ValueError, match=r"l.csv: data row 2 has label 'maybe'; expected one of"):
        SBertNLI.prepare(read_training_file(labelled))


@pytest.mark.parametrize("kind", ["pairs", "sentences"])
def test_data_without_labels_is_refused_before_any_step(kind, tmp_path):
    if kind == "pairs":
        data = tmp_path / "p.csv"
        data.write_text("sent0,sent1\n" + "".join(f"a{i},b{i}\n" for i in range(8)))
    else:
        data = write_sentences(tmp_path / "s.txt", n=8)
    with pytest.raises(ValueError, match="objective sbert-nli needs labelled sentence pairs"):
        make(tmp_path / "out", data)
    assert not (tmp_path / "out").exists()  # nothing written, nothing trained


def test_sbert_nli_trains_keeps_its_head_out_of_the_checkpoint_and_resumes(shared_data, tmp_path):
    data = head_rows(shared_data, tmp_path)  # 8 triplets -> 16 labelled rows
    full = make(tmp_path / "a", data, steps=10)
    full.train()
    losses = [r["loss"] for r in read_log(tmp_path / "a") if "loss" in r]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["objective"] == "sbert-nli" and saved["objective_args"] == {"num_labels": 3}
    assert saved["view"] == "labelled-pairs" and saved["n_examples"] == 16
    weights = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    assert not any("classifier" in k for k in weights)  # the encoder alone
    same_embeddings_everywhere(tmp_path / "a" / "last")
    state = torch.load(tmp_path / "a" / "last" / "trainer_state.pt", weights_only=False)
    assert torch.equal(state["objective"]["classifier.weight"], full.objective.classifier.weight)

    train_until_interrupted(make(tmp_path / "b", data, steps=10), 4)
    resumed = make(tmp_path / "b", data, steps=10)
    resumed.train(resume=True)
    assert [r["loss"] for r in read_log(tmp_path / "b") if "loss" in r] == losses
    assert torch.equal(resumed.objective.classifier.weight, full.objective.classifier.weight)
    for a, b in zip(full.backbone.parameters(), resumed.backbone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cli_objective_and_a_labelled_csv(tmp_path):
    data = tmp_path / "nli.csv"
    rows = [("a man plays", "a person plays", "entailment"), ("a dog runs", "a cat sleeps",
            "contradiction"), ("kids eat", "kids eat lunch", "neutral")] * 3  # fmt: skip
    data.write_text("sent0,sent1,label\n" + "".join(",".join(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--objective", "sbert-nli", "--pooler", "avg", "--steps", "2", "--batch-size", "4"]
    res = CliRunner().invoke(main, [*args, "--no-eval", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "train_config.json").read_text())["objective"] == "sbert-nli"
    bad = CliRunner().invoke(main, [*args, "--objective-arg", "labels=2", "--overwrite"])
    assert bad.exit_code == 2 and "objective sbert-nli has no argument 'labels'" in bad.output


def tiny_generator(folder):
    """A random tiny BertForMaskedLM with random-tiny's config and tokenizer, saved."""
    from transformers import BertForMaskedLM

    backbone, tok = random_tiny(1, hidden=32, layers=1, heads=2)
    BertForMaskedLM(backbone.config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_rtd_loss_and_masking_by_hand():
    from embeval.core.objectives import mask_tokens, rtd_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 2))
    ids = np.array([[101, 7, 8, 102], [101, 9, 102, 0]])
    edited = np.array([[101, 5, 8, 102], [101, 9, 3, 0]])  # (0,1) and (1,2) replaced
    attn = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    labels = ((edited != ids) & (attn == 1)).astype(int)
    assert labels.sum() == 2
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want = -np.mean(np.take_along_axis(logp, labels[..., None], -1))  # all 8 cells, pad too
    got = rtd_loss(
        torch.tensor(logits), torch.tensor(edited), torch.tensor(ids), torch.tensor(attn)
    )
    assert got.item() == pytest.approx(want, rel=1e-6)  # the loss is taken in float32

    ids = torch.randint(1000, 2000, (200, 30))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    out = mask_tokens(ids, special, 0.3, 103, 30522, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], ids[:, 0])  # specials never change
    changed = (out != ids)[:, 1:].float().mean().item()
    assert 0.3 * 0.85 < changed < 0.3 * 0.95  # 30 % picked, 90 % of them altered (~27 %)
    assert (out == 103).float().mean().item() == pytest.approx(0.3 * 0.8 * 29 / 30, abs=0.01)


def test_diffcse_trains_resumes_and_reduces_to_simcse(shared_data, tmp_path):
    wiki = tmp_path / "wiki.txt"
    lines = (shared_data / "train" / "wiki1m_for_simcse.first11914.txt").read_text().splitlines()
    wiki.write_text("\n".join(lines[:16]) + "\n")
    gen = tiny_generator(tmp_path / "gen")

    def run(out, steps=8, weight=0.005, objective="diffcse"):
        backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
        cfg = TrainConfig(
            batch_size=8, steps=steps, lr=2e-3, eval_steps=steps, log_steps=1, seed=7,
            max_length=24, pooler="avg", eval_pooler="avg", objective=objective,
            objective_args={"generator": gen, "weight": weight} if objective else {},
        )  # fmt: skip
        return Trainer(backbone, tok, wiki, cfg, out, progress=False)

    full = run(tmp_path / "a")
    full.train()
    losses = [r["loss"] for r in read_log(tmp_path / "a") if "loss" in r]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    state = torch.load(tmp_path / "a" / "last" / "trainer_state.pt", weights_only=False)
    assert any(k.startswith("discriminator.") for k in state["objective"])
    assert not any(k.startswith("_generator") for k in state["objective"])  # frozen: not kept
    same_embeddings_everywhere(tmp_path / "a" / "last")

    train_until_interrupted(run(tmp_path / "b"), 3)
    run(tmp_path / "b").train(resume=True)
    assert [r["loss"] for r in read_log(tmp_path / "b") if "loss" in r] == losses

    # weight 0: the first step's loss is the InfoNCE of the same embeddings.
    zero = run(tmp_path / "z", steps=1, weight=0.0)
    zero.train()
    plain = run(tmp_path / "p", steps=1, objective=None)
    plain.train()
    assert read_log(tmp_path / "z")[0]["loss"] == read_log(tmp_path / "p")[0]["loss"]
    assert read_log(tmp_path / "z")[0]["loss"] != losses[0]  # with weight 0.005 it differs


def test_diffcse_generator_with_another_tokenizer_is_refused(tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    folder = tmp_path / "gen"
    BertTokenizerFast(str(vocab)).save_pretrained(folder)
    small = BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)
    BertForMaskedLM(small).save_pretrained(folder)
    data = write_sentences(tmp_path / "s.txt", n=8)
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(batch_size=4, steps=2, objective="diffcse",
                      objective_args={"generator": str(folder)})  # fmt: skip
    with pytest.raises(ValueError, match="its tokenizer differs from the trained model's"):
        Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False)
