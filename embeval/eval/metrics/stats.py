"""Bootstrap statistics for STS Spearman figures: is a +0.3 difference noise?

Neither SentEval, SimCSE nor MTEB says. We resample *pairs* (the unit a benchmark samples from
the population of sentence pairs) with replacement, as in Efron & Tibshirani, *An Introduction
to the Bootstrap* (1993), and recompute Spearman's rho on each resample:

- `bootstrap_spearman` gives the bootstrap distribution of one or several runs' rho. Several runs
  scored on the *same pairs* share the same resamples, which is what makes a paired test possible.
  `bootstrap_pearson` does the same for Pearson's r (one run; `embeval.results.to_frame`).
- `percentile_ci` turns a distribution into a percentile confidence interval (95 % by default).
- `paired_p_value` is the paired bootstrap test used for MT/NLP system comparison (Koehn 2004,
  Berg-Kirkpatrick et al. 2012): the difference of two systems is measured on each common
  resample; the distribution is shifted to mean zero (the null hypothesis) and the p-value is the
  share of shifted differences at least as large in magnitude as the observed one (two-sided).

Everything is vectorised numpy over a (B, N) matrix of resampled indices, processed in chunks so
memory stays ~ `chunk * N * 8` bytes, and seeded: the same (seed, N, B) always gives the same
resamples, hence the same figures in every report. Different tasks draw from different streams
(`task_seed`): an average over tasks treats them as independent samples, which it can only do if
resample b of one task is not the same index sequence as resample b of another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.stats import rankdata

N_BOOT = 1000
SEED = 0
CHUNK = 128  # resamples ranked at once: (CHUNK, N) float64 arrays


Seed = int | Sequence[int]  # anything np.random.default_rng accepts as entropy


def task_seed(seed: int, task: str) -> list[int]:
    """The resampling stream of `task` under a report's `seed`: [seed, 32 bits of sha256(task)].

    Runs scored on the same task share it (paired tests need common resamples); two tasks never
    do, so the per-task samples averaged for the Avg interval are independent. With one seed for
    all, resample b of every task came from the same random numbers (the very same index rows
    for tasks of equal size, as under `--limit`), and the Avg interval came out too wide.
    """
    return [seed, int.from_bytes(hashlib.sha256(task.encode()).digest()[:4], "little")]


def resample_indices(n: int, n_boot: int = N_BOOT, seed: Seed = SEED) -> Iterator[np.ndarray]:
    """Yield (chunk, n) int arrays of pair indices drawn with replacement; B rows in total."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, CHUNK):
        yield rng.integers(0, n, size=(min(CHUNK, n_boot - start), n))


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # (..., N), (..., N) -> (...)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=-1) / den, np.nan)


def bootstrap_spearman(
    pred: np.ndarray, gold: np.ndarray, n_boot: int = N_BOOT, seed: Seed = SEED
) -> np.ndarray:
    """Spearman rho x100 on `n_boot` resamples of the pairs.

    pred: (N,) or (R, N) predicted similarities of R runs on the same N pairs; gold: (N,).
    Returns (B,) or (R, B). Ties get average ranks, as `scipy.stats.spearmanr` (and so SentEval).
    A resample with constant predictions or gold (possible only for tiny N) gives NaN; the
    summaries below ignore NaN.
    """
    pred = np.asarray(pred, dtype=np.float64)
    single = pred.ndim == 1
    pred = np.atleast_2d(pred)  # (R, N)
    gold = np.asarray(gold, dtype=np.float64)
    if pred.shape[1] != len(gold):
        raise ValueError(f"{pred.shape[1]} predictions for {len(gold)} gold scores")
    out = []
    for idx in resample_indices(len(gold), n_boot, seed):  # idx: (C, N)
        g = rankdata(gold[idx], axis=1)  # (C, N)
        p = rankdata(pred[:, idx], axis=2)  # (R, C, N)
        out.append(100 * _rowwise_pearson(p, g[None]))  # (R, C)
    rho = np.concatenate(out, axis=1)  # (R, B)
    return rho[0] if single else rho


def bootstrap_pearson(
    pred: np.ndarray, gold: np.ndarray, n_boot: int = N_BOOT, seed: Seed = SEED
) -> np.ndarray:  # (N,), (N,) -> (B,)
    """Pearson r x100 on `n_boot` resamples of the pairs: the same resamples as
    `bootstrap_spearman` with the same seed, so the two intervals of a task are of one sample."""
    pred = np.asarray(pred, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold scores")
    out = [
        100 * _rowwise_pearson(pred[idx], gold[idx])
        for idx in resample_indices(len(gold), n_boot, seed)
    ]
    return np.concatenate(out)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval: the (1-level)/2 and (1+level)/2 quantiles, NaN ignored."""
    lo, hi = np.nanpercentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def paired_p_value(samples_a: np.ndarray, samples_b: np.ndarray, observed: float) -> float:
    """Two-sided paired bootstrap p-value of `observed` = rho_a - rho_b on the same pairs.

    samples_a, samples_b: (B,) figures of the two runs on the *same* resamples. Under the null
    hypothesis the difference is centred on zero, so we shift the bootstrap differences by their
    centre `observed` and count how often |d_b - observed| >= |observed|. The +1 in numerator and
    denominator counts the observed sample itself, so p is never exactly 0 with finite B.
    """
    d = np.asarray(samples_a) - np.asarray(samples_b)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return float("nan")
    extreme = np.abs(d - observed) >= abs(observed) - 1e-12
    return float((extreme.sum() + 1) / (len(d) + 1))


def paired_bootstrap(
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    gold: np.ndarray,
    observed: float | None = None,
    n_boot: int = N_BOOT,
    seed: Seed = SEED,
) -> float:
    """p-value that runs a and b differ in Spearman on these pairs (see `paired_p_value`).

    `observed` defaults to the difference of the full-sample figures (scipy's Spearman x100).
    """
    rho = bootstrap_spearman(np.stack([pred_a, pred_b]), gold, n_boot, seed)  # (2, B)
    if observed is None:
        full = spearman_rows(np.stack([pred_a, pred_b]), gold)
        observed = float(full[0] - full[1])
    return paired_p_value(rho[0], rho[1], observed)


def spearman_rows(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman x100 of each run on the original sample, same code path: (R, N), (N,) -> (R,)."""
    p = rankdata(np.atleast_2d(np.asarray(pred, dtype=np.float64)), axis=1)
    g = rankdata(np.asarray(gold, dtype=np.float64))
    return 100 * _rowwise_pearson(p, g[None])
