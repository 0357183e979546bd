"""Bootstrap statistics: exact vs scipy, interval width vs theory, calibration of the test."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from embeval.eval.metrics import stats


def _pairs(n, noise, seed=0):
    """Synthetic STS-like task: gold in [0, 5] rounded to 0.2 (ties, as real gold), noisy pred."""
    rng = np.random.default_rng(seed)
    gold = np.round(rng.uniform(0, 5, n) * 5) / 5
    return gold, gold + noise * rng.standard_normal(n)


def test_spearman_rows_equals_scipy():
    gold, pred = _pairs(300, 1.5)
    other = pred[::-1].copy()
    got = stats.spearman_rows(np.stack([pred, other]), gold)
    assert got[0] == pytest.approx(100 * spearmanr(pred, gold)[0], abs=1e-9)
    assert got[1] == pytest.approx(100 * spearmanr(other, gold)[0], abs=1e-9)


def test_each_resample_is_scipy_spearman_on_those_pairs():
    gold, pred = _pairs(50, 1.0)
    rho = stats.bootstrap_spearman(pred, gold, n_boot=300, seed=7)
    idx = np.concatenate(list(stats.resample_indices(50, 300, seed=7)))
    assert rho.shape == (300,) and idx.shape == (300, 50)
    for b in (0, 131, 299):  # across chunk boundaries (CHUNK = 128)
        expect = 100 * spearmanr(pred[idx[b]], gold[idx[b]])[0]
        assert rho[b] == pytest.approx(expect, abs=1e-9)


def test_seeded_and_runs_share_resamples():
    gold, pred = _pairs(80, 1.0)
    a = stats.bootstrap_spearman(pred, gold, n_boot=200, seed=3)
    np.testing.assert_array_equal(a, stats.bootstrap_spearman(pred, gold, n_boot=200, seed=3))
    both = stats.bootstrap_spearman(np.stack([pred, -pred]), gold, n_boot=200, seed=3)
    np.testing.assert_allclose(both[0], a)
    np.testing.assert_allclose(both[1], -a)  # same resamples, mirrored ranks
    assert not np.allclose(a, stats.bootstrap_spearman(pred, gold, n_boot=200, seed=4))


def test_ci_width_matches_fisher_z_theory():
    """For Spearman, atanh(rho) has standard error ~ sqrt(1.06 / (n - 3)) (Fieller et al. 1957).

    The bootstrap 95 % interval must agree with that independent approximation within 20 %.
    """
    n = 1500
    gold, pred = _pairs(n, 1.5, seed=1)
    rho = spearmanr(pred, gold)[0]
    se = np.sqrt(1.06 / (n - 3))
    theory = 100 * (np.tanh(np.arctanh(rho) + 1.96 * se) - np.tanh(np.arctanh(rho) - 1.96 * se))
    lo, hi = stats.percentile_ci(stats.bootstrap_spearman(pred, gold, n_boot=1000))
    assert lo < 100 * rho < hi
    assert (hi - lo) == pytest.approx(theory, rel=0.2)


def test_paired_identical_runs_p_is_one():
    gold, pred = _pairs(200, 1.0)
    assert stats.paired_bootstrap(pred, pred.copy(), gold, n_boot=200) == 1.0


def test_paired_clear_difference_is_significant():
    gold, good = _pairs(1500, 0.8)
    bad = good + 1.5 * np.random.default_rng(9).standard_normal(1500)
    p = stats.paired_bootstrap(good, bad, gold, n_boot=500)
    assert p < 0.01
    assert p >= 1 / 501  # never exactly zero


def test_paired_test_is_calibrated_under_the_null():
    """Two runs = the same signal + independent noise of equal size: p < 0.05 about 5 % of times.

    60 simulated comparisons; with a calibrated test the count of p < 0.05 is Binomial(60, 0.05)
    (mean 3; P(count > 9) < 0.001), so the bound below only fails for a badly miscalibrated test.
    """
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(60):
        gold = rng.uniform(0, 5, 300)
        a = gold + 1.5 * rng.standard_normal(300)
        b = gold + 1.5 * rng.standard_normal(300)
        ps.append(stats.paired_bootstrap(a, b, gold, n_boot=200))
    ps = np.array(ps)
    assert (ps < 0.05).sum() <= 9
    assert ps.max() > 0.5  # not all small either


def test_constant_resamples_are_ignored():
    gold = np.array([1.0, 2.0, 3.0])
    pred = np.array([0.1, 0.2, 0.3])
    rho = stats.bootstrap_spearman(pred, gold, n_boot=100)
    assert np.isnan(rho).any()  # e.g. all three indices equal
    lo, hi = stats.percentile_ci(rho)
    assert np.isfinite([lo, hi]).all()


def test_shape_mismatch():
    with pytest.raises(ValueError, match="3 predictions for 2 gold"):
        stats.bootstrap_spearman(np.ones(3), np.ones(2))
