"""SentEval transfer tasks' data: the example and split records, and strict readers of
SentEval's layout (Conneau & Kiela 2018, data/downstream/get_transfer_data.bash).

Which tasks exist (their folders and files) is the task registry's business
(`embeval.eval.data.tasks`); the classifier is `embeval.eval.scoring.transfer`'s. Examples are
ordered as SentEval orders them (by token count, then label) before folds are drawn, so fold
membership matches SentEval's. Text is SentEval's: tokens re-joined by single spaces; an empty
line becomes "." as SentEval's example batchers do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from embeval.eval.data.paths import DataError, data_root, where_looked

TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")  # SentEval's tgt2idx order
SPLIT_LABEL = {"cv": "10-fold CV"}


@dataclass
class Split:
    """Examples of one split: sentences (and second sentences for pair tasks), integer labels."""

    x: list[str]
    y: np.ndarray  # (N,) int64
    x2: list[str] | None = None

    def __len__(self) -> int:
        return len(self.x)

    def head(self, n: int) -> Split:
        """The first examples of every class in turn (order kept), n in all: `--limit`."""
        rank = np.zeros(len(self.y), np.int64)  # position of each example within its class
        for c in np.unique(self.y):
            rank[self.y == c] = np.arange(int((self.y == c).sum()))
        keep = np.sort(np.lexsort((np.arange(len(self.y)), rank))[:n])
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return Split(pick(self.x), self.y[keep], pick(self.x2) if self.x2 is not None else None)


@dataclass
class TransferData:
    """One task: its class names (index = label) and splits ("all" for the CV tasks)."""

    task: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    files: list[Path] = field(default_factory=list)

    @property
    def split_label(self) -> str:
        return SPLIT_LABEL["cv"] if "all" in self.splits else "test"

    def sentences(self) -> list[str]:
        out = [s for sp in self.splits.values() for s in sp.x]
        return out + [s for sp in self.splits.values() for s in (sp.x2 or [])]

    def head(self, n: int) -> TransferData:
        """At most n examples of each split, classes balanced, in SentEval's order: `--limit`."""
        return replace(self, splits={k: v.head(n) for k, v in self.splits.items()})


def transfer_folder(root: str | os.PathLike | None = None) -> Path:
    """`<root>/transfer`, or `root` itself when it holds the task folders."""
    root = data_root(root)
    for candidate in (root / "transfer", root):
        if any((candidate / f).is_dir() for f in ("MR", "SST", "TREC", "MRPC")):
            return candidate
    raise DataError(
        f"no SentEval transfer data found: looked in {root / 'transfer'} and {root}. "
        f"{where_looked(root)} Run `embeval data download`, or point --data / $EMBEVAL_DATA "
        "at a folder holding transfer/."
    )


def load_transfer(task: str, root: str | os.PathLike | None = None) -> TransferData:
    """Read one transfer task by name or alias from the SentEval layout (see the data README
    for formats); the registry's record says where its files live."""
    from embeval.eval.data import tasks  # the registry is built from the readers below

    return tasks.load(tasks.resolve(task, kinds=("transfer",)), "test", root)


# ------------------------------------------------------------------ the registry's loaders
# Each takes its task facts first (bound by the record), then (root, split, protocol): a
# transfer task reads all of SentEval's splits (or its one CV set) whatever `split` says.


def read_binary(task: str, folder: str, pos: str, neg: str, root, split=None, protocol=None):
    """MR, CR, SUBJ, MPQA: `<folder>/<pos>` (label 1) and `<folder>/<neg>` (label 0), one
    example per line, latin-1; one set for cross-validation."""
    return _load_binary(task, transfer_folder(root) / folder, pos, neg)


def read_sst2(task: str, folder: str, root, split=None, protocol=None) -> TransferData:
    """SST2: `<folder>/binary/sentiment-{train,dev,test}`, sentence<TAB>0|1."""
    return _load_sst2(task, transfer_folder(root) / folder)


def read_trec(task: str, folder: str, root, split=None, protocol=None) -> TransferData:
    """TREC: `<folder>/train_5500.label` and `TREC_10.label`, 'COARSE:fine question'."""
    return _load_trec(task, transfer_folder(root) / folder)


def read_mrpc(task: str, folder: str, root, split=None, protocol=None) -> TransferData:
    """MRPC: `<folder>/msr_paraphrase_{train,test}.txt`, with a header line."""
    return _load_mrpc(task, transfer_folder(root) / folder)


