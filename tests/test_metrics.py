"""Metrics against hand computations and their textbook definitions."""

import math

import numpy as np
import pytest

from embeval.eval.metrics import similarity as metrics


def test_pair_cosine_hand_case():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    np.testing.assert_allclose(metrics.pair_cosine(a, b), [0.0, 1.0, -1.0], atol=1e-12)


def test_pair_cosine_of_identical_rows_is_exactly_one():
    """Computed, x . x / |x|^2 misses 1 by an ulp for some rows, and which rows follows float32
    noise of the batch a text was encoded in: that broke the tie of identical STS pairs."""
    x = np.random.default_rng(0).standard_normal((200, 7)).astype(np.float32)
    y = x.copy()
    y[0, 0] += 1e-3  # a different row still gets its computed cosine
    got = metrics.pair_cosine(x, y)
    assert (got[1:] == 1.0).all()
    assert got[0] < 1.0


def test_correlations_ties_use_average_ranks():
    pred, gold = np.array([1.0, 2.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    # ranks(pred) = 1, 2.5, 2.5, 4; ranks(gold) = 1, 3, 2, 4 -> Pearson of the ranks
    rp, rg = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
    expected = np.corrcoef(rp, rg)[0, 1] * 100
    assert metrics.correlations(pred, gold)["spearman"] == pytest.approx(expected)


def test_sts_aggregates_all_mean_wmean():
    pred = np.array([1, 2, 3, 1, 2, 3, 4.0])
    gold = np.array([1, 2, 3, 3, 2, 1, 0.0])
    subset = ["a"] * 3 + ["b"] * 4
    out = metrics.sts_aggregates(pred, gold, subset)
    assert out["subsets"]["a"]["spearman"] == pytest.approx(100)
    assert out["subsets"]["b"]["spearman"] == pytest.approx(-100)
    assert out["aggregates"]["mean"]["spearman"] == pytest.approx(0)
    assert out["aggregates"]["wmean"]["spearman"] == pytest.approx((3 * 100 - 4 * 100) / 7)
    assert out["aggregates"]["all"] == metrics.correlations(pred, gold)


def test_simcse_average_rounds_first():
    # Rounded first: (2.23 + 2.22) / 2 = 2.225; unrounded the mean is also 2.225, so use a case
    # where they differ: (76.856, 70.0) -> 73.43 rounded first, 73.428 unrounded.
    assert metrics.simcse_average([2.226, 2.224]) == pytest.approx(2.225)
    assert metrics.simcse_average([76.856, 70.0]) == pytest.approx(73.43)
    assert metrics.simcse_average([76.856, 70.0]) != pytest.approx(73.428)


def test_alignment_and_uniformity_hand_case():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array(
        [[2.0, 0.0], [0.0, -1.0]]
    )  # first pair identical after normalising, second opposite
    assert metrics.alignment(x, y) == pytest.approx((0.0 + 4.0) / 2)
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # squared distances between distinct points: 2, 4, 2
    expected = math.log((math.exp(-4) + math.exp(-8) + math.exp(-4)) / 3)
    assert metrics.uniformity(pts) == pytest.approx(expected)
    assert metrics.uniformity(pts, block=1) == pytest.approx(expected)  # one row at a time


def test_uniformity_in_blocks_matches_all_pairs_at_once():
    x = np.random.default_rng(1).standard_normal((23, 4))
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    i, j = np.triu_indices(23, k=1)
    brute = math.log(np.mean(np.exp(-2 * ((z[i] - z[j]) ** 2).sum(axis=1))))
    for block in (1, 5, 22, 23, 1000):
        assert metrics.uniformity(x, block=block) == pytest.approx(brute, rel=1e-12)
    with pytest.raises(ValueError, match="at least two sentences"):
        metrics.uniformity(x[:1])


def test_anisotropy_matches_brute_force():
    x = np.random.default_rng(0).standard_normal((20, 5)) + 2.0
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = z @ z.T
    brute = (cos.sum() - np.trace(cos)) / (20 * 19)
    assert metrics.anisotropy(x) == pytest.approx(brute)


def test_effective_rank_extremes():
    assert metrics.effective_rank(np.eye(4)) == pytest.approx(4.0)
    assert metrics.effective_rank(np.outer(np.arange(1, 6), [1.0, 2.0, 3.0])) == pytest.approx(1.0)
