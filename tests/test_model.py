"""Checkpoint loading and SimCSE poolers, checked against transformers' own outputs."""

import shutil

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from embeval.core.model import (
    CheckpointError,
    checkpoint_info,
    default_checkpoint_path,
    load_model,
    random_tiny,
    resolve_checkpoint,
    save_checkpoint,
)

SENTS = ["a man is playing a guitar .", "the cat sat on the mat", "hi"]


@pytest.fixture(scope="module")
def reference():
    """Hidden states straight from transformers, the ground truth for every pooler."""
    path = str(default_checkpoint_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return batch["attention_mask"], out


def masked_mean(h, mask):
    m = mask.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1)


@pytest.mark.parametrize(
    "pooler", ["cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2"]
)
def test_poolers_match_transformers(reference, pooler):
    mask, out = reference
    hs = out.hidden_states
    expected = {
        "cls": out.pooler_output,
        "cls_before_pooler": out.last_hidden_state[:, 0],
        "avg": masked_mean(out.last_hidden_state, mask),
        "avg_first_last": masked_mean((hs[1] + hs[-1]) / 2, mask),
        "avg_top2": masked_mean((hs[-1] + hs[-2]) / 2, mask),
    }[pooler]
    model, tok, info = load_model(pooler=pooler)
    batch = tok(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model(**batch)
    assert info.pooler == pooler
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_default_follows_sentence_transformers_config():
    info = checkpoint_info()
    assert (info.pooler, info.max_length, info.normalize) == ("avg", 256, True)


def test_unknown_pooler():
    with pytest.raises(CheckpointError, match="unknown pooler 'mean'"):
        checkpoint_info(pooler="mean")


def test_padding_does_not_change_avg():
    """Masked mean ignores padding: a sentence alone equals the same sentence in a padded batch."""
    model, tok, _ = load_model()
    with torch.no_grad():
        alone = model(**tok(SENTS[2:], return_tensors="pt"))
        padded = model(**tok(SENTS, padding=True, return_tensors="pt"))[2:]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


def test_unsupported_sentence_transformers_pooling_can_be_overridden(tmp_path):
    """A max-pooling model: no default embeval can honour, so scoring it needs --pooler, and
    with --pooler it loads (the pooling module is then not interpreted)."""
    import json

    ckpt = tmp_path / "max-pooled"
    shutil.copytree(default_checkpoint_path(), ckpt)
    pooling = json.loads((ckpt / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (ckpt / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(CheckpointError, match="has no embeval equivalent; pass --pooler"):
        checkpoint_info(ckpt)
    model, _, info = load_model(ckpt, pooler="avg")
    assert (info.pooler, info.max_length) == ("avg", 256) and model.pooler == "avg"


@pytest.mark.parametrize("arch", ["distilbert", "modernbert"])
def test_set_dropout_reaches_layers_attention_and_config(arch):
    """Beyond BERT: DistilBERT names its rates `dropout`/`attention_dropout`; ModernBERT hands
    attention dropout to the kernel as a float attribute, not an nn.Dropout."""
    import transformers

    from embeval.core.model import set_dropout

    if arch == "distilbert":
        cfg = transformers.DistilBertConfig(
            vocab_size=64, dim=32, n_layers=1, n_heads=2, hidden_dim=64
        )
        model = transformers.DistilBertModel(cfg)
    else:
        cfg = transformers.ModernBertConfig(
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            embedding_dropout=0.1,
            mlp_dropout=0.1,
            attention_dropout=0.1,
        )
        model = transformers.ModernBertModel(cfg)
    set_dropout(model, 0.3)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    rates |= {m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")}
    assert rates == {0.3}
    assert all(
        getattr(model.config, k) == 0.3
        for k in ("dropout", "attention_dropout", "embedding_dropout", "mlp_dropout")
        if hasattr(model.config, k)
    )


def test_missing_path():
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_info("./no/such/checkpoint")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="holds no weights"):
        checkpoint_info(tmp_path)


def test_corrupt_safetensors(tmp_path):
    ckpt = tmp_path / "broken"
    shutil.copytree(default_checkpoint_path(), ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors header")
    with pytest.raises(CheckpointError, match=f"could not load checkpoint {ckpt}"):
        load_model(ckpt)


def test_save_roundtrip_and_fingerprint(tmp_path):
    backbone, tok = random_tiny(seed=1)
    out = save_checkpoint(backbone, tok, tmp_path / "ckpt", "cls_before_pooler", 32)
    model, _, info = load_model(out)
    assert (info.pooler, info.max_length) == ("cls_before_pooler", 32)
    batch = tok(SENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = backbone.eval()(**batch).last_hidden_state[:, 0]
        torch.testing.assert_close(model(**batch), expected)
    # Another pooler or other weights give another fingerprint (the cache key).
    assert checkpoint_info(out, pooler="avg").fingerprint != info.fingerprint
    other, _ = random_tiny(seed=2)
    out2 = save_checkpoint(other, tok, tmp_path / "ckpt2", "cls_before_pooler", 32)
    assert checkpoint_info(out2).fingerprint != info.fingerprint
    assert not list(tmp_path.glob(".ckpt*")), "no temporary folders left behind"


def test_loading_prints_no_transformers_progress_bar(capfd):
    """transformers draws a weight-loading bar even into a pipe or a CI log; loading is quick,
    so embeval keeps it off, and leaves transformers' own setting as it found it."""
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model()
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
    assert hf_logging.is_progress_bar_enabled()


def test_fingerprint_covers_every_shard_of_a_sharded_checkpoint(tmp_path):
    """A model saved in shards (model-0000k-of-0000n.safetensors + index) is keyed by all its
    shards: changing one byte of the last shard changes the cache key."""
    backbone, tok = random_tiny(seed=1)
    backbone.save_pretrained(str(tmp_path), max_shard_size="2MB")
    tok.save_pretrained(str(tmp_path))
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    before = checkpoint_info(tmp_path, pooler="avg").fingerprint
    data = bytearray(shards[-1].read_bytes())
    data[-1] ^= 1  # the last byte is tensor data, not the header
    shards[-1].write_bytes(bytes(data))
    assert checkpoint_info(tmp_path, pooler="avg").fingerprint != before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoint_computes_in_float32(tmp_path, dtype):
    """Hub checkpoints are often saved in float16/bfloat16, and transformers >= 5 would keep that
    dtype; embeval computes in float32 on the same (exactly widened) weights."""
    backbone, tok = random_tiny(seed=3)
    out = save_checkpoint(backbone.to(dtype), tok, tmp_path / "half", "avg", 32)
    model, _, _ = load_model(out)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    batch = tok(SENTS, padding=True, return_tensors="pt")
    widened = backbone.float().eval()  # the half weights, widened: what float32 should compute
    with torch.no_grad():
        h = widened(**batch).last_hidden_state
        torch.testing.assert_close(model(**batch), masked_mean(h, batch["attention_mask"]))


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be fetched from the Hugging Face hub"):
        checkpoint_info("princeton-nlp/unsup-simcse-bert-base-uncased")


def test_checkpoint_from_url_archive(tmp_path):
    """A .zip URL is downloaded and unpacked; served here from a loopback HTTP server."""
    import functools
    import http.server
    import threading

    backbone, tok = random_tiny(seed=3)
    src = save_checkpoint(backbone, tok, tmp_path / "site" / "tiny", "avg", 16)
    shutil.make_archive(str(tmp_path / "site" / "tiny"), "zip", src.parent, src.name)
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site")
    )
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tiny.zip"
        local = resolve_checkpoint(url, download_dir=tmp_path / "dl")
        assert checkpoint_info(local).fingerprint == checkpoint_info(src).fingerprint
        with pytest.raises(CheckpointError, match="could not download"):
            resolve_checkpoint(url.replace("tiny.zip", "missing.zip"), download_dir=tmp_path / "dl")
    finally:
        server.shutdown()
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [local.parent.name]