def _read(path: Path, encoding: str) -> list[str]:
    try:
        return path.read_text(encoding=encoding).splitlines()
    except FileNotFoundError:
        raise DataError(f"missing data file {path}; run `embeval data download`") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text ({exc})") from exc


def _text(s: str) -> str:
    return " ".join(s.split()) or "."  # SentEval tokens re-joined; empty -> "." (SentEval bow.py)


def _sentevalsorted(x, y, x2=None) -> Split:
    """SentEval sorts each split by (token count, label) before encoding and drawing folds;
    `x`, `x2` are raw lines, returned as SentEval text."""
    y = np.asarray(y, dtype=np.int64)
    n1 = [len(s.split()) for s in x]
    n2 = [len(s.split()) for s in x2] if x2 is not None else [0] * len(x)
    order = sorted(range(len(x)), key=lambda i: (n1[i], n2[i], y[i]))
    return Split(
        [_text(x[i]) for i in order],
        y[order],
        [_text(x2[i]) for i in order] if x2 is not None else None,
    )


def _load_binary(task: str, folder: Path, pos_name: str, neg_name: str) -> TransferData:
    pos_path, neg_path = folder / pos_name, folder / neg_name
    pos = _read(pos_path, "latin-1")  # SentEval reads these as latin-1
    neg = _read(neg_path, "latin-1")
    for path, rows in ((pos_path, pos), (neg_path, neg)):
        if not rows:
            raise DataError(f"{task}: class file {path} is empty; every class needs examples")
    split = _sentevalsorted(pos + neg, [1] * len(pos) + [0] * len(neg))
    classes = (neg_name.rsplit(".", 1)[-1], pos_name.rsplit(".", 1)[-1])
    return TransferData(task, classes, {"all": split}, [pos_path, neg_path])


def _label(value: str, known: Sequence[str], path: Path, lineno: int) -> int:
    if value not in known:
        raise DataError(
            f"{path}:{lineno}: unknown class label {value!r}; expected one of {', '.join(known)}"
        )
    return list(known).index(value)


def _load_sst2(task: str, folder: Path) -> TransferData:
    splits, files = {}, []
    for split in ("train", "dev", "test"):
        path = folder / "binary" / f"sentiment-{split}"
        x, y = [], []
        for i, line in enumerate(_read(path, "utf-8"), start=1):
            cols = line.strip().split("\t")
            if len(cols) < 2:
                raise DataError(f"{path}:{i}: missing label column; expected sentence<TAB>0|1")
            x.append(cols[0])
            y.append(_label(cols[1].strip(), ("0", "1"), path, i))
        splits[split], files = _sentevalsorted(x, y), [*files, path]
    return TransferData(task, ("negative", "positive"), splits, files)


def _load_trec(task: str, folder: Path) -> TransferData:
    splits, files = {}, []
    for split, name in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        path = folder / name
        x, y = [], []
        for i, line in enumerate(_read(path, "latin-1"), start=1):
            target, sep, rest = line.strip().partition(":")
            question = rest.split(" ", 1)[1] if " " in rest else ""
            if not sep or not question.strip():
                raise DataError(
                    f"{path}:{i}: missing label column; expected 'COARSE:fine question'"
                )
            x.append(question)
            y.append(_label(target, TREC_CLASSES, path, i))
        splits[split], files = _sentevalsorted(x, y), [*files, path]
    return TransferData(task, TREC_CLASSES, splits, files)


def _load_mrpc(task: str, folder: Path) -> TransferData:
    splits, files = {}, []
    for split in ("train", "test"):
        path = folder / f"msr_paraphrase_{split}.txt"
        lines = _read(path, "utf-8-sig")  # the files start with a BOM
        if not lines or not lines[0].startswith("Quality"):
            raise DataError(f"{path}:1: expected the MRPC header line starting with 'Quality'")
        a, b, y = [], [], []
        for i, line in enumerate(lines[1:], start=2):
            cols = line.strip("\r\n").split("\t")
            if len(cols) < 5:
                raise DataError(
                    f"{path}:{i}: expected 5 tab-separated fields (Quality, #1 ID, #2 ID, "
                    f"#1 String, #2 String), got {len(cols)}"
                )
            y.append(_label(cols[0].strip(), ("0", "1"), path, i))
            a.append(cols[3])
            b.append(cols[4])
        splits[split], files = _sentevalsorted(a, y, b), [*files, path]
    return TransferData(task, ("not paraphrase", "paraphrase"), splits, files)
