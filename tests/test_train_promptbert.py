"""PromptBERT training (`--view promptbert` with a [MASK]-state training pooler) on random-tiny:
the prompts' token ids by hand, the training embedding (denoised or not, then the MLP) against
raw transformers outputs, and a CPU smoke run on 16 wiki1m sentences (the loss falls, the
settings and template are recorded, resume equals an uninterrupted run, the saved checkpoint
encodes as the [MASK] state of template1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import read_log, train_until_interrupted

from embeval.core.augment import PromptWrap
from embeval.core.model import random_tiny
from embeval.core.trainer import TrainConfig, Trainer
from embeval.core.views import PROMPTBERT_TEMPLATES, VIEWS

WIKI = "wiki1m_for_simcse.first11914.txt"
T1, T2 = PROMPTBERT_TEMPLATES
STEPS, CUT = 12, 4


def ids(tok, tokens):
    return tok.convert_tokens_to_ids(tokens)


def prompt_ids(tok, template, words):
    """[CLS] template-before-[X] words template-after-[X] [SEP], spelled out token by token."""
    before = {T1: ["this", "sentence", "of", '"'], T2: ["this", "sentence", ":", '"']}[template]
    return ids(tok, ["[CLS]", *before, *words, '"', "means", "[MASK]", ".", "[SEP]"])


def test_view_wraps_each_sentence_in_its_template_and_cuts_only_the_sentence():
    _, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    views = VIEWS.get("promptbert")([("a cat sleeps",), ("the dog",)])
    assert views.texts == [["a cat sleeps", "the dog"]] and views.order == (0, 0)
    for aug in views.augment:
        aug.bind(tok)
    sent = tok("a cat sleeps")["input_ids"]
    assert views.augment[0].token_ids(sent) == prompt_ids(tok, T1, ["a", "cat", "sleeps"])
    assert views.augment[1].token_ids(sent) == prompt_ids(tok, T2, ["a", "cat", "sleeps"])
    cut = tok("a cat sleeps", truncation=True, max_length=4)["input_ids"]  # [CLS] a cat [SEP]
    assert views.augment[0].token_ids(cut) == prompt_ids(tok, T1, ["a", "cat"])
    masked = tok("a [MASK] cat")["input_ids"]  # one mask per prompt: the sentence's is dropped
    wrap = PromptWrap(T1)
    wrap.bind(tok)
    assert wrap.token_ids(masked) == prompt_ids(tok, T1, ["a", "cat"])


@pytest.mark.parametrize("template", ['no slot "[MASK]" .', 'This "[X]" means .'])
def test_a_template_without_its_slots_is_refused_before_any_step(template, tmp_path):
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    data = tmp_path / "d.txt"
    data.write_text("a\nb\nc\nd\n")
    cfg = TrainConfig(
        view="promptbert", view_args={"template2": template}, pooler="promptbert", batch_size=2
    )
    with pytest.raises(ValueError, match="template2 .* must hold"):
        Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"pooler": "promptbert"}, "needs --view promptbert"),  # no prompts to read
        ({"view": "promptbert", "pooler": "avg"}, "needs --pooler promptbert"),
        ({"view": "promptbert", "pooler": f"promptbert:{T2}"}, "must be the view's template1"),
        ({"view": "dropout", "pooler": "avg", "eval_pooler": "prompteol"}, "scoring only"),
    ],
)
def test_prompt_pooler_and_view_go_together(fields, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**fields).validate()


def mask_state(backbone, ids_, position_ids=None):  # raw transformers: last layer at [MASK]
    # An explicit all-ones mask: without one, transformers reads a jump in position ids as
    # the start of a packed second sequence and blocks attention across it.
    x = torch.tensor([ids_])
    mask = torch.ones_like(x)
    out = backbone(input_ids=x, position_ids=position_ids, attention_mask=mask).last_hidden_state[0]
    return out[ids_.index(103)]  # 103: [MASK] in the packaged uncased vocabulary


@pytest.mark.parametrize("pooler", ["promptbert", "promptbert_denoised"])
def test_training_embedding_is_the_mask_state_denoised_then_the_mlp(pooler, tmp_path):
    """The trainer's embeddings of two sentences (anchors: template1, positives: template2)
    equal, from raw BertModel outputs: tanh(W (h[MASK](prompt) - d) + b) with d = 0, or d =
    h[MASK] of the template with the slot empty whose tokens after the slot have their
    positions shifted by the sentence's n tokens (denoising); dropout 0 so both are exact."""
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    assert tok.mask_token_id == 103
    data = tmp_path / "d.txt"
    data.write_text("a cat sleeps\nthe dog is here now\n")
    cfg = TrainConfig(view="promptbert", pooler=pooler, batch_size=2, steps=1, dropout=0.0)
    trainer = Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False)
    caught = []
    trainer.model.register_forward_hook(lambda m, a, out: caught.append(out.detach()))
    trainer.backbone.train()
    trainer.compute_loss([("a cat sleeps",), ("the dog is here now",)])
    got = caught[0]  # (2 views x 2 sentences, H)
    mlp = trainer.backbone.pooler.dense
    WORDS = [["a", "cat", "sleeps"], ["the", "dog", "is", "here", "now"]]  # noqa: N806
    with torch.no_grad():
        for v, template in enumerate((T1, T2)):
            for i, words in enumerate(WORDS):
                h = mask_state(trainer.backbone, prompt_ids(tok, template, words))
                if pooler == "promptbert_denoised":
                    empty = prompt_ids(tok, template, [])
                    pos = torch.arange(len(empty))
                    pos[5:] += len(words)  # [CLS] + 4 template tokens precede the slot
                    h = h - mask_state(trainer.backbone, empty, pos.unsqueeze(0))
                want = torch.tanh(mlp(h))
                torch.testing.assert_close(got[v * 2 + i], want, atol=1e-5, rtol=1e-5)


