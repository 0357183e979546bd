"""Shared fixtures: the real data beside the project, a tiny STS tree, fake and real encoders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from embeval.eval.data import tasks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
STS_YEARS = {t.name: (t.folder, t.subsets) for t in tasks.group("sts") if t.subsets}  # STS12-16
SHARED_DATA = Path(os.environ.get("EMBEVAL_TEST_DATA", ROOT.parent / "shared" / "data"))


class FakeEncoder:
    """Deterministic stand-in for a model: each text maps to a unit vector seeded by sha256(text).

    `calls` records every batch it was asked to encode, so tests can check what was (re)encoded.
    """

    fingerprint = "fake-encoder-v1"

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, sentences):
        self.calls.append(list(sentences))
        rows = []
        for s in sentences:
            seed = int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows, dtype=np.float32).reshape(len(sentences), self.dim)

    def describe(self):
        return {
            "checkpoint": "fake",
            "fingerprint": self.fingerprint,
            "pooler": "none",
            "device": "cpu",
            "dtype": "float32",
        }


@pytest.fixture
def fake_encoder():
    return FakeEncoder()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared benchmark data (../shared/data). Its absence is an error, not a skip."""
    if not (SHARED_DATA / "sts").is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set EMBEVAL_TEST_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 as `embeval score` encodes it (its Normalize module
    included), uncached, loaded once. `.model`, `.info`, ... are the TransformerEncoder's."""
    from embeval.eval.encoders.chain import build_encoder

    return build_encoder(progress=False, batch_size=64, no_cache=True)


def write_tiny_sts(root: Path) -> Path:
    """A SentEval-layout tree with a few pairs per task, made by hand for reader tests.

    Gold scores rise with the word overlap of each pair, so a bag-of-words model ranks them right.
    STS12 has an unscored pair (empty gold line); SICK's test file uses CRLF as the real one does.
    """
    sts = root / "sts"
    pairs = [
        ("a cat sits", "a cat sits", "5.0"),
        ("a cat sits", "a cat runs", "3.2"),
        ("a dog barks", "the sky is blue", "0.4"),
        ("red car", "red bus", "2.5"),
    ]
    for folder, subsets in STS_YEARS.values():  # the real subset names (reader tests count them)
        d = sts / folder
        d.mkdir(parents=True)
        for sub in subsets:
            (d / f"STS.input.{sub}.txt").write_text(
                "".join(f"{a}\t{b}\n" for a, b, _ in pairs) + "unscored one\tunscored two\n"
            )
            (d / f"STS.gs.{sub}.txt").write_text("".join(f"{g}\n" for *_, g in pairs) + "\n")
    b = sts / "STSBenchmark"
    b.mkdir()
    for split in ("train", "dev", "test"):
        (b / f"sts-{split}.csv").write_text(
            "".join(
                f"main-captions\tMSRvid\t2012test\t{i:04d}\t{g}\t{a}\t{c}\n"
                for i, (a, c, g) in enumerate(pairs)
            )
        )
    s = sts / "SICK"
    s.mkdir()
    header = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"
    for split, name in (
        ("train", "SICK_train.txt"),
        ("dev", "SICK_trial.txt"),
        ("test", "SICK_test_annotated.txt"),
    ):
        eol = "\r\n" if split == "test" else "\n"
        rows = [header] + [
            f"{i}\t{a}\t{c}\t{1 + float(g) * 0.8:.1f}\tNEUTRAL" for i, (a, c, g) in enumerate(pairs)
        ]
        (s / name).write_text(eol.join(rows) + eol, newline="")
    return root


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return write_tiny_sts(tmp_path / "data")
