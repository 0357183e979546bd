"""STS readers in SentEval layout: splits, protocols, and strict readers of the pair files.

Which tasks exist (their folders, subsets, splits) is the task registry's business
(`embeval.eval.data.tasks`); a reader only knows a file format. Scoring happens elsewhere.
Readers fail with the file and line on anything malformed instead of guessing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeval.eval.data.paths import DataError, where_looked

SPLITS = ("test", "dev", "train")
PROTOCOLS = ("simcse", "mteb")
# SentEval's preprocessed text (simcse) or the raw SemEval release (mteb).
PROTOCOL_FOLDER = {"simcse": "sts", "mteb": "sts-raw"}
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}


@dataclass
class STSData:
    """Scored sentence pairs of one task and split, with the subset of each pair."""

    task: str
    split: str
    s1: list[str]
    s2: list[str]
    gold: np.ndarray  # (N,) float64
    subset: list[str]  # (N,) subset name per pair (the task name when it has none)
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.s1)

    def head(self, n: int) -> STSData:
        """The first n pairs: `--limit` smoke runs."""
        return STSData(
            self.task,
            self.split,
            self.s1[:n],
            self.s2[:n],
            self.gold[:n],
            self.subset[:n],
            self.files,
        )


def load_sts(
    task: str,
    split: str = "test",
    root: str | os.PathLike | None = None,
    protocol: str = "simcse",
) -> STSData:
    """Load one STS task by name or alias (the registry's record says where its pairs live).
    STS12–16 have only `test`; SICK-R under `mteb` is all 9,927 pairs."""
    from embeval.eval.data import tasks  # the registry is built from the readers below

    return tasks.load(tasks.resolve(task, kinds=("sts",)), split, root, protocol)


def sts_folder(root: str | os.PathLike, protocol: str = "simcse") -> Path:
    """The folder that holds STS12-en-test/ … for a protocol; `root` may be that folder itself."""
    root = Path(root)
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    other = [p for p, folder in PROTOCOL_FOLDER.items() if folder == root.name and p != protocol]
    if other:  # tokenized text scored as raw, or the reverse, would still give figures
        raise DataError(
            f"{root} holds the {other[0]} protocol's text, not {protocol}'s; point --data at "
            f"{root.parent} (holding {PROTOCOL_FOLDER[protocol]}/) or pass --protocol {other[0]}"
        )
    for candidate in (root / PROTOCOL_FOLDER[protocol], root):
        if (candidate / "STSBenchmark").is_dir() or (candidate / "STS12-en-test").is_dir():
            return candidate
    raise DataError(
        f"no STS data found: looked in {root / PROTOCOL_FOLDER[protocol]} and {root}. "
        f"{where_looked(root)} Run `embeval data download`, or point --data / $EMBEVAL_DATA "
        f"at a folder holding {PROTOCOL_FOLDER[protocol]}/."
    )


# ------------------------------------------------------------------ the registry's loaders
# Each takes its task facts first (bound by the record), then (root, split, protocol).


def read_year(
    task: str, folder: str, subsets: tuple[str, ...], root, split: str, protocol: str
) -> STSData:
    """STS12–16: `<folder>/STS.input.<subset>.txt` (two tab-separated sentences) beside
    `STS.gs.<subset>.txt` (one gold score per line; an empty line marks an unscored pair)."""
    return _load_year(task, sts_folder(root, protocol) / folder, subsets)


def read_stsb(task: str, folder: str, root, split: str, protocol: str) -> STSData:
    """STS-B: `<folder>/sts-<split>.csv`, tab-separated, gold in field 5, sentences in 6 and 7."""
    path = sts_folder(root, protocol) / folder / STSB_FILES[split]
    return _load_stsb(task, path, split)


def read_sick(task: str, folder: str, root, split: str, protocol: str) -> STSData:
    """SICK: `<folder>/SICK_*.txt` with a header line; relatedness score in field 4."""
    sick = _sick_dir(sts_folder(root, protocol), Path(root), folder)
    if protocol == "mteb":  # MTEB's SICK-R scores every pair of the three files
        if split != "test":
            raise DataError(
                f"SICK-R under the mteb protocol is one test set (all 9,927 pairs, the three "
                f"SICK files together); it has no {split!r} split"
            )
        parts = [_load_sick(task, sick / SICK_FILES[s], s) for s in ("train", "dev", "test")]
        return _concat(parts, task, "all")
    return _load_sick(task, sick / SICK_FILES[split], split)


def _sick_dir(folder: Path, root: Path, name: str) -> Path:
    # sts-raw/ has no SICK copy; SentEval's (tokenized, cased) one serves both protocols.
    for candidate in (folder / name, root / "sts" / name, root / name):
        if candidate.is_dir():
            return candidate
    raise DataError(f"no SICK data found: looked in {folder / name} and {root / 'sts' / name}")


def _read_lines(path: Path) -> list[str]:
    """Lines without their terminators (LF or CRLF); a final newline adds no line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"missing data file {path}; run `embeval data download`") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    return text.splitlines()


