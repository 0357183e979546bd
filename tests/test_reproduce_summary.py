"""The card's statistics from results in memory: seed means and sds, the paired difference
against the baseline, Holm, the standing against the best, and training geometry warnings."""

from __future__ import annotations

import json

import numpy as np
from scipy.stats import spearmanr

from embeval.reproduce.summary import CellRun, read_geometry, summarise, to_csv
from embeval.results.files import RunResult


def fake_cells(noise: dict[str, float], seeds=(1, 2, 3), n=80) -> list[CellRun]:
    """Methods whose similarities are gold plus noise of the given scale (smaller: better)."""
    rng = np.random.default_rng(0)
    gold = rng.normal(size=n)
    cells = []
    for method, scale in noise.items():
        for s in seeds:
            sim = gold + scale * rng.normal(size=n)
            rho = 100 * spearmanr(sim, gold).statistic
            run = RunResult(
                name=f"{method}-s{s}",
                meta={},
                tasks={"STSBenchmark": {"spearman": rho, "n": n}},
                pairs={"STSBenchmark": {"sim": sim, "gold": gold}},
            )
            cells.append(CellRun("m", method, s, run, None))
    return cells


def test_means_differences_and_standing():
    cells = fake_cells({"base": 1.0, "good": 0.2, "same": 1.0})
    rows = {r.method: r for r in summarise(cells, "base", n_boot=300)}
    per = {m: [c.run.tasks["STSBenchmark"]["spearman"] for c in cells if c.method == m]
           for m in rows}  # fmt: skip
    for m, r in rows.items():
        assert r.per_seed == per[m]
        assert r.mean == np.mean(per[m]) and r.sd == np.std(per[m], ddof=1)
        assert r.lo < r.mean < r.hi
    good, same = rows["good"], rows["same"]
    assert good.diff == good.mean - rows["base"].mean and good.diff_lo > 0  # far better
    assert good.standing == "best" and rows["base"].standing == "below"
    assert same.diff_lo < same.diff < same.diff_hi and same.p > 0.05
    # Holm over the two comparisons: the smaller p doubled, the larger kept (both <= 1)
    ps = sorted([good.p, same.p])
    holm_ps = sorted([good.p_holm, same.p_holm])
    assert holm_ps[0] == min(1, 2 * ps[0]) and holm_ps[1] == max(holm_ps[0], ps[1])
    assert rows["base"].p is None
    assert "good" in to_csv(list(rows.values()))


def test_collapse_warning_and_peak_rank(tmp_path):
    log = tmp_path / "train_log.jsonl"
    recs = [
        {"step": 0, "stsb_dev": 50.0, "effective_rank": 100.0, "anisotropy": 0.1},
        {"step": 5, "loss": 1.0},  # a training record without evaluation: not a point
        {"step": 10, "stsb_dev": 60.0, "effective_rank": 120.0, "anisotropy": 0.3},
        {"step": 20, "stsb_dev": 40.0, "effective_rank": 50.0, "anisotropy": 0.95},
    ]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n{truncated")
    g = read_geometry(log, "c")
    assert g.steps == [0, 10, 20] and g.peak_rank_step == 10 and g.best_dev_step == 10
    assert len(g.warnings) == 2  # 50 < 120 / 2, and anisotropy 0.95 > 0.9
    recs[3]["effective_rank"], recs[3]["anisotropy"] = 61.0, 0.5
    log.write_text("\n".join(json.dumps(r) for r in recs))
    assert read_geometry(log, "c").warnings == []
