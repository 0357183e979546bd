"""EvalRank's data: positive sentence pairs and background sentences, read strictly.

Wang et al., ACL 2022, "Just Rank: Rethinking Evaluation with Word and Sentence Similarities";
data from github.com/BinWang28/EvalRank-Embedding-Evaluation, folder data/sent_evalrank/
(`pos_pair.txt`: "s1<TAB>s2" per line, STS-B pairs with high gold scores in both directions;
`background_sent.txt`: one sentence a line). The ranking metric is
`embeval.eval.metrics.ranking`'s; scoring a model on it, `embeval.eval.scoring.ranking`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from embeval.eval.data.paths import DataError, where_looked

PAIRS_FILE = "pos_pair.txt"
BACKGROUND_FILE = "background_sent.txt"


@dataclass
class RankingData:
    """Positive pairs (s1 is the query, s2 its positive) and the background sentences."""

    task: str
    split: str
    s1: list[str]
    s2: list[str]
    background: list[str]
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.s1)

    def pool(self) -> list[str]:
        """The sentences every query is ranked against: the distinct sentences of the pairs,
        then the background sentences not already among them, in order of first appearance
        (as the reference repository builds `all_sents`)."""
        sides = (s for p in zip(self.s1, self.s2, strict=True) for s in p)
        return list(dict.fromkeys([*sides, *self.background]))

    def sentences(self) -> list[str]:
        """Everything to encode: the pool (it holds both sides of every pair)."""
        return self.pool()

    def head(self, n: int) -> RankingData:
        """`--limit N`: the first N pairs and the first N background sentences (a smaller pool
        makes ranks smaller: a partial run's figures are not comparable to a full one's)."""
        return RankingData(
            self.task, self.split, self.s1[:n], self.s2[:n], self.background[:n], self.files
        )


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"missing data file {path}; run `embeval data download --only evalrank`"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def read_evalrank(task: str, folder: str, root, split: str, protocol: str) -> RankingData:
    """`<root>/<folder>/pos_pair.txt` and `background_sent.txt` (one test split; the text is
    the release's, lowercased and tokenized, under either protocol)."""
    d = Path(root) / folder
    if not d.is_dir():
        raise DataError(
            f"no EvalRank data found: looked in {d} for {PAIRS_FILE} and {BACKGROUND_FILE}. "
            f"{where_looked(root)} Run `embeval data download --only evalrank`, or point --data "
            f"/ $EMBEVAL_DATA at a folder holding {folder}/."
        )
    s1, s2 = [], []
    for i, line in enumerate(_lines(d / PAIRS_FILE), start=1):
        parts = line.rstrip("\r").split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(
                f"{d / PAIRS_FILE}:{i}: expected two non-empty tab-separated sentences, got "
                f"{line[:80]!r}"
            )
        s1.append(parts[0])
        s2.append(parts[1])
    background = []
    for i, line in enumerate(_lines(d / BACKGROUND_FILE), start=1):
        if not line.strip():
            raise DataError(f"{d / BACKGROUND_FILE}:{i}: empty line; expected one sentence a line")
        background.append(line.rstrip("\r"))
    if not s1:
        raise DataError(f"{d / PAIRS_FILE} holds no pairs")
    return RankingData(task, split, s1, s2, background, [d / PAIRS_FILE, d / BACKGROUND_FILE])
