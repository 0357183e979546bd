"""`to_frame(paths)`: every figure of one or more runs as one long pandas DataFrame.

One row per (run, task, subset, metric), columns COLUMNS:
- run: the label the report gives the run (`load_runs`: its name, `(int8)` when quantized, the
  file in brackets when two runs share a name);
- task: STS or transfer task; `Avg` for a run's averages (metric spearman: SimCSE's Avg. of the
  seven STS tasks; metric accuracy: the seven transfer tasks'); for diagnostics, the task they
  were measured on (`diagnostics.source`);
- subset: `all` for a task's own figure (STS12-16: all subsets pooled, SimCSE's `all`), else a
  subset of STS12-16 (MSRpar, ...) or one of SentEval's aggregates `mean` and `wmean`;
- split, metric (spearman, pearson, accuracy, f1, dev_accuracy, or a diagnostic's name), value
  (as the results file holds it, x100 for correlations and accuracies);
- ci_low, ci_high: 95 % percentile bootstrap interval over pairs (`embeval.eval.metrics.stats`)
  from the run's .pairs.npz, for STS Spearman and Pearson of a task, of each subset, and of the
  STS Avg; NaN where there is none (transfer tasks, diagnostics, `mean`/`wmean`, no per-pair
  file, ``n_boot=0``).

The intervals are the report's: a task resamples its pairs from `stats.task_seed(seed, task)`
with the same `n_boot`, so `embeval report --seed S` and `to_frame(..., seed=S)` print the same
interval for each task and for the Avg. A subset draws from the stream of ``"TASK/SUBSET"``; a
task's Pearson interval uses the same resamples as its Spearman one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from embeval.eval.data.tasks import simcse_avg_tasks
from embeval.eval.metrics import stats
from embeval.results.files import ResultsError, RunResult, load_runs
from embeval.results.records import STSScore

log = logging.getLogger(__name__)
COLUMNS = ("run", "task", "subset", "split", "metric", "value", "ci_low", "ci_high")
ALL = "all"  # the subset of a task's own figure
AVG = "Avg"  # the task of a run's averages, as in the report's tables
NO_CI = (float("nan"), float("nan"))


def to_frame(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    n_boot: int = stats.N_BOOT,
    seed: int = stats.SEED,
) -> pd.DataFrame:
    """Long DataFrame of every figure of the results files `paths` (one path or several, str or
    Path), with bootstrap intervals (see the module docstring); ``n_boot=0``: no intervals."""
    labelled, _ = load_runs(paths)
    rows = [row for label, run in labelled for row in run_rows(label, run, n_boot, seed)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def run_rows(label: str, run: RunResult, n_boot: int, seed: int) -> list[tuple]:
    """The frame's rows of one run."""
    pairs = _pairs(run) if n_boot > 0 else {}
    rows, samples = [], {}  # samples: task -> (B,) Spearman resamples, for the Avg interval
    split = (run.meta or {}).get("split")
    for task, rec in run.scores().items():
        s = rec.split or split
        if not isinstance(rec, STSScore):  # transfer: no per-pair file, no interval
            rows += [(label, task, ALL, s, m, v, *NO_CI) for m, v in rec.metrics.items()]
            continue
        p = pairs.get(task)
        ci = _intervals(p["sim"], p["gold"], n_boot, stats.task_seed(seed, task)) if p else {}
        if p:
            samples[task] = ci.pop("samples")
        rows += [(label, task, ALL, s, m, v, *ci.get(m, NO_CI)) for m, v in rec.metrics.items()]
        for name, sub in rec.subsets.items():
            ci = {}
            if p:
                m = np.asarray(p["subset"]) == name
                ci = _intervals(
                    p["sim"][m], p["gold"][m], n_boot, stats.task_seed(seed, f"{task}/{name}")
                )
            figures = {"spearman": sub.spearman, "pearson": sub.pearson}
            rows += [
                (label, task, name, s, k, v, *ci.get(k, NO_CI))
                for k, v in figures.items()
                if v is not None
            ]
        for name, agg in rec.aggregates.items():
            if name != ALL:  # `all` is the task's own figure, above
                figures = {"spearman": agg.spearman, "pearson": agg.pearson}
                rows += [
                    (label, task, name, s, k, v, *NO_CI)
                    for k, v in figures.items()
                    if v is not None
                ]
    if run.avg is not None:  # the report's rule: an interval when all seven tasks have pairs
        ci = NO_CI
        avg_tasks = simcse_avg_tasks()
        if all(t in samples for t in avg_tasks):
            ci = stats.percentile_ci(np.mean([samples[t] for t in avg_tasks], axis=0))
        rows.append((label, AVG, ALL, split, "spearman", run.avg, *ci))
    if run.transfer_avg is not None:
        rows.append((label, AVG, ALL, "test", "accuracy", run.transfer_avg, *NO_CI))
    d = run.diagnostics_record()
    if d is not None:
        task, _, where = (d.source or "").partition("/")
        rows += [(label, task, ALL, where, k, v, *NO_CI) for k, v in d.values.items()]
    return rows


def _pairs(run: RunResult) -> dict:
    """The run's per-pair arrays; {} (NaN intervals) when its .pairs.npz is missing or not its."""
    if not any(isinstance(r, STSScore) for r in run.scores().values()):
        return {}
    try:
        return run.load_pairs()
    except ResultsError as exc:
        log.warning("%s: no confidence intervals", exc)
        return {}


def _intervals(sim: np.ndarray, gold: np.ndarray, n_boot: int, seed: stats.Seed) -> dict:
    """95 % intervals of Spearman and Pearson on the same resamples, and the Spearman samples."""
    rho = stats.bootstrap_spearman(sim, gold, n_boot, seed)  # (B,)
    r = stats.bootstrap_pearson(sim, gold, n_boot, seed)  # (B,)
    return {
        "spearman": stats.percentile_ci(rho),
        "pearson": stats.percentile_ci(r),
        "samples": rho,
    }
