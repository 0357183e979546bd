"""Metrics: pure functions over embeddings and scores. They never see a model.

Definitions follow SentEval/SimCSE (STS correlations and aggregates), Wang & Isola 2020 as used
in SimCSE (alignment, uniformity), PromptBERT (anisotropy) and Roy & Vetterli 2007 (effective rank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp
from scipy.stats import pearsonr, spearmanr


def l2_normalize(x: np.ndarray) -> np.ndarray:  # (N, D) -> (N, D)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def pair_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (N, D), (N, D) -> (N,)
    """Cosine similarity of each row of `a` with the same row of `b` (float64).

    Two identical rows (an identical pair of texts shares one embedding) get exactly 1: computed,
    their cosine is 1 +- 2e-16, and that noise, which follows the float32 embedding and so the
    batch it was encoded in, would break the ties among identical pairs (79 in STS12) one way or
    another and move a subset's Spearman with --batch-size."""
    same = (a == b).all(axis=1)
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.where(same, 1.0, (l2_normalize(a) * l2_normalize(b)).sum(axis=1))


def correlations(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson x100 (scipy; ties get average ranks, as SentEval)."""
    return {
        "spearman": 100 * float(spearmanr(pred, gold)[0]),
        "pearson": 100 * float(pearsonr(pred, gold)[0]),
    }


def sts_aggregates(pred: np.ndarray, gold: np.ndarray, subset: Sequence[str]) -> dict:
    """Per-subset correlations and SentEval's `all`, `mean`, `wmean` aggregates.

    `all` (SimCSE's addition, reported by SimCSE tables and MTEB) correlates the concatenation of
    all subsets; `mean` averages subset figures; `wmean` weights them by pair count.
    """
    names = list(dict.fromkeys(subset))
    subset = np.asarray(subset)
    per = {}
    for name in names:
        m = subset == name
        per[name] = {**correlations(pred[m], gold[m]), "n": int(m.sum())}
    n = np.array([per[s]["n"] for s in names], dtype=float)
    agg = {"all": correlations(pred, gold)}
    for key in ("spearman", "pearson"):
        vals = np.array([per[s][key] for s in names])
        agg.setdefault("mean", {})[key] = float(vals.mean())
        agg.setdefault("wmean", {})[key] = float((vals * n).sum() / n.sum())
    return {"subsets": per, "aggregates": agg}


def simcse_average(scores: Sequence[float]) -> float:
    """SimCSE's `Avg.`: each figure rounded to two decimals first, then the plain mean."""
    return float(np.mean([round(s, 2) for s in scores]))


def alignment(x: np.ndarray, y: np.ndarray) -> float:  # (P, D) positive pairs -> scalar
    """E ||f(x) - f(x+)||^2 over positive pairs, on L2-normalised embeddings (alpha = 2)."""
    x, y = l2_normalize(x.astype(np.float64)), l2_normalize(y.astype(np.float64))
    return float(((x - y) ** 2).sum(axis=1).mean())


def uniformity(x: np.ndarray, t: float = 2.0, block: int = 256) -> float:  # (N, D) -> scalar
    """log E exp(-t ||f(x) - f(y)||^2) over all pairs of distinct rows, L2-normalised.

    Rows go `block` at a time against the rows after them, so memory stays O(block * N) (STS-B
    train's 10k sentences make 55M pairs)."""
    z = l2_normalize(x.astype(np.float64))
    n = len(z)
    if n < 2:
        raise ValueError(f"uniformity needs at least two sentences, got {n}")
    parts = []
    for a in range(0, n - 1, block):
        cos = z[a : a + block] @ z[a:].T  # (b, n - a); row r is sentence a + r
        i, j = np.triu_indices(cos.shape[0], k=1, m=cos.shape[1])  # each later sentence once
        sq = np.clip(2 - 2 * cos[i, j], 0, None)  # ||a - b||^2 = 2 - 2 cos for unit vectors
        parts.append(logsumexp(-t * sq))
    return float(logsumexp(parts) - math.log(n * (n - 1) / 2))


def anisotropy(x: np.ndarray) -> float:  # (N, D) -> mean cosine over distinct pairs
    """Mean cosine similarity between different rows (1 = all vectors point the same way)."""
    z = l2_normalize(x.astype(np.float64))
    n = len(z)
    total = float(np.square(z.sum(axis=0)).sum())  # sum over all ordered pairs incl. i == j
    return (total - n) / (n * (n - 1))


def effective_rank(x: np.ndarray) -> float:  # (N, D) -> value in [1, min(N, D)]
    """exp of the Shannon entropy of the normalised singular values of the embedding matrix."""
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))
