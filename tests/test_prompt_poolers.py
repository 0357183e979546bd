"""Poolers that read more than the hidden states: PromptBERT (and its template denoising),
PromptEOL and last-token pooling on a decoder, Ditto's attention weighting. Each runs through
SentenceModel and the encoder on a tiny random model, and is compared with the formula computed
by hand from transformers' raw outputs (one sentence at a time, so no padding) and numpy.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from embeval.cli import main
from embeval.core.checkpoint import CheckpointError, checkpoint_info
from embeval.core.model import SentenceModel, load_model, random_tiny, save_checkpoint
from embeval.core.poolers import POOLERS
from embeval.eval.encoders.transformer import TransformerEncoder
from embeval.registry import UnknownUnit

TEXTS = ["a cat sat on the mat", "dogs bark .", "is the weather nice today , or not ?"]


@pytest.fixture(scope="module")
def bert():
    backbone, tok = random_tiny(seed=0)  # 2 layers, 2 heads
    return backbone.eval(), tok


def encode(backbone, tok, pooler, texts=TEXTS, batch_size=8):
    model = SentenceModel(backbone, pooler, tok).eval()  # the encoder restores this mode
    return TransformerEncoder(model, tok, device="cpu", batch_size=batch_size).encode(texts)


def last_hidden(backbone, ids, **kw) -> np.ndarray:  # one unpadded sequence -> (T, H)
    with torch.no_grad():
        out = backbone(input_ids=torch.tensor([ids]), output_hidden_states=True, **kw)
    return out.hidden_states[-1][0].numpy()


def test_promptbert_is_the_mask_state_of_the_filled_template(bert):
    """By hand: the prompt text written out (a final period added, as the reference does),
    tokenized alone, the last layer read where the id is [MASK]."""
    backbone, tok = bert
    got = encode(backbone, tok, "promptbert")
    want = []
    for s in TEXTS:
        end = s if s.endswith((".", "?")) else s + "."
        ids = tok(f'This sentence : "{end}" means [MASK] .')["input_ids"]
        want.append(last_hidden(backbone, ids)[ids.index(tok.mask_token_id)])
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-5)


def test_promptbert_denoised_subtracts_the_empty_template_at_the_same_positions(bert):
    """By hand: the empty template is [CLS] this sentence : " " means [MASK] . [SEP]; its first
    5 tokens ([CLS] this sentence : ") keep positions 0-4, the rest move by the sentence's n
    tokens, as in the filled prompt (Prompt-BERT's get_delta)."""
    backbone, tok = bert
    got = encode(backbone, tok, "promptbert_denoised")
    empty = tok('This sentence : "" means [MASK] .')["input_ids"]
    assert tok.convert_ids_to_tokens(empty[:5]) == ["[CLS]", "this", "sentence", ":", '"']
    want = []
    for s in TEXTS:
        end = s if s.endswith((".", "?")) else s + "."
        ids = tok(f'This sentence : "{end}" means [MASK] .')["input_ids"]
        n = len(ids) - len(empty)
        h = last_hidden(backbone, ids)[ids.index(tok.mask_token_id)]
        pos = list(range(5)) + [p + n for p in range(5, len(empty))]
        # With an explicit all-ones mask: without one, transformers reads a jump in position
        # ids as the start of a packed second sequence and blocks attention across it.
        ones = torch.ones(1, len(empty), dtype=torch.long)
        d = last_hidden(backbone, empty, position_ids=torch.tensor([pos]), attention_mask=ones)
        want.append(h - d[empty.index(tok.mask_token_id)])
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-5)
    # Not a no-op: the template state is far from zero.
    assert not np.allclose(got, encode(backbone, tok, "promptbert"), atol=1e-2)


def test_a_custom_template_reaches_the_pooler_through_the_cli_option(bert):
    backbone, tok = bert
    got = encode(backbone, tok, "promptbert:[X] is like [MASK] !", texts=["dogs bark ."])
    ids = tok("dogs bark . is like [MASK] !")["input_ids"]
    want = last_hidden(backbone, ids)[ids.index(tok.mask_token_id)]
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("promptbert:This sentence means [MASK] .", r"must hold the sentence slot \[X\] once"),
        ("promptbert:[X] means nothing", r"must hold the mask slot \[MASK\] once"),
        ("promptbert_denoised:[X] [X] [MASK]", r"sentence slot \[X\] once"),
        ("prompteol:in one word:", r"sentence slot \[X\] once"),
        ("ditto:0", "expected LAYER,HEAD"),
        ("ditto:-1,2", "expected LAYER,HEAD"),
    ],
)
def test_bad_templates_and_indices_are_refused_at_parse_time(spec, message):
    with pytest.raises(UnknownUnit, match=message):
        POOLERS.get(spec)
    base, _, arg = spec.partition(":")
    for args in (["--pooler", spec], ["--pooler", base, "--template", arg]):
        if args[-2] == "--template" and base == "ditto":
            continue
        res = CliRunner().invoke(main, ["score", *args, "--no-cache"])
        assert res.exit_code == 2 and ("once" in res.output or "LAYER" in res.output), res.output


