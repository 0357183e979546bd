"""CachedEncoder: a warm run encodes nothing; corrupt shards are detected and recomputed."""

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest

from embeval.eval.encoders.cache import CachedEncoder


def test_second_encode_hits_cache(fake_encoder, tmp_path):
    first = CachedEncoder(fake_encoder, tmp_path).encode(["a", "b", "a"])
    again = CachedEncoder(fake_encoder, tmp_path)
    second = again.encode(["b", "a"])
    assert fake_encoder.calls == [["a", "b"]]  # deduplicated once, then never again
    np.testing.assert_array_equal(second, first[[1, 0]])
    assert (again.hits, again.misses) == (2, 0)


def test_only_missing_sentences_are_encoded(fake_encoder, tmp_path):
    CachedEncoder(fake_encoder, tmp_path).encode(["a", "b"])
    out = CachedEncoder(fake_encoder, tmp_path).encode(["a", "c", "b", "c"])
    assert fake_encoder.calls[-1] == ["c"]
    np.testing.assert_array_equal(out, fake_encoder.encode(["a", "c", "b", "c"]))


def test_fingerprint_separates_models(fake_encoder, tmp_path):
    CachedEncoder(fake_encoder, tmp_path).encode(["a"])
    fake_encoder.fingerprint = "another-model"
    CachedEncoder(fake_encoder, tmp_path).encode(["a"])
    assert len(fake_encoder.calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_shard_is_recomputed_never_used(fake_encoder, tmp_path, damage):
    cache = CachedEncoder(fake_encoder, tmp_path)
    good = cache.encode(["a", "b"])
    (shard,) = cache.dir.glob("shard-*.npz")
    raw = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # valid zip, wrong vector bytes: only the checksum can tell
        z = dict(np.load(shard))
        z["vecs"] = z["vecs"] + 1
        np.savez(shard, **z)
    else:
        shard.write_bytes(b"not a zip at all")
    out = CachedEncoder(fake_encoder, tmp_path).encode(["a", "b"])
    np.testing.assert_array_equal(out, good)
    assert fake_encoder.calls == [["a", "b"], ["a", "b"]]


def test_failed_encode_leaves_no_entry(tmp_path):
    class Boom:
        fingerprint = "boom"

        def encode(self, sentences):
            return np.full((len(sentences), 4), np.nan, np.float32)

    cache = CachedEncoder(Boom(), tmp_path)
    with pytest.raises(RuntimeError, match="NaN"):
        cache.encode(["a"])
    assert not list(tmp_path.rglob("*.npz"))


def test_cache_dir_from_environment(fake_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEVAL_CACHE", str(tmp_path / "env-cache"))
    cache = CachedEncoder(fake_encoder)
    cache.encode(["a"])
    assert cache.dir.parent == tmp_path / "env-cache" and list(cache.dir.glob("shard-*.npz"))


@pytest.mark.parametrize("err", [errno.EFBIG, errno.ENOSPC])
def test_failed_cache_write_keeps_the_embeddings(fake_encoder, tmp_path, monkeypatch, caplog, err):
    """The cache is an optimisation: a shard that cannot be written is a warning, not the end
    of a run whose embeddings are already computed."""
    from embeval.eval.encoders import cache as cache_mod

    def full_disk(path, write):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(cache_mod, "atomic_write", full_disk)
    cache = CachedEncoder(fake_encoder, tmp_path)
    got = cache.encode(["a", "b"])
    np.testing.assert_array_equal(got, fake_encoder.encode(["a", "b"]))
    assert os.strerror(err) in caplog.text and "not cached" in caplog.text
    assert not list(tmp_path.rglob("*.npz"))


def test_failed_cache_write_still_writes_results(tiny_data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from embeval.cli import main
    from embeval.core.model import random_tiny, save_checkpoint
    from embeval.eval.encoders import cache as cache_mod

    def too_large(path, write):
        raise OSError(errno.EFBIG, "File too large")

    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 32)
    monkeypatch.setattr(cache_mod, "atomic_write", too_large)
    out = tmp_path / "r.json"
    args = ["score", ckpt, "--tasks", "stsb", "--data", tiny_data, "--out", out]
    res = CliRunner().invoke(main, [*map(str, args), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert out.exists() and out.with_name("r.pairs.npz").exists()


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_unusable_cache_dir_is_named_up_front(fake_encoder, tmp_path, monkeypatch, where):
    """A cache folder that cannot be used fails before encoding, naming the option and path."""
    from embeval.eval.encoders.cache import CacheError

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    path = {"file": blocker, "under_file": blocker / "sub", "read_only": tmp_path / "ro" / "sub"}
    if where == "read_only":  # chmod does not stop root, so the permission check is faked
        (tmp_path / "ro").mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and Path(p).name != "ro")
    expected = {
        "file": "is a file; expected a folder",
        "under_file": f"lies under the file {blocker}",
        "read_only": f"{tmp_path / 'ro'} is not writable",
    }
    with pytest.raises(CacheError, match=re.escape(f"{path[where]} (--cache-dir)")) as err:
        CachedEncoder(fake_encoder, path[where])
    assert expected[where] in str(err.value)
    monkeypatch.setenv("EMBEVAL_CACHE", str(path[where]))
    with pytest.raises(CacheError, match=re.escape("($EMBEVAL_CACHE)")):
        CachedEncoder(fake_encoder)
    assert fake_encoder.calls == []
