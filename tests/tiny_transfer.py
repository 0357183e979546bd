"""Tiny SentEval transfer trees written by tests, and an encoder that can see class words.

`write_tiny_transfer(root)` writes every transfer task in SentEval's layout under
`root/transfer/`. Each sentence carries one keyword. With `shuffled=False` the keyword is the
class's own (so `KeywordEncoder` makes the classes linearly separable and accuracy must be 100);
with `shuffled=True` the keyword is drawn at random, independently of the label (chance).
MRPC: a paraphrase pair shares its keyword, a non-paraphrase pair does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

KEYWORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
TREC = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


class KeywordEncoder:
    """One dimension per keyword (1 when the sentence contains it) + 8 small noise dimensions
    seeded by sha256(text), so distinct sentences get distinct vectors."""

    fingerprint = "keyword-encoder-v1"

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, sentences):
        self.calls.append(list(sentences))
        out = np.zeros((len(sentences), len(KEYWORDS) + 8), np.float32)
        for i, s in enumerate(sentences):
            words = s.split()
            out[i, : len(KEYWORDS)] = [w in words for w in KEYWORDS]
            seed = int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little")
            out[i, len(KEYWORDS) :] = 0.1 * np.random.default_rng(seed).standard_normal(8)
        return out

    def describe(self):
        return {"checkpoint": "keyword", "fingerprint": self.fingerprint, "pooler": "none"}


def _sentence(rng, label: int, n: int, shuffled: bool, tag: str) -> str:
    word = KEYWORDS[rng.integers(n)] if shuffled else KEYWORDS[label]
    return f"{tag} {word} example {rng.integers(10**9)} ."


def write_tiny_transfer(root: Path, n: int = 30, shuffled: bool = False, seed: int = 0) -> Path:
    """`n` examples per class and split (TREC test and SST2 dev/test: n // 2)."""
    rng = np.random.default_rng(seed)
    t = root / "transfer"
    for task, (pos, neg) in {
        "MR": ("rt-polarity.pos", "rt-polarity.neg"),
        "CR": ("custrev.pos", "custrev.neg"),
        "SUBJ": ("subj.objective", "subj.subjective"),
        "MPQA": ("mpqa.pos", "mpqa.neg"),
    }.items():
        (t / task).mkdir(parents=True)
        for label, name in ((1, pos), (0, neg)):
            lines = [_sentence(rng, label, 2, shuffled, task.lower()) for _ in range(n)]
            (t / task / name).write_text("".join(f"{s}\n" for s in lines), encoding="latin-1")
    sst = t / "SST" / "binary"
    sst.mkdir(parents=True)
    for split, m in (("train", n), ("dev", n // 2), ("test", n // 2)):
        rows = [f"{_sentence(rng, y, 2, shuffled, 'sst')} \t{y}" for y in (0, 1) for _ in range(m)]
        (sst / f"sentiment-{split}").write_text("\n".join(rows) + "\n")
    (t / "TREC").mkdir()
    for name, m in (("train_5500.label", n), ("TREC_10.label", n // 2)):
        rows = [
            f"{c}:other {_sentence(rng, i, 6, shuffled, 'what')}"
            for i, c in enumerate(TREC)
            for _ in range(m)
        ]
        (t / "TREC" / name).write_text("\n".join(rows) + "\n", encoding="latin-1")
    (t / "MRPC").mkdir()
    for split, m in (("train", n), ("test", n // 2)):
        rows = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(2 * m):
            y = i % 2
            a = rng.integers(2)
            b = (rng.integers(2) if shuffled else (a if y else 1 - a)) + 0
            s1 = f"pair {KEYWORDS[a]} first {rng.integers(10**9)} ."
            s2 = f"pair {KEYWORDS[b]} second {rng.integers(10**9)} ."
            rows.append(f"{y}\t{i}\t{i + 10**6}\t{s1}\t{s2}")
        (t / "MRPC" / f"msr_paraphrase_{split}.txt").write_text("\r\n".join(rows) + "\r\n")
    return root
