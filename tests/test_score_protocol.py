"""score() follows SimCSE's protocol where the tiny shared fixture cannot tell: STS12-16's
primary figure pools all subsets (`all`, not SentEval's `mean`), and alignment uses only the
STS-B pairs with gold > 4 (issue 14, survivors 4 and 11).

The fixtures are written here with chosen cosines: `TableEncoder` maps each sentence to a 2-d
unit vector, the left sentence of every pair to (1, 0) and the right one to (c, sqrt(1 - c^2)),
so each pair's predicted similarity is exactly c.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import write_tiny_sts

from embeval.eval.data import tasks
from embeval.eval.scoring.score import score

# STS12-16: task -> (folder, subsets), from the registry
STS_YEARS = {t.name: (t.folder, t.subsets) for t in tasks.group("sts") if t.subsets}


class TableEncoder:
    fingerprint = "table-v1"

    def __init__(self, cosines: dict[str, float]):
        self.cosines = cosines  # right sentence -> its cosine with (1, 0)

    def encode(self, sentences):
        out = []
        for s in sentences:
            c = self.cosines.get(s, 1.0)  # left sentences are (1, 0)
            out.append([c, math.sqrt(1 - c * c)])
        return np.array(out, np.float32)


def write_year(folder, subsets) -> dict[str, float]:
    """Subset j of S holds 3 pairs; pair i has cosine 0.1 + 0.1 j + 0.02 i and gold
    0.8 (S - 1 - j) + 0.2 (i + 1). Within a subset both rise with i (Spearman 100 in each, so
    mean = wmean = 100); across subsets cosine rises with j while gold falls."""
    cos = {}
    for j, sub in enumerate(subsets):
        lines, golds = [], []
        for i in range(3):
            right = f"right {folder.name} {sub} {i}"
            cos[right] = 0.1 + 0.1 * j + 0.02 * i
            lines.append(f"left {folder.name} {sub} {i}\t{right}\n")
            golds.append(f"{0.8 * (len(subsets) - 1 - j) + 0.2 * (i + 1):.1f}\n")
        (folder / f"STS.input.{sub}.txt").write_text("".join(lines))
        (folder / f"STS.gs.{sub}.txt").write_text("".join(golds))
    return cos


def pooled_spearman_by_hand(s: int) -> float:
    """Ranks over all 3S pairs (no ties): pair (j, i) has cosine rank 3j + i + 1 and gold rank
    3(S - 1 - j) + i + 1, so d = 3(2j - S + 1) and rho = 1 - 6 sum d^2 / (n (n^2 - 1))."""
    n = 3 * s
    sum_d2 = sum(3 * (3 * (2 * j - s + 1)) ** 2 for j in range(s))
    return 100 * (1 - 6 * sum_d2 / (n * (n * n - 1)))


def test_sts12_16_primary_figure_pools_all_subsets(tmp_path):
    root = write_tiny_sts(tmp_path / "data")
    cos = {}
    for folder, subsets in STS_YEARS.values():
        for old in (root / "sts" / folder).iterdir():
            old.unlink()
        cos |= write_year(root / "sts" / folder, subsets)
    run = score(TableEncoder(cos), list(STS_YEARS), root=root, diagnostics=False)
    for task, (_, subsets) in STS_YEARS.items():
        res = run.tasks[task]
        assert res["aggregates"]["mean"]["spearman"] == pytest.approx(100)
        expect = pooled_spearman_by_hand(len(subsets))
        assert expect < 0  # far from the mean of 100: the two cannot be confused
        assert res["spearman"] == pytest.approx(expect, abs=1e-9), task
        assert res["aggregates"]["all"]["spearman"] == pytest.approx(expect, abs=1e-9)


def test_alignment_uses_only_pairs_with_gold_above_4(tmp_path):
    """Golds 5.0 and 4.2 are positive; 4.0 (the boundary: SimCSE takes > 4), 3.0 and 1.0 are
    not. ||x - y||^2 = 2 - 2c for unit vectors: cosines 0.9 and 0.5 give (0.2 + 1.0) / 2."""
    root = write_tiny_sts(tmp_path / "data")
    golds, cosines = [5.0, 4.2, 4.0, 3.0, 1.0], [0.9, 0.5, 0.1, 0.0, -0.5]
    (root / "sts" / "STSBenchmark" / "sts-test.csv").write_text(
        "".join(
            f"main-captions\tMSRvid\t2012test\t{k:04d}\t{g}\tleft {k}\tright {k}\n"
            for k, g in enumerate(golds)
        )
    )
    enc = TableEncoder({f"right {k}": c for k, c in enumerate(cosines)})
    d = score(enc, ["STSBenchmark"], root=root).diagnostics
    assert d["n_positive_pairs"] == 2
    assert d["alignment"] == pytest.approx((0.2 + 1.0) / 2, abs=1e-6)
