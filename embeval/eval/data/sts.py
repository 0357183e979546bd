"""STS tasks in SentEval layout: names, splits, protocols, and strict readers.

A task only declares where its pairs live; scoring and metrics happen elsewhere.
Readers fail with the file and line on anything malformed instead of guessing.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STS_YEARS = {
    "STS12": (
        "STS12-en-test",
        ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"],
    ),
    "STS13": ("STS13-en-test", ["FNWN", "headlines", "OnWN"]),
    "STS14": (
        "STS14-en-test",
        ["deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"],
    ),
    "STS15": (
        "STS15-en-test",
        ["answers-forums", "answers-students", "belief", "headlines", "images"],
    ),
    "STS16": (
        "STS16-en-test",
        ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"],
    ),
}
STS_TASKS = (*STS_YEARS, "STSBenchmark", "SICKRelatedness")
ALIASES = {
    "stsb": "STSBenchmark",
    "sts-b": "STSBenchmark",
    "sts_b": "STSBenchmark",
    "sick": "SICKRelatedness",
    "sickr": "SICKRelatedness",
    "sick-r": "SICKRelatedness",
}
SPLITS = ("test", "dev", "train")
PROTOCOLS = ("simcse", "mteb")
# SentEval's preprocessed text (simcse) or the raw SemEval release (mteb).
PROTOCOL_FOLDER = {"simcse": "sts", "mteb": "sts-raw"}
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
PROJECT_DATA = Path(__file__).resolve().parents[3] / "data"
SHARED_DATA = PROJECT_DATA.parents[1] / "shared" / "data"  # ../shared/data beside the project
DATA_GROUPS = ("sts", "sts-raw", "transfer")


class DataError(ValueError):
    """Missing or malformed benchmark data; the message names the file and line."""


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


def resolve_task(name: str, known: tuple[str, ...] = STS_TASKS) -> str:
    """Canonical task name, case-insensitive, with aliases; unknown names get a suggestion."""
    lookup = {t.lower(): t for t in known} | {k: v for k, v in ALIASES.items() if v in known}
    key = name.strip().lower()
    if key in lookup:
        return lookup[key]
    close = difflib.get_close_matches(key, list(lookup), n=1, cutoff=0.5)
    hint = f"; did you mean {lookup[close[0]]}?" if close else "."
    raise DataError(f"unknown task {name!r}{hint} Known tasks: {', '.join(known)}")


def data_root(explicit: str | os.PathLike | None = None, *, search: bool = True) -> Path:
    """--data DIR, else $EMBEVAL_DATA, else the project's data/ when it holds the data (sts/,
    sts-raw/ or transfer/), else ../shared/data beside the project when it does, else data/.

    The one rule: the Makefile asks this function too. `search=False` skips the shared copy,
    for writing: downloads go to data/, never into a reference copy others read.
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("EMBEVAL_DATA")
    if env:
        return Path(env).expanduser()
    for candidate in (PROJECT_DATA, SHARED_DATA) if search else ():
        if any((candidate / g).is_dir() for g in DATA_GROUPS):
            return candidate
    return PROJECT_DATA


def where_looked(root: Path) -> str:
    """The rest of a 'no data found' message: why `root`, and where the default search looks."""
    env = os.environ.get("EMBEVAL_DATA")
    why = f"{root} is $EMBEVAL_DATA. " if env and Path(env).expanduser() == root else ""
    return (
        f"{why}Without --data or $EMBEVAL_DATA, embeval uses {PROJECT_DATA} when it holds "
        f"{', '.join(g + '/' for g in DATA_GROUPS)}, else {SHARED_DATA} when it does."
    )


def sts_folder(root: Path, protocol: str = "simcse") -> Path:
    """The folder that holds STS12-en-test/ … for a protocol; `root` may be that folder itself."""
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


def load_sts(
    task: str, split: str = "test", root: Path | None = None, protocol: str = "simcse"
) -> STSData:
    """Load one STS task. STS12–16 have only `test`; SICK-R under `mteb` is all 9,927 pairs."""
    task = resolve_task(task)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    folder = sts_folder(root or data_root(), protocol)
    if task in STS_YEARS:
        if split != "test":
            raise DataError(f"{task} has only a test split (asked for {split!r})")
        return _load_year(task, folder / STS_YEARS[task][0])
    if task == "STSBenchmark":
        return _load_stsb(folder / "STSBenchmark" / STSB_FILES[split], split)
    sick = _sick_dir(folder, root or data_root())
    if protocol == "mteb":  # MTEB's SICK-R scores every pair of the three files
        if split != "test":
            raise DataError(
                f"SICK-R under the mteb protocol is one test set (all 9,927 pairs, the three "
                f"SICK files together); it has no {split!r} split"
            )
        parts = [_load_sick(sick / SICK_FILES[s], s) for s in ("train", "dev", "test")]
        return _concat(parts, task, "all")
    return _load_sick(sick / SICK_FILES[split], split)


def _sick_dir(folder: Path, root: Path) -> Path:
    # sts-raw/ has no SICK copy; SentEval's (tokenized, cased) one serves both protocols.
    for candidate in (folder / "SICK", root / "sts" / "SICK", root / "SICK"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"no SICK data found: looked in {folder / 'SICK'} and {root / 'sts' / 'SICK'}")


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


def _load_year(task: str, folder: Path) -> STSData:
    parts = []
    for subset in STS_YEARS[task][1]:
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


def _load_stsb(path: Path, split: str) -> STSData:
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
    return STSData(
        "STSBenchmark", split, s1, s2, np.array(gold), ["STSBenchmark"] * len(s1), [path]
    )


def _load_sick(path: Path, split: str) -> STSData:
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
    return STSData(
        "SICKRelatedness", split, s1, s2, np.array(gold), ["SICKRelatedness"] * len(s1), [path]
    )


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


def checksum(files: list[Path]) -> str:
    """sha256 over the files' bytes, recorded in results so runs on different data don't mix."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