def test_template_option_needs_a_template_pooler():
    res = CliRunner().invoke(main, ["score", "--pooler", "avg", "--template", "[X] [MASK]"])
    assert res.exit_code == 2 and "--template is for a template pooler" in res.output


def test_template_option_is_recorded_in_the_pooler_name(tmp_path, shared_data):
    """`--pooler promptbert --template T` runs as, and records, promptbert:T."""
    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 64)
    out = tmp_path / "r.json"
    args = ["score", str(ckpt), "--tasks", "stsb", "--split", "dev", "--limit", "8"]
    args += ["--data", str(shared_data), "--no-cache", "--device", "cpu", "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--pooler", "promptbert", "--template", "[X] = [MASK]"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["meta"]["pooler"] == "promptbert:[X] = [MASK]"


def test_ditto_weights_first_last_by_one_heads_diagonal(bert):
    """By hand: e = sum_t A[l][h][t, t] (h0_t + hL_t) / 2 from the eager model's attentions."""
    backbone, tok = bert
    got = encode(backbone, tok, "ditto:1,1")
    eager = random_tiny(seed=0)[0].eval()
    eager.set_attn_implementation("eager")
    want = []
    for s in TEXTS:
        with torch.no_grad():
            out = eager(
                **tok(s, return_tensors="pt"), output_hidden_states=True, output_attentions=True
            )
        a = np.diag(out.attentions[1][0, 1].numpy())  # (T,)
        hs = out.hidden_states
        want.append((a[:, None] * (hs[0][0].numpy() + hs[-1][0].numpy()) / 2).sum(0))
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-5)
    assert POOLERS.canonical("ditto") == "ditto" and POOLERS.get("ditto").head == 9


def test_ditto_layer_or_head_out_of_range_is_an_error_before_loading(tmp_path):
    backbone, tok = random_tiny(seed=0)  # 2 layers, 2 heads
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 64)
    with pytest.raises(CheckpointError, match="layer 2 out of range.* 0 to 1"):
        checkpoint_info(ckpt, pooler="ditto:2,0")
    with pytest.raises(CheckpointError, match="head 9 out of range.* 0 to 1"):
        checkpoint_info(ckpt, pooler="ditto")  # BERT-base's default head 9


def test_promptbert_without_a_mask_token_is_an_error(gpt2_ckpt):
    model, tok, _ = load_model(gpt2_ckpt, pooler="promptbert")
    with pytest.raises(ValueError, match="this tokenizer has no mask token"):
        TransformerEncoder(model, tok, device="cpu").encode(["a sentence"])


# ---------------------------------------------------------------- decoder-only (GPT-2)


