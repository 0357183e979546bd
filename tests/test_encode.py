"""TransformerEncoder: batching, sorting and dedup must not change a single vector."""

import re

import numpy as np
import pytest
import torch

from embeval.core.model import SentenceModel, random_tiny
from embeval.eval.encoders.transformer import EmbeddingError, TransformerEncoder

SENTS = ["a b c d e f g", "short", "a b c d e f g", "medium length one", "short", "x y"]


@pytest.fixture(scope="module")
def tiny():
    backbone, tok = random_tiny(seed=0)
    return SentenceModel(backbone, "avg").eval(), tok


def one_by_one(model, tok, sentences):
    with torch.no_grad():
        return np.stack([model(**tok([s], return_tensors="pt"))[0].numpy() for s in sentences])


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_matches_unbatched_in_input_order(tiny, batch_size):
    model, tok = tiny
    enc = TransformerEncoder(model, tok, batch_size=batch_size, progress=False)
    got = enc.encode(SENTS)
    np.testing.assert_allclose(got, one_by_one(model, tok, SENTS), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (6, 128)


def test_each_distinct_sentence_encoded_once(tiny, monkeypatch):
    model, tok = tiny
    seen = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda **b: seen.append(len(b["input_ids"])) or forward(**b)
    )
    TransformerEncoder(model, tok, batch_size=2, progress=False).encode(SENTS)
    assert sum(seen) == len(set(SENTS)) == 4


def test_texts_that_tokenize_alike_share_one_vector(tiny, monkeypatch):
    """Under an uncased tokenizer `A  b` and `a b` are one input: encoded once, they are bitwise
    equal (so their cosine is exactly 1) instead of differing by the noise of two batches."""
    model, tok = tiny
    seen = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda **b: seen.append(len(b["input_ids"])) or forward(**b)
    )
    got = TransformerEncoder(model, tok, batch_size=1, progress=False).encode(
        ["a b", "A  b", "x y z"]
    )
    assert sum(seen) == 2
    assert (got[0] == got[1]).all() and not (got[0] == got[2]).all()


def test_batches_are_length_sorted(tiny, monkeypatch):
    model, tok = tiny
    widths = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda **b: widths.append(b["input_ids"].shape[1]) or forward(**b)
    )
    TransformerEncoder(model, tok, batch_size=1, progress=False).encode(SENTS)
    assert widths == sorted(widths, reverse=True)


def test_nan_embeddings_fail_loudly(tiny):
    backbone, tok = random_tiny(seed=0)
    with torch.no_grad():
        backbone.embeddings.word_embeddings.weight.fill_(float("nan"))
    enc = TransformerEncoder(SentenceModel(backbone, "avg"), tok, progress=False)
    with pytest.raises(EmbeddingError, match="NaN/inf embeddings for 2 sentence"):
        enc.encode(["one", "two"])


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_sentence_is_rejected(tiny, bad):
    model, tok = tiny
    with pytest.raises(ValueError, match="sentence #1 is empty"):
        TransformerEncoder(model, tok, progress=False).encode(["fine", bad])


def test_half_precision_needs_cuda(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="is for CUDA"):
        TransformerEncoder(model, tok, device="cpu", dtype="float16")


@pytest.mark.gpu
def test_cuda_bf16_close_to_fp32(tiny):
    model, tok = tiny
    ref = TransformerEncoder(model, tok, device="cpu", progress=False).encode(SENTS)
    got = TransformerEncoder(model, tok, device="cuda", dtype="bfloat16", progress=False).encode(
        SENTS
    )
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99


