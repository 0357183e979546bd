"""Small training-test helpers shared by the trainer, distributed, GPU and smoke tests."""

from __future__ import annotations

import json

WORDS = "cat dog bird fish sun moon tree river road city car boat house lamp book song".split()


def write_sentences(path, n=40):
    """n distinct short sentences: word pairs drawn in a fixed order from WORDS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"the {WORDS[i % 16]} saw a {WORDS[(i * 7 + 3) % 16]} number {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_log(out):
    """Every record of OUT/train_log.jsonl, in order."""
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
