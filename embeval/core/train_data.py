"""Training data: what `embeval train` reads, and the order it is drawn in.

Unsupervised: one sentence per line (.txt); blank lines are skipped and counted. Supervised: a CSV
with a `sent0,sent1[,hard_neg]` header, as SimCSE's NLI file, or `sent0,sent1,label` (labelled
pairs for an objective such as `sbert-nli`). Errors name the file and line.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch

LABELLED = ("sent0", "sent1", "label")  # labelled pairs (NLI), for objectives that read labels


@dataclass
class TrainData:
    """Training examples: tuples of 1 (unsupervised) or 2-3 (sent0, sent1[, hard_neg]) texts."""

    path: str
    columns: tuple[str, ...]
    examples: list[tuple[str, ...]]
    skipped_empty: int = 0


def read_training_file(path: str | os.PathLike) -> TrainData:
    """One sentence per line (.txt), or a CSV with a `sent0,sent1[,hard_neg]` header."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"training file {p} does not exist (or is not a file)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"training file {p} is unreadable: {exc}") from exc
    if p.suffix.lower() == ".csv":
        return _read_csv(p, text)
    # read_text already turned \r\n into \n; splitlines() would also split on \x85, \u2028 ...
    lines = text.removesuffix("\n").split("\n") if text else []
    examples = [(s,) for s in lines if s.strip()]
    if not examples:
        raise ValueError(f"training file {p} holds no sentences; expected one sentence per line")
    return TrainData(str(p), ("sent0",), examples, len(lines) - len(examples))


def _read_csv(p: Path, text: str) -> TrainData:
    reader = csv.reader(io.StringIO(text))  # quoted fields may hold commas and newlines
    rows = [(reader.line_num, row) for row in reader]  # line_num: the row's last line
    if not rows:
        raise ValueError(f"training file {p} is empty; expected a sent0,sent1[,hard_neg] header")
    header = tuple(h.strip() for h in rows[0][1])
    if header not in (("sent0", "sent1"), ("sent0", "sent1", "hard_neg"), LABELLED):
        raise ValueError(
            f"{p}:1: header {','.join(header)!r}; expected sent0,sent1[,hard_neg] or "
            "sent0,sent1,label"
        )
    examples, skipped = [], 0
    for i, row in rows[1:]:
        if not any(c.strip() for c in row):
            skipped += 1
            continue
        if len(row) != len(header) or not all(c.strip() for c in row):
            raise ValueError(f"{p}:{i}: expected {len(header)} non-empty fields, got {row!r}")
        examples.append(tuple(row))
    if not examples:
        raise ValueError(f"training file {p} has a header but no rows")
    return TrainData(str(p), header, examples, skipped)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:  # (n,) example indices
    """The order examples are drawn in during `epoch`: a shuffle seeded by seed + epoch."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
