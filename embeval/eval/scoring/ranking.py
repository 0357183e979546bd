"""Ranking tasks (EvalRank): a model's vectors of the pool -> MR, MRR and Hits@k.

The protocol and metric are `embeval.eval.metrics.ranking`'s; the data, `embeval.eval.data.
evalrank`'s. `score` encodes the pool in its one encode call and hands each ranking task here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from embeval.eval.data.evalrank import RankingData
from embeval.eval.metrics import ranking


def evaluate(d: RankingData, vectors: Callable[[list[str]], np.ndarray]) -> dict:
    """The results entry of one ranking task: split, pairs (n), pool size, mr, mrr, hits@k."""
    pool = d.pool()
    row = {s: i for i, s in enumerate(pool)}
    x = ranking.center_normalize(vectors(pool))  # (N, D), centred by the pool's mean
    r = ranking.ranks(x, [row[s] for s in d.s1], [row[s] for s in d.s2])  # (P,)
    return {"split": d.split, "n": len(d), "pool": len(pool), **ranking.rank_summary(r)}