def head(shared_data, tmp_path, n=16):
    lines = (shared_data / "train" / WIKI).read_text(encoding="utf-8").splitlines()
    out = tmp_path / WIKI
    out.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return out


def make(tmp_path, data, pooler):
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    # Dropout 0: on a random tiny model the dropout noise of the two [MASK] states of denoising
    # swamps their difference and 12 steps teach nothing; on BERT the recipe keeps 0.1.
    cfg = TrainConfig(
        view="promptbert", pooler=pooler, eval_pooler="promptbert", dropout=0.0, steps=STEPS,
        batch_size=8, max_length=24, lr=2e-3, eval_steps=STEPS, log_steps=1, seed=7,
    )  # fmt: skip
    return Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False), tok


# The recipe's pooler only (~15 s on 2 shared cores); the plain one is checked by hand above.
@pytest.mark.parametrize("pooler", ["promptbert_denoised"])
def test_promptbert_trains_records_reloads_and_resumes(pooler, shared_data, tmp_path):
    from transformers import BertModel

    from embeval.eval.encoders.transformer import TransformerEncoder

    data = head(shared_data, tmp_path)
    full, tok = make(tmp_path / "a", data, pooler)
    full.train()
    out = tmp_path / "a" / "out"
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(losses) == STEPS and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses  # it learns
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["view"] == "promptbert"
    assert saved["view_args"] == {"template1": T1, "template2": T2}
    assert saved["pooler"] == f"{pooler}:{T1}" and saved["eval_pooler"] == f"promptbert:{T1}"
    last = out / "last"
    cfg = json.loads((last / "embeval_config.json").read_text())
    assert cfg["pooler"] == f"promptbert:{T1}"  # `embeval score CKPT` evaluates with it

    # The checkpoint encodes as the [MASK] state of template1 around the sentence (with the
    # evaluation pooler's final period), from the raw saved weights.
    texts = ["a cat sleeps", "the dog is here now ."]
    words = [["a", "cat", "sleeps", "."], ["the", "dog", "is", "here", "now", "."]]
    ours = TransformerEncoder.from_checkpoint(str(last), progress=False, device="cpu").encode(texts)
    raw = BertModel.from_pretrained(str(last)).eval()
    with torch.no_grad():
        want = np.stack([mask_state(raw, prompt_ids(tok, T1, w)).numpy() for w in words])
    np.testing.assert_allclose(ours, want, atol=1e-5)

    train_until_interrupted(make(tmp_path / "b", data, pooler)[0], CUT)
    make(tmp_path / "b", data, pooler)[0].train(resume=True)
    resumed = TransformerEncoder.from_checkpoint(
        str(tmp_path / "b" / "out" / "last"), progress=False, device="cpu"
    )
    np.testing.assert_array_equal(resumed.encode(texts), ours)
    assert [r["loss"] for r in read_log(tmp_path / "b" / "out") if "loss" in r] == losses


def test_a_checkpoint_is_loaded_with_its_mlp_for_promptbert_training(tmp_path):
    """`embeval train` and the benchmarks load a checkpoint with the pooler pooler_to_load
    names: 'cls' keeps BERT's pooling layer, the MLP PromptBERT's [MASK] state trains through;
    a sentence-transformers checkpoint loaded for its own mean pooling has none."""
    from embeval.core.model import load_model, save_checkpoint
    from embeval.core.train_config import pooler_to_load

    assert pooler_to_load("promptbert", "avg") == "cls"
    assert pooler_to_load(None, "avg") == "avg" and pooler_to_load("dropout", "cls") == "cls"
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 32)
    with_mlp = load_model(ckpt, pooler=pooler_to_load("promptbert", "avg"))[0].backbone
    without = load_model(ckpt, pooler=pooler_to_load(None, "avg"))[0].backbone
    assert with_mlp.pooler is not None and without.pooler is None
