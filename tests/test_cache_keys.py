"""The embedding cache key changes with everything that changes the vectors.

A fake checkpoint folder is enough: the fingerprint reads files as bytes and never loads them.
Each input gets its own case, so leaving any one out of the key fails a test (issue 14,
survivors 5, 6 and 7).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embeval.core.checkpoint import checkpoint_info, fingerprint
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.encoders.transformer import TransformerEncoder

# Written out here, not read from checkpoint.py's constants, so that shortening a constant there
# fails these tests instead of shrinking them.
KEYED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture
def ckpt(tmp_path) -> Path:
    path = tmp_path / "ckpt"
    path.mkdir()
    for name in KEYED_FILES:
        (path / name).write_text(json.dumps({"file": name, "max_position_embeddings": 512}))
    return path


@pytest.mark.parametrize("name", KEYED_FILES)
def test_fingerprint_changes_with_each_file(ckpt, name):
    before = fingerprint(ckpt, "cls", 128)
    with open(ckpt / name, "a") as f:
        f.write(" ")
    assert fingerprint(ckpt, "cls", 128) != before, f"{name} is not part of the cache key"


def test_fingerprint_ignores_files_that_do_not_change_vectors(ckpt):
    before = fingerprint(ckpt, "cls", 128)
    (ckpt / "README.md").write_text("a model card")
    assert fingerprint(ckpt, "cls", 128) == before


@pytest.mark.parametrize(
    "other",
    [("avg", 128, False), ("cls", 32, False), ("cls", 128, True)],
    ids=["pooler", "max_length", "normalize"],
)
def test_fingerprint_changes_with_each_setting(ckpt, other):
    assert fingerprint(ckpt, *other) != fingerprint(ckpt, "cls", 128, False)


def test_max_length_run_never_serves_a_full_length_run(ckpt, tmp_path):
    """`--max-length 32` truncates, so its vectors must live under another cache folder."""
    short = CachedEncoder(TransformerEncoder.from_checkpoint(str(ckpt), max_length=32), tmp_path)
    full = CachedEncoder(TransformerEncoder.from_checkpoint(str(ckpt)), tmp_path)
    assert checkpoint_info(ckpt).max_length == 512
    assert short.dir != full.dir


def test_dtype_is_part_of_the_encoder_fingerprint(ckpt, tmp_path, monkeypatch):
    """float16 vectors differ from float32 ones; the encoder (not the checkpoint) adds the dtype.
    device="cuda" is only recorded here: nothing is encoded, so no GPU is needed (the up-front
    device check, which would refuse cuda on a CPU machine, is bypassed)."""
    monkeypatch.setattr("embeval.eval.encoders.transformer.check_device", lambda device: device)
    info = checkpoint_info(ckpt)
    keys = {
        dtype: TransformerEncoder(None, None, info, dtype=dtype, device="cuda").fingerprint
        for dtype in ("float32", "float16", "bfloat16")
    }
    assert len(set(keys.values())) == 3
    dirs = {
        CachedEncoder(TransformerEncoder(None, None, info, dtype=d, device="cuda"), tmp_path).dir
        for d in keys
    }
    assert len(dirs) == 3


def test_fingerprint_sees_a_same_size_rewrite(ckpt):
    """The file hashes are remembered per checkpoint (a layer sweep describes it once per layer);
    a rewrite of the weights to the same size, as a new file, is still seen."""
    before = fingerprint(ckpt, "cls", 128)
    weights = ckpt / "model.safetensors"
    text = weights.read_text()
    weights.unlink()
    weights.write_text(text.replace("model", "MODEL"))
    assert fingerprint(ckpt, "cls", 128) != before