def _score(value: str, path: Path, lineno: int) -> float:
    try:
        score = float(value)
    except ValueError:
        raise DataError(f"{path}:{lineno}: gold score {value!r} is not a number") from None
    if not np.isfinite(score):
        raise DataError(f"{path}:{lineno}: gold score {value!r} is not finite")
    return score


def _sentence(value: str, path: Path, lineno: int, column: str) -> str:
    if not value.strip():
        raise DataError(f"{path}:{lineno}: {column} is empty; expected a sentence")
    return value


def _load_year(task: str, folder: Path, subsets: tuple[str, ...]) -> STSData:
    parts = []
    for subset in subsets:
        inp, gs = folder / f"STS.input.{subset}.txt", folder / f"STS.gs.{subset}.txt"
        pairs, golds = _read_lines(inp), _read_lines(gs)
        if len(pairs) != len(golds):
            raise DataError(f"{gs}: {len(golds)} gold lines but {inp} has {len(pairs)} pairs")
        s1, s2, gold = [], [], []
        for i, (pair, g) in enumerate(zip(pairs, golds, strict=True), start=1):
            if not g.strip():  # unscored pair: SentEval skips it
                continue
            cols = pair.split("\t")
            if len(cols) < 2:
                raise DataError(
                    f"{inp}:{i}: expected two tab-separated sentences, got {len(cols)} field"
                )
            s1.append(_sentence(cols[0], inp, i, "sentence 1"))
            s2.append(_sentence(cols[1], inp, i, "sentence 2"))
            gold.append(_score(g.strip(), gs, i))
        parts.append(STSData(task, "test", s1, s2, np.array(gold), [subset] * len(s1), [inp, gs]))
    return _concat(parts, task, "test")


def _load_stsb(task: str, path: Path, split: str) -> STSData:
    # Tab-separated despite .csv; quotes are literal text, so no csv module. Raw rows may carry
    # two extra source columns: fields 0-6 are the data.
    s1, s2, gold = [], [], []
    for i, line in enumerate(_read_lines(path), start=1):
        cols = line.split("\t")
        if len(cols) < 7:
            raise DataError(f"{path}:{i}: expected 7 tab-separated fields, got {len(cols)}")
        gold.append(_score(cols[4], path, i))
        s1.append(_sentence(cols[5], path, i, "sentence 1"))
        s2.append(_sentence(cols[6], path, i, "sentence 2"))
    return STSData(task, split, s1, s2, np.array(gold), [task] * len(s1), [path])


def _load_sick(task: str, path: Path, split: str) -> STSData:
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("pair_ID"):
        raise DataError(f"{path}:1: expected the SICK header line starting with 'pair_ID'")
    s1, s2, gold = [], [], []
    for i, line in enumerate(lines[1:], start=2):
        cols = line.strip("\r").split("\t")
        if len(cols) < 4:
            raise DataError(
                f"{path}:{i}: expected at least 4 tab-separated fields, got {len(cols)}"
            )
        s1.append(_sentence(cols[1], path, i, "sentence_A"))
        s2.append(_sentence(cols[2], path, i, "sentence_B"))
        gold.append(_score(cols[3].strip(), path, i))
    return STSData(task, split, s1, s2, np.array(gold), [task] * len(s1), [path])


def _concat(parts: list[STSData], task: str, split: str) -> STSData:
    return STSData(
        task,
        split,
        [s for p in parts for s in p.s1],
        [s for p in parts for s in p.s2],
        np.concatenate([p.gold for p in parts]),
        [s for p in parts for s in p.subset],
        [f for p in parts for f in p.files],
    )
