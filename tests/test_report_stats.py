"""The report's Avg interval and p-value, and the Markdown export's escaping of table syntax.

`seven_task_run` writes a full-test-split run whose seven STS tasks are the *same* synthetic
pairs (N = 300, gold uniform in [0, 5] rounded to 0.2, prediction = gold / 5 + Gaussian noise):
with one resampling stream for all tasks, sample b of every task would be identical and the Avg
interval as wide as one task's, which is what these tests can see.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from embeval.eval.metrics import similarity as metrics
from embeval.eval.metrics import stats
from embeval.eval.report import build as report
from embeval.eval.report import export
from embeval.eval.report.tables import AVG, Cell, Row, Table
from embeval.results.files import RunResult, load_run, save_run

# SimCSE's seven STS tasks, in its table's order (Gao et al., 2021, Table 1)
SIMCSE_STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]

B = 400  # bootstrap resamples
N = 300  # pairs per task


def seven_task_run(out: Path, name: str, noise: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(0)
    gold = np.round(rng.uniform(0, 5, N) * 5) / 5
    sim = gold / 5 + noise * np.random.default_rng(seed).standard_normal(N)
    rho = 100 * float(spearmanr(sim, gold)[0])
    pairs = {
        "sim": sim,
        "gold": gold,
        "subset": np.array(["x"] * N),
        "s1": np.array([f"a{i}" for i in range(N)]),
        "s2": np.array([f"b{i}" for i in range(N)]),
    }
    run = RunResult(
        name=name,
        meta={"protocol": "simcse", "split": "test", "limit": None, "partial": False},
        tasks={t: {"split": "test", "n": N, "spearman": rho} for t in SIMCSE_STS},
        avg=metrics.simcse_average([rho] * len(SIMCSE_STS)),
        pairs={t: dict(pairs) for t in SIMCSE_STS},
    )
    return save_run(run, out)


def _own_stream_samples(path: Path, seed: int = stats.SEED) -> dict[str, np.ndarray]:
    """Each task's bootstrap samples drawn from its own stream, recomputed from the pair file."""
    pairs = load_run(path).load_pairs()
    return {
        t: stats.bootstrap_spearman(pairs[t]["sim"], pairs[t]["gold"], B, stats.task_seed(seed, t))
        for t in SIMCSE_STS
    }


def test_task_streams_differ_between_tasks_and_repeat_within_one():
    a = np.concatenate(list(stats.resample_indices(50, 20, stats.task_seed(0, "STS12"))))
    b = np.concatenate(list(stats.resample_indices(50, 20, stats.task_seed(0, "STS13"))))
    again = np.concatenate(list(stats.resample_indices(50, 20, stats.task_seed(0, "STS12"))))
    np.testing.assert_array_equal(a, again)
    assert (a == b).mean() < 0.1  # independent rows agree on ~1/50 of positions
    assert stats.task_seed(0, "STS12") != stats.task_seed(1, "STS12")


def test_avg_interval_is_the_mean_of_seven_independent_task_samples(tmp_path):
    """Survivor 13 (Avg over six tasks) and the shared-seed defect of issue 14.

    The Avg interval must be the percentile interval of the per-resample mean of all seven tasks'
    samples, each task drawn from its own stream. The seven tasks here are identical, so with
    independent draws the Avg interval is about 1/sqrt(7) as wide as one task's (0.38); with one
    stream for all it would be exactly as wide (ratio 1).
    """
    path = seven_task_run(tmp_path / "r.json", "r", noise=0.3)
    (t,) = report.build([path], n_boot=B, figures=False).tables
    row = t.rows[0]
    samples = _own_stream_samples(path)
    expect = stats.percentile_ci(np.mean([samples[t] for t in SIMCSE_STS], axis=0))
    assert row.cells[AVG].ci == pytest.approx(expect, abs=1e-9)
    six = stats.percentile_ci(np.mean([samples[t] for t in SIMCSE_STS[:6]], axis=0))
    assert row.cells[AVG].ci != pytest.approx(six, abs=1e-6)
    task_lo, task_hi = row.cells["STSBenchmark"].ci
    lo, hi = row.cells[AVG].ci
    assert lo < row.cells[AVG].value < hi
    assert 0.25 < (hi - lo) / (task_hi - task_lo) < 0.55


def test_avg_p_value_pairs_the_runs_on_each_tasks_own_stream(tmp_path):
    base = seven_task_run(tmp_path / "base.json", "base", noise=0.3, seed=1)
    other = seven_task_run(tmp_path / "other.json", "other", noise=0.35, seed=2)
    (t,) = report.build([base, other], baseline="base", n_boot=B, figures=False).tables
    cell = t.rows[1].cells[AVG]
    pb, po = _own_stream_samples(base), _own_stream_samples(other)
    avg_b = np.mean([pb[t] for t in SIMCSE_STS], axis=0)
    avg_o = np.mean([po[t] for t in SIMCSE_STS], axis=0)
    assert cell.p == pytest.approx(stats.paired_p_value(avg_o, avg_b, cell.delta))
    task = t.rows[1].cells["STS14"]
    assert task.p == pytest.approx(stats.paired_p_value(po["STS14"], pb["STS14"], task.delta))


# ---------------------------------------------------------------- Markdown escaping
def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@pytest.mark.parametrize("name", ["a|b", "x | y | z", "back\\slash|pipe"])
def test_markdown_escapes_table_syntax_in_run_names(name):
    """A '|' in a run name must not add a column: every row keeps as many cell separators as
    the header (survivor 9: only '<' and '>' were tested)."""
    rows = [Row(lab, None, lab == name, {"STSBenchmark": Cell(80.0)}) for lab in (name, "plain")]
    table = Table("t", ("simcse", "test", None), False, ["STSBenchmark"], rows, name)
    header, rule, *body = export.md_table(table).splitlines()
    assert [_unescaped_pipes(line) for line in body] == [_unescaped_pipes(header)] * 2
    assert body[0].startswith("| " + name.replace("\\", "\\\\").replace("|", "\\|"))