@pytest.mark.parametrize("normalize", [False, True])
def test_normalize_module_gives_sentence_transformers_embeddings(tmp_path, normalize):
    """A checkpoint whose modules end with Normalize encodes to unit vectors, as
    sentence-transformers encodes it; one without keeps the raw pooled vectors. Normalize is a
    wrapper after the cache: both checkpoints' raw vectors share one cache key (they are the same
    vectors), while the chains' fingerprints differ, so nothing caching a chain's output could
    serve one's vectors to the other."""
    from sentence_transformers import SentenceTransformer

    from embeval.core.model import save_checkpoint
    from embeval.eval.encoders.chain import build_encoder

    backbone, tok = random_tiny(seed=3)
    path = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 64, normalize=normalize)
    kw = dict(progress=False, device="cpu", cache_dir=tmp_path / "cache")
    ours = build_encoder(str(path), **kw)
    got = ours.encode(SENTS)
    st = SentenceTransformer(str(path), device="cpu").encode(SENTS, convert_to_numpy=True)
    np.testing.assert_allclose(got, st, atol=1e-5)
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == normalize
    assert ours.describe()["normalize"] is normalize
    assert ours.describe()["postprocess"] == ([{"name": "normalize", "fit_on": None}] * normalize)
    flipped = save_checkpoint(backbone, tok, tmp_path / "flip", "avg", 64, not normalize)
    other = build_encoder(str(flipped), **kw)
    assert other.fingerprint != ours.fingerprint
    assert other.describe()["fingerprint"] != ours.describe()["fingerprint"]  # results files
    assert other.describe()["cache_dir"] == ours.describe()["cache_dir"]  # raw vectors: shared
    # The cache holds the raw pooled vectors, whichever checkpoint wrote them: read back without
    # the Normalize step they equal an uncached encode; Normalize divides them by their norms.
    raw = TransformerEncoder.from_checkpoint(str(path), progress=False, device="cpu").encode(SENTS)
    cached = build_encoder(str(path), normalize=False, **kw)
    np.testing.assert_array_equal(cached.encode(SENTS), raw)
    assert cached.describe()["cache_hits"] == len(set(SENTS))
    want = raw / np.linalg.norm(raw, axis=1, keepdims=True) if normalize else raw
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("device", "cuda_count", "message"),
    [
        ("gpu0", 0, "expected cpu, cuda, cuda:N or mps"),
        ("cuda", 0, "CUDA is not available on this machine"),
        ("cuda:2", 2, "has 2 CUDA device(s), cuda:0 to cuda:1"),
    ],
)
def test_unusable_device_is_refused_up_front(tiny, monkeypatch, device, cuda_count, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    model, tok = tiny
    with pytest.raises(ValueError, match=re.escape(f"--device {device!r}")) as err:
        TransformerEncoder(model, tok, device=device, progress=False)
    assert message in str(err.value)


def test_a_torch_device_is_taken_as_its_name(tiny):
    """The Trainer holds a torch.device; the STS-B dev evaluator passed it on and the name
    check called .strip() on it."""
    model, tok = tiny
    enc = TransformerEncoder(model, tok, device=torch.device("cpu"), progress=False)
    assert enc.encode(["a cat"]).shape == (1, model.backbone.config.hidden_size)


def test_bad_device_fails_even_when_everything_is_cached(tmp_path, tiny_data):
    """A warm cache encodes nothing, so `--device gpu0` used to pass and be recorded."""
    from click.testing import CliRunner

    from embeval.cli import main
    from embeval.core.model import save_checkpoint

    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 32)
    args = ["score", ckpt, "--tasks", "stsb", "--data", tiny_data, "--cache-dir", tmp_path / "c"]
    warm = CliRunner().invoke(main, [*map(str, args), "--out", str(tmp_path / "a.json")])
    assert warm.exit_code == 0, warm.output
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, [*map(str, args), "--device", "gpu0", "--out", str(out)])
    assert res.exit_code == 2 and "--device 'gpu0': expected cpu, cuda" in res.output
    assert not out.exists()


def test_max_length_beyond_the_position_limit_is_refused_up_front(tmp_path, tiny_data):
    """--max-length 100000 crashed at the first long sentence (3002 vs 512 positions)."""
    from click.testing import CliRunner

    from embeval.cli import main
    from embeval.core.checkpoint import CheckpointError, checkpoint_info
    from embeval.core.model import save_checkpoint

    with pytest.raises(CheckpointError, match="--max-length 100000 exceeds the 512 token posit"):
        checkpoint_info(max_length=100000)
    assert checkpoint_info(max_length=512).max_length == 512
    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 32)
    out = tmp_path / "r.json"
    args = ["score", ckpt, "--tasks", "stsb", "--data", tiny_data, "--out", out, "--no-cache"]
    res = CliRunner().invoke(main, [*map(str, args), "--max-length", "3002"])
    assert res.exit_code == 2 and "use --max-length 512 or less" in res.output
    assert not out.exists()


def test_position_limit_leaves_out_roberta_padding_offset():
    from embeval.core.checkpoint import position_limit

    assert position_limit({"max_position_embeddings": 512, "model_type": "bert"}) == 512
    roberta = {"max_position_embeddings": 514, "model_type": "roberta", "pad_token_id": 1}
    assert position_limit(roberta) == 512
