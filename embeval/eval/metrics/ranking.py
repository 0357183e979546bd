"""EvalRank's ranking metric (Wang et al., ACL 2022, "Just Rank: Rethinking Evaluation with Word
and Sentence Similarities"; reference code: github.com/BinWang28/EvalRank-Embedding-Evaluation,
src/s_evaluation.py `eval_for_ranking`).

The pool's embeddings are centred by their mean and L2-normalised (`center_normalize`). For a
positive pair (s1, s2), s1 is the query: rank = #{pool sentences p : cos(s1, p) > cos(s1, s2)},
strictly greater, so a sentence tied with s2 does not count (the reference code's
``len(scores) - searchsorted(ascending scores, pos, side="right")``). s1 itself is in the pool
(cos 1), so rank >= 1 unless s2 ties with s1; a rank of 0 counts as 1, as there.
Reported (`rank_summary`): MR = mean rank, MRR = mean of 1/rank, Hits@k = share of ranks <= k;
MRR and Hits x100.

Where embeval and the reference code part, on purpose: cos(s1, s2) is read from the same row of
similarities as the rest of the pool, so s2 ties with itself exactly and never counts above
itself. The reference computes it by a separate dot product, which differs from s2's entry of
the pool's matrix-vector product in the last bit for many pairs; when that entry comes out 1 ulp
larger, s2 counts above itself and the rank grows by one. For all-MiniLM-L6-v2 that happens in
2,113 of 6,989 pairs in float64 (1,583 in float32): the reference loop gives MRR 71.46 (float64)
or 74.44 (float32) where the protocol as written gives 83.70, Hits@1 52.84 / 58.29 vs 75.65
(measured with a plain-numpy copy of the reference loop). Published EvalRank figures carry that
rounding noise, so embeval's are higher and not directly comparable with them.
"""

from __future__ import annotations

import numpy as np

HITS = (1, 3, 10)  # the Hits@k embeval reports (the reference prints k = 1..15)


def center_normalize(x: np.ndarray) -> np.ndarray:  # (N, D) -> (N, D) float32
    """x minus its column mean, each row then divided by its L2 norm (at least 1e-12)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def ranks(pool: np.ndarray, query: np.ndarray, positive: np.ndarray, chunk: int = 1024):
    """Rank of each pair's positive among the pool (see the module docstring).

    pool (N, D): unit vectors; query, positive (P,): row indices into pool of s1 and s2.
    Returns (P,) int64 ranks, each >= 1. Queries go `chunk` at a time: (chunk, N) floats."""
    query, positive = np.asarray(query), np.asarray(positive)
    out = np.empty(len(query), np.int64)
    for a in range(0, len(query), chunk):
        sim = pool[query[a : a + chunk]] @ pool.T  # (c, N)
        pos = sim[np.arange(len(sim)), positive[a : a + chunk]]  # (c,) cos(s1, s2)
        out[a : a + chunk] = (sim > pos[:, None]).sum(axis=1)
    return np.maximum(out, 1)


def rank_summary(r: np.ndarray, hits: tuple[int, ...] = HITS) -> dict[str, float]:
    """MR, MRR x100 and Hits@k x100 of ranks `r` (P,)."""
    r = np.asarray(r, np.float64)
    out = {"mr": float(r.mean()), "mrr": float(100 * np.mean(1.0 / r))}
    out.update({f"hits@{k}": float(100 * np.mean(r <= k)) for k in hits})
    return out
