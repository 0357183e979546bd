"""embeval.senteval against a fake SentEval: its params object and its prepare/batcher calls."""

from __future__ import annotations

import numpy as np
import pytest

from embeval.eval.data.transfer import load_transfer
from embeval.senteval import batcher, prepare, senteval_params, senteval_text


class dotdict(dict):  # noqa: N801 - SentEval's own name for its params class (senteval/utils.py)
    """SentEval's params object: a dict with attribute access."""

    __getattr__ = dict.get
    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__


def run_like_senteval(params, samples, batch_size=4):
    """What SentEval's task classes do: prepare once, then batcher over sorted batches."""
    prepare(params, samples)
    ordered = sorted(samples, key=len)
    out = [batcher(params, ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size)]
    return ordered, np.vstack(out)


def test_vectors_equal_the_encoder_and_encode_once(fake_encoder):
    samples = [["a", "cat", "sits"], ["the", "dog"], ["a", "cat", "sits"], ["sky"], []]
    params = dotdict(senteval_params(fake_encoder, "/data/senteval"))
    ordered, emb = run_like_senteval(params, samples, batch_size=2)
    assert emb.shape == (5, fake_encoder.dim) and emb.dtype == np.float32
    expected = fake_encoder.encode([senteval_text(s) for s in ordered])
    np.testing.assert_array_equal(emb, expected)
    # prepare encoded the 4 distinct texts in one call; batcher encoded nothing
    assert fake_encoder.calls[0] == ["a cat sits", "the dog", "sky", "."]
    assert len(fake_encoder.calls) == 2  # the first call, plus the reference encode above


def test_params_are_senteval_sklearn_defaults(fake_encoder):
    p = senteval_params(fake_encoder, "data", seed=7)
    assert p["usepytorch"] is False and p["kfold"] == 10 and p["task_path"] == "data"
    assert p["seed"] == 7


def test_bytes_tokens_and_unprepared_batches(fake_encoder):
    params = dotdict(embeval_encoder=fake_encoder)
    emb = batcher(params, [[b"caf\xc3\xa9", b"noir"], ["plain"]])  # no prepare: encoded now
    assert fake_encoder.calls == [["café noir", "plain"]] and emb.shape == (2, 16)


def test_same_text_as_embeval_transfer(tmp_path, fake_encoder):
    """A SentEval token list and embeval's reader give the model the same string."""
    (tmp_path / "transfer" / "MR").mkdir(parents=True)
    lines = ["  it 's   a  film .", "\t", "great"] * 12
    (tmp_path / "transfer" / "MR" / "rt-polarity.pos").write_text("\n".join(lines) + "\n")
    (tmp_path / "transfer" / "MR" / "rt-polarity.neg").write_text("\n".join(lines) + "\n")
    ours = set(load_transfer("MR", tmp_path).splits["all"].x)
    assert ours == {senteval_text(line.split()) for line in lines}


def test_missing_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="hold no embeval encoder"):
        prepare(dotdict(task_path="x"), [["a"]])


def test_checkpoint_in_params(tmp_path):
    from embeval.core.model import random_tiny, save_checkpoint

    ckpt = save_checkpoint(*random_tiny(seed=0), tmp_path / "tiny", "avg", 32)
    params = dotdict(embeval_checkpoint=str(ckpt), embeval_cache_dir=str(tmp_path / "cache"))
    _, emb = run_like_senteval(params, [["hello", "world"], ["bye"]])
    assert emb.shape[0] == 2 and np.isfinite(emb).all()
    assert list((tmp_path / "cache").rglob("*.npz"))  # went through the embedding cache
