"""Atomic writes: all or nothing, and the file mode a plain open() / mkdir() would give.

tempfile makes 0600 files and 0700 folders; renamed into place unchanged, results, caches and
checkpoints would be unreadable to anyone else sharing the folder.
"""

from __future__ import annotations

import os
import stat

import pytest

from embeval.core.fileio import atomic_write, atomic_write_text
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.scoring.score import score
from embeval.results.files import pairs_path, save_run


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, umask_022):
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "first")
    assert path.read_text() == "first" and mode(path) == 0o644

    def half_then_fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temp file left


def test_results_cache_and_checkpoints_get_the_umask_mode(
    tmp_path, umask_022, fake_encoder, tiny_data
):
    encoder = CachedEncoder(fake_encoder, tmp_path / "cache")
    run = score(encoder, ["stsb"], root=tiny_data)
    saved = save_run(run, tmp_path / "runs" / "r.json")
    assert mode(saved) == mode(pairs_path(saved)) == 0o644
    (shard,) = encoder.dir.glob("shard-*.npz")
    assert mode(shard) == 0o644
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 16)
    assert mode(ckpt) == 0o755 and mode(ckpt / "config.json") == 0o644


def test_every_file_of_a_training_run_gets_the_umask_mode(tmp_path, umask_022):
    """best/ and last/ as the Trainer writes them: the weights (safetensors creates them 0600),
    the tokenizer, the sentence-transformers modules and trainer_state.pt are all 0644, folders
    0755, like the log and config beside them."""
    from embeval.core.trainer import TrainConfig, Trainer

    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    data = tmp_path / "train.txt"
    data.write_text("".join(f"sentence number {i}\n" for i in range(8)))
    cfg = TrainConfig(batch_size=4, steps=1, max_length=8, normalize=True)
    Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False).train()
    paths = list((tmp_path / "out").rglob("*"))
    assert {"model.safetensors", "trainer_state.pt", "2_Normalize"} <= {p.name for p in paths}
    wrong = {str(p): oct(mode(p)) for p in paths if mode(p) != (0o755 if p.is_dir() else 0o644)}
    assert not wrong
