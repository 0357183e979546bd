"""Contrastive losses as pure functions over a similarity matrix.

Every loss has the signature ``loss(sim, temperature, **hparams) -> Tensor[]`` where ``sim`` is
the (B, B+k) matrix of *cosine* similarities between B anchors and B+k candidates: column i is
anchor i's positive (the diagonal), the other first-B columns are in-batch negatives and the k
extra columns are hard negatives (supervised SimCSE: k = B, column B+i is anchor i's own).
A new objective is one function and one `LOSSES` entry; the training loop never changes.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _check(sim: torch.Tensor) -> int:
    if sim.dim() != 2 or sim.shape[1] < sim.shape[0]:
        raise ValueError(f"sim must be (B, B+k) with positives on the diagonal, got {sim.shape}")
    return sim.shape[0]


def modulated_infonce(
    sim: torch.Tensor,  # (B, B+k) cosines
    temperature: float,
    pos_weight: torch.Tensor | float = 1.0,  # (B,) or scalar: multiplies the positive cosine
    neg_weight: torch.Tensor | float = 1.0,  # (B, B+k) or scalar: multiplies negative cosines
) -> torch.Tensor:
    """Cross-entropy over logits ``w * sim / tau`` with the diagonal as target.

    With both weights 1 this is InfoNCE; Focal-InfoNCE sets them to ``s_p`` and ``s_n + m``.
    """
    b = _check(sim)
    eye = torch.eye(b, sim.shape[1], dtype=torch.bool, device=sim.device)  # (B, B+k)
    pos = torch.as_tensor(pos_weight, dtype=sim.dtype, device=sim.device)
    neg = torch.as_tensor(neg_weight, dtype=sim.dtype, device=sim.device)
    pos = pos.expand(b).unsqueeze(1).expand_as(sim) if pos.dim() < 2 else pos
    weights = torch.where(eye, pos, neg.expand_as(sim))  # (B, B+k)
    logits = sim * weights / temperature
    return F.cross_entropy(logits, torch.arange(b, device=sim.device))


def infonce(sim: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE, the unsupervised SimCSE loss (Gao, Yao & Chen, EMNLP 2021).

    loss_i = -log( exp(s_ii / tau) / sum_j exp(s_ij / tau) ), averaged over the batch; the same
    as sentence-transformers' MultipleNegativesRankingLoss with scale = 1 / tau.
    """
    b = _check(sim)
    return F.cross_entropy(sim / temperature, torch.arange(b, device=sim.device))


def focal_infonce(sim: torch.Tensor, temperature: float = 0.05, m: float = 0.3) -> torch.Tensor:
    """Focal-InfoNCE (Hou & Li, Findings of EMNLP 2023), as the authors' code computes it.

    loss_i = -log( exp(s_p s_p / tau) / (exp(s_p s_p / tau) + sum_n exp(s_n (s_n + m) / tau)) )
    on cosines (no prior division by tau). d logit / d s_n = (2 s_n + m) / tau: hard negatives
    (high s_n) are pushed harder than under InfoNCE, easy ones less. The negative logit is a
    parabola with its minimum at s_n = -m / 2. Both modulating factors set to 1 give InfoNCE.
    """
    _check(sim)
    return modulated_infonce(sim, temperature, pos_weight=sim.diagonal(), neg_weight=sim + m)


def sup_simcse(
    sim: torch.Tensor, temperature: float = 0.05, hard_negative_weight: float = 0.0
) -> torch.Tensor:
    """Supervised SimCSE (Gao et al. 2021): InfoNCE over (B, 2B) with NLI contradictions as
    hard-negative columns. ``hard_negative_weight`` = log(alpha) is added to anchor i's own
    hard-negative logit (column B + i) after the division by tau, as SimCSE does; 0 (alpha = 1)
    was best in the paper. Without extra columns (k = 0) this is plain InfoNCE.
    """
    b = _check(sim)
    k = sim.shape[1] - b
    if k not in (0, b):
        raise ValueError(f"sup-simcse needs one hard negative per anchor (B+k = 2B), got {k=}")
    logits = sim / temperature
    if k and hard_negative_weight:
        bonus = torch.zeros_like(logits)
        bonus[:, b:] = torch.eye(b, dtype=sim.dtype, device=sim.device) * hard_negative_weight
        logits = logits + bonus
    return F.cross_entropy(logits, torch.arange(b, device=sim.device))


def align_uniform(sim: torch.Tensor, temperature: float = 0.05, lam: float = 1.0) -> torch.Tensor:
    """Alignment + lam * uniformity (Wang & Isola, ICML 2020), alpha = 2, t = 2.

    Derived from cosines: for unit vectors ||x - y||^2 = 2 - 2 cos(x, y), so
    alignment = mean_i (2 - 2 s_ii) and uniformity = log mean_{i != j} exp(-2 (2 - 2 s_ij)) over
    the off-diagonal pairs of the first B columns (two distinct sentences, one view each); the
    authors' code instead averages within-view pdist uniformities, which estimates the same
    expectation. Hard-negative columns and ``temperature`` are not used.
    """
    b = _check(sim)
    sq = 2 - 2 * sim[:, :b]  # (B, B) squared distances of unit vectors
    alignment = sq.diagonal().mean()
    off = sq[~torch.eye(b, dtype=torch.bool, device=sim.device)]  # (B*(B-1),)
    if off.numel() == 0:
        return alignment
    uniformity = torch.logsumexp(-2 * off, 0) - math.log(off.numel())
    return alignment + lam * uniformity


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "infonce": infonce,
    "focal-infonce": focal_infonce,
    "sup-simcse": sup_simcse,
    "align-uniform": align_uniform,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered as `name`; an unknown name fails with a suggestion."""
    if name in LOSSES:
        return LOSSES[name]
    close = difflib.get_close_matches(name, LOSSES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown loss {name!r}; {hint}expected one of {', '.join(LOSSES)}")


def loss_hparams(fn: Callable[..., torch.Tensor], candidates: dict) -> dict:
    """The subset of `candidates` that `fn` accepts as keyword hyper-parameters."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in candidates.items() if k in params and k not in ("sim", "temperature")}