@pytest.fixture(scope="module")
def gpt2_ckpt(tmp_path_factory):
    """A 2-layer random GPT-2 with a byte-level BPE tokenizer trained here on a few lines (no
    download): its tokenizer has an EOS token and no pad token, as GPT-2's own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [*TEXTS, 'This sentence : "x" means in one word:"'] * 5
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    GPT2Model(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooler", ["last_token", "prompteol"])
def test_decoder_last_token_reads_the_last_real_token(gpt2_ckpt, side, pooler, caplog):
    """A GPT-2 folder loads through load_model (pad = EOS, logged), and a padded batch gives
    each sentence the last-layer state of its last real token, as the sentence alone does,
    whichever side the tokenizer pads (left padding: positions counted from the first real
    token). PromptEOL by hand: the prompt written out with its clean-up."""
    with caplog.at_level(logging.INFO, logger="embeval.core.model"):
        model, tok, info = load_model(gpt2_ckpt, pooler=pooler)
    assert "no pad token; padding with the EOS token '<|endoftext|>'" in caplog.text
    tok.padding_side = side
    got = TransformerEncoder(model, tok, info, device="cpu").encode(TEXTS)
    want = []
    for s in TEXTS:
        if pooler == "prompteol":  # final period, a final ? made a period
            s = 'This sentence : "' + (s[:-1] + "." if s.endswith("?") else s.rstrip(".") + ".")
            s += '" means in one word:"'
        ids = tok(s)["input_ids"]
        want.append(last_hidden(model.backbone, ids)[-1])
    np.testing.assert_allclose(got, np.array(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("field", ["pooler", "eval_pooler"])
def test_training_with_a_prompt_pooler_is_refused(field):
    """The trainer tokenizes the bare sentences: a prompt pooler would never see its prompt,
    except PromptBERT's, whose view builds the prompts (tests/test_train_promptbert.py)."""
    from embeval.core.train_config import TrainConfig

    with pytest.raises(ValueError, match=f"{field}: prompt pooler prompteol is for scoring"):
        TrainConfig(**{field: "prompteol"}).validate()
    with pytest.raises(ValueError, match="needs --view promptbert"):
        TrainConfig(pooler="promptbert").validate()


def test_embeval_score_runs_a_decoder_checkpoint_folder(gpt2_ckpt, shared_data, tmp_path):
    """The GPT-2 folder through the CLI: its 64 positions cap max_length (n_positions in its
    config.json), the prompt pooler is recorded."""
    out = tmp_path / "r.json"
    args = ["score", str(gpt2_ckpt), "--pooler", "prompteol", "--tasks", "stsb", "--split"]
    args += ["dev", "--limit", "8", "--data", str(shared_data), "--no-cache", "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    meta = json.loads(out.read_text())["meta"]
    assert meta["pooler"] == "prompteol" and meta["max_length"] == 64


def test_a_prompt_over_max_length_is_an_error_not_a_cut_mask(bert):
    backbone, tok = bert
    model = SentenceModel(backbone, "promptbert", tok).eval()
    enc = TransformerEncoder(model, tok, device="cpu", max_length=12)
    with pytest.raises(ValueError, match=r"prompt of sentence 'a cat sat on the mat' has 17 tok"):
        enc.encode(["a cat sat on the mat"])


def test_promptbert_denoised_keeps_robertas_position_offset(bert):
    """RoBERTa numbers positions from padding_idx + 1 (here 1 + 1 = 2): the empty template
    must get the filled prompt's position ids, offset included. By hand: both position rows
    written out, the model run with them explicitly."""
    from transformers import RobertaConfig, RobertaModel

    _, tok = bert  # a BERT vocabulary: id 1 ([unused0]) never occurs, so it can be RoBERTa's pad
    config = RobertaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    roberta = RobertaModel(config).eval()
    got = encode(roberta, tok, "promptbert_denoised", texts=["dogs bark ."])
    ids = tok('This sentence : "dogs bark ." means [MASK] .')["input_ids"]
    empty = tok('This sentence : "" means [MASK] .')["input_ids"]
    n = len(ids) - len(empty)
    ones = torch.ones(1, len(empty), dtype=torch.long)
    filled_pos = torch.tensor([[2 + p for p in range(len(ids))]])
    h = last_hidden(roberta, ids, position_ids=filled_pos)[ids.index(tok.mask_token_id)]
    np.testing.assert_allclose(
        h, last_hidden(roberta, ids)[ids.index(tok.mask_token_id)], rtol=1e-5, atol=1e-5
    )  # the offset is RoBERTa's own numbering
    pos = torch.tensor([[2 + p if p < 5 else 2 + p + n for p in range(len(empty))]])
    d = last_hidden(roberta, empty, position_ids=pos, attention_mask=ones)
    np.testing.assert_allclose(got[0], h - d[empty.index(tok.mask_token_id)], rtol=1e-5, atol=1e-5)


def test_int8_refuses_object_poolers(bert):
    pytest.importorskip("onnxruntime")
    backbone, tok = bert
    model = SentenceModel(backbone, "promptbert", tok).eval()
    enc = TransformerEncoder(model, tok, device="cpu", quantize="int8")
    with pytest.raises(ValueError, match="pooler promptbert runs in float32 only"):
        enc.encode(["a sentence"])
