"""Hierarchical bootstrap for runs trained with several seeds: how sure is a seed mean?

A method's figure on a task is the mean over its training seeds of Spearman's rho on the task's
pairs. It varies with two samples: the seeds (another seed, another model) and the pairs (the
benchmark is a sample of sentence pairs). Following the hierarchical (two-stage) bootstrap of
Davison & Hinkley, *Bootstrap Methods and their Application* (1997, section 3.8), resample b
draws S seeds with replacement among the S trained, then N pairs with replacement, and takes the
mean over the drawn seeds of rho on the drawn pairs.

The pairs are drawn once per resample and shared by every drawn seed and every method: all
seeds and methods were scored on the *same* test pairs, so the pair-sampling error is common to
them (drawing pairs anew for each seed would shrink it by 1/S, too narrow an interval). The drawn
seeds are shared by the methods too (seed s of every method started from the same data order and
initial pooler), and by the tasks (one model per seed scores every task): that makes paired
differences and the Avg over tasks possible.

With one seed this is exactly `embeval.eval.metrics.stats.bootstrap_spearman` with the same
task stream: the same pair resamples, the same figures.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from embeval.eval.metrics.stats import N_BOOT, SEED, Seed, _rowwise_pearson, resample_indices


def seed_resamples(n_seeds: int, n_boot: int = N_BOOT, seed: Seed = SEED) -> np.ndarray:
    """(B, S) indices of the seeds drawn with replacement in each resample (one stream for every
    task and method, so that resample b is of the same models everywhere)."""
    return np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))


def pair_rho(pred: np.ndarray, gold: np.ndarray, n_boot: int, seed: Seed) -> np.ndarray:
    """Spearman x100 of every run on each pair resample: (R, N), (N,) -> (R, B); the ranking
    code of `bootstrap_spearman`, so that one run gives its figures bit for bit."""
    out = []
    for idx in resample_indices(len(gold), n_boot, seed):  # idx: (C, N)
        g = rankdata(gold[idx], axis=1)  # (C, N)
        p = rankdata(pred[:, idx], axis=2)  # (R, C, N)
        out.append(100 * _rowwise_pearson(p, g[None]))  # (R, C)
    return np.concatenate(out, axis=1)


def hierarchical_spearman(
    pred: np.ndarray,
    gold: np.ndarray,
    seeds_drawn: np.ndarray,
    n_boot: int = N_BOOT,
    seed: Seed = SEED,
) -> np.ndarray:
    """Seed-mean Spearman x100 on each hierarchical resample.

    pred: (M, S, N) similarities of M methods x S seeds on the same N pairs; gold: (N,);
    seeds_drawn: (B, S) from `seed_resamples`; seed: the task's pair stream (`task_seed`).
    Returns (M, B).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    m, s, n = pred.shape
    if n != len(gold):
        raise ValueError(f"{n} predictions for {len(gold)} gold scores")
    if seeds_drawn.shape != (n_boot, s):
        raise ValueError(f"seeds_drawn is {seeds_drawn.shape}, expected ({n_boot}, {s})")
    rho = pair_rho(pred.reshape(m * s, n), gold, n_boot, seed).reshape(m, s, n_boot)
    cols = np.arange(n_boot)[:, None]  # (B, 1)
    return rho[:, seeds_drawn, cols].mean(axis=-1)  # rho[m, drawn seed, b] -> (M, B, S) -> (M, B)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), controlling the family-wise error rate:
    the i-th smallest of k is multiplied by k - i + 1, then made non-decreasing, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    k = len(p)
    adj = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adj
    return out
