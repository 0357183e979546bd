"""Losses: hand-computed 3x3 cases, torch.nn.functional equivalences, focal gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from embeval.core import losses

# A 3x3 cosine matrix, positives on the diagonal; tau = 0.5 keeps the exponentials readable.
SIM = [[0.9, 0.2, -0.1], [0.3, 0.8, 0.1], [0.0, 0.4, 0.7]]
TAU = 0.5


def _xent(rows: list[list[float]]) -> float:
    """Mean over rows of -log softmax(row)[i], written out with math.exp."""
    return sum(
        -math.log(math.exp(r[i]) / sum(math.exp(v) for v in r)) for i, r in enumerate(rows)
    ) / len(rows)


def test_infonce_hand_computed_3x3():
    want = _xent([[v / TAU for v in row] for row in SIM])
    got = losses.infonce(torch.tensor(SIM, dtype=torch.float64), TAU)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_infonce_equals_cross_entropy_with_extra_columns():
    g = torch.Generator().manual_seed(0)
    sim = torch.rand(5, 8, generator=g, dtype=torch.float64) * 2 - 1  # B=5, k=3
    want = F.cross_entropy(sim / 0.05, torch.arange(5))
    assert torch.allclose(losses.infonce(sim, 0.05), want)


def test_focal_infonce_hand_computed_3x3():
    m = 0.3
    rows = [
        [(s * s if i == j else s * (s + m)) / TAU for j, s in enumerate(row)]
        for i, row in enumerate(SIM)
    ]
    got = losses.focal_infonce(torch.tensor(SIM, dtype=torch.float64), TAU, m=m)
    assert got.item() == pytest.approx(_xent(rows), rel=1e-12)


def test_focal_with_unit_modulating_factors_is_infonce():
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(6, 6, generator=g, dtype=torch.float64) * 2 - 1
    plain = losses.modulated_infonce(sim, 0.05, pos_weight=1.0, neg_weight=1.0)
    assert torch.allclose(plain, losses.infonce(sim, 0.05))
    focal = losses.modulated_infonce(sim, 0.05, pos_weight=sim.diagonal(), neg_weight=sim + 0.3)
    assert torch.allclose(focal, losses.focal_infonce(sim, 0.05, m=0.3))
    assert not torch.allclose(focal, plain)  # the factors do change the loss


def _grad(fn, sim: torch.Tensor) -> torch.Tensor:
    sim = sim.clone().requires_grad_(True)
    fn(sim).backward()
    return sim.grad


def test_focal_gives_hard_negatives_larger_and_easy_ones_smaller_gradients():
    # Row 0: positive 0.9, hard negative 0.8, easy negative 0.0 (easy = low but >= -m/2, where the
    # focal negative logit s(s+m) is still increasing).
    sim = torch.tensor([[0.9, 0.8, 0.0], [0.1, 0.9, 0.2], [0.0, 0.3, 0.9]], dtype=torch.float64)
    g_nce = _grad(lambda s: losses.infonce(s, 0.05), sim)
    g_focal = _grad(lambda s: losses.focal_infonce(s, 0.05, m=0.3), sim)
    hard, easy = (0, 1), (0, 2)
    assert g_focal[hard] > g_nce[hard] > 0  # pushed apart harder
    assert 0 < g_focal[easy] < g_nce[easy]  # pushed apart less
    # Focusing: the hardest negative's share of the row's negative gradient grows.
    share = lambda g: g[hard] / (g[hard] + g[easy])  # noqa: E731
    assert share(g_focal) > share(g_nce)


def test_focal_focuses_on_hard_negatives_over_random_rows():
    """Over random rows with negatives in [-m/2, 0.85]: the gradient share of the hardest
    negative is larger under Focal-InfoNCE than under InfoNCE in every row."""
    g = torch.Generator().manual_seed(2)
    b = 16
    sim = torch.rand(b, b, generator=g, dtype=torch.float64) * 1.0 - 0.15
    sim.fill_diagonal_(0.9)
    g_nce = _grad(lambda s: losses.infonce(s, 0.05), sim)
    g_focal = _grad(lambda s: losses.focal_infonce(s, 0.05), sim)
    off = ~torch.eye(b, dtype=torch.bool)
    for i in range(b):
        neg = sim[i][off[i]]
        hardest = neg.argmax()
        share_nce = g_nce[i][off[i]][hardest] / g_nce[i][off[i]].sum()
        share_focal = g_focal[i][off[i]][hardest] / g_focal[i][off[i]].sum()
        assert share_focal > share_nce, i


def test_sup_simcse_hard_negative_weight():
    g = torch.Generator().manual_seed(3)
    sim = torch.rand(3, 6, generator=g, dtype=torch.float64) * 2 - 1
    # weight 0: plain cross-entropy over the 2B columns
    assert torch.allclose(
        losses.sup_simcse(sim, 0.05), F.cross_entropy(sim / 0.05, torch.arange(3))
    )
    # weight w: add w to logit (i, B+i) only, by hand
    w = math.log(2.0)
    rows = [
        [v / 0.05 + (w if j == 3 + i else 0.0) for j, v in enumerate(r)]
        for i, r in enumerate(sim.tolist())
    ]
    assert losses.sup_simcse(sim, 0.05, hard_negative_weight=w).item() == pytest.approx(_xent(rows))
    with pytest.raises(ValueError, match="one hard negative per anchor"):
        losses.sup_simcse(sim[:, :5], 0.05)


def test_align_uniform_matches_embedding_definition():
    """From cosines it equals Wang & Isola's alignment + uniformity computed on the vectors."""
    g = torch.Generator().manual_seed(4)
    x = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(x + 0.3 * torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    sim = x @ y.T
    align = (x - y).norm(dim=1).pow(2).mean()
    d2 = torch.cdist(x, y).pow(2)[~torch.eye(5, dtype=torch.bool)]
    unif = torch.log(torch.exp(-2 * d2).mean())
    got = losses.align_uniform(sim, lam=0.5)
    assert got.item() == pytest.approx((align + 0.5 * unif).item(), rel=1e-10)
    # 3x3 by hand: alignment = mean(2 - 2 s_ii)
    s = torch.tensor(SIM, dtype=torch.float64)
    want_align = sum(2 - 2 * SIM[i][i] for i in range(3)) / 3
    off = [2 - 2 * SIM[i][j] for i in range(3) for j in range(3) if i != j]
    want_unif = math.log(sum(math.exp(-2 * d) for d in off) / len(off))
    assert losses.align_uniform(s).item() == pytest.approx(want_align + want_unif)


def test_registry_and_did_you_mean():
    assert set(losses.LOSSES) >= {"infonce", "focal-infonce", "sup-simcse", "align-uniform"}
    with pytest.raises(ValueError, match="did you mean 'focal-infonce'"):
        losses.get_loss("focal_infonce")
    with pytest.raises(ValueError, match="expected one of"):
        losses.get_loss("zzz")
    hp = losses.loss_arguments("focal-infonce", {"m": 0.2})
    assert hp == {"m": 0.2}
    with pytest.raises(ValueError, match=r"focal-infonce has no argument 'lam'; it accepts: m"):
        losses.loss_arguments("focal-infonce", {"m": 0.2, "lam": 3})


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, B\+k\)"):
        losses.infonce(torch.zeros(4, 3), 0.05)
