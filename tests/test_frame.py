"""`embeval.results.to_frame`: the results files' figures as one long DataFrame, with the
report's bootstrap intervals."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import BowEncoder, edit_json, scored_run, synthetic_run

from embeval.eval.data.tasks import simcse_avg_tasks
from embeval.eval.metrics import stats
from embeval.eval.report import build as report
from embeval.results import load_run, to_frame
from embeval.results.files import pairs_path

B = 200  # bootstrap resamples in tests
COLUMNS = ["run", "task", "subset", "split", "metric", "value", "ci_low", "ci_high"]


@pytest.fixture
def two_runs(tmp_path, tiny_data, fake_encoder):
    bow = scored_run(BowEncoder(), tiny_data, tmp_path / "bow.json", "bow")
    fake = scored_run(fake_encoder, tiny_data, tmp_path / "fake.json", "fake")
    return bow, fake


def one(df, **where):
    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (where, sel)
    return sel.iloc[0]


def test_values_are_the_files_figures_one_row_each(two_runs):
    df = to_frame(list(two_runs), n_boot=0)
    assert list(df.columns) == COLUMNS
    assert not df.duplicated(["run", "task", "subset", "metric"]).any()
    for path in two_runs:
        run = load_run(path)
        rows = df[df.run == run.name]
        for task, m in run.tasks.items():
            for metric in ("spearman", "pearson"):
                r = one(rows, task=task, subset="all", metric=metric)
                assert r.value == m[metric] and r.split == m["split"]
            for sub, sm in m.get("subsets", {}).items():
                assert one(rows, task=task, subset=sub, metric="spearman").value == sm["spearman"]
            for agg in ("mean", "wmean"):
                if agg in m.get("aggregates", {}):
                    want = m["aggregates"][agg]["pearson"]
                    assert one(rows, task=task, subset=agg, metric="pearson").value == want
        assert one(rows, task="Avg", metric="spearman").value == run.avg
        for k, v in run.diagnostics.items():
            if k not in ("source", "n_sentences", "n_positive_pairs"):
                assert one(rows, task="STSBenchmark", metric=k).value == v
        # every figure of the file, and nothing else: 2 per task + 2 per subset + 4 per
        # STS12-16 (mean, wmean) + Avg + the four diagnostics
        n_sub = sum(len(m.get("subsets", {})) for m in run.tasks.values())
        n_years = sum("subsets" in m for m in run.tasks.values())
        assert len(rows) == 2 * len(run.tasks) + 2 * n_sub + 4 * n_years + 1 + 4
    assert df[["ci_low", "ci_high"]].isna().all().all()  # n_boot=0: no intervals


def test_intervals_are_the_report_s(two_runs):
    """Same seed, same resamples: each task's and the Avg's interval equal the report's cells
    (those come from the paired path, all runs resampled together); another seed moves them."""
    df = to_frame(list(two_runs), n_boot=B, seed=3)
    r = report.build(list(two_runs), n_boot=B, seed=3, figures=False)
    (table,) = r.tables
    for row in table.rows:
        for task in [*simcse_avg_tasks(), "Avg"]:
            got = one(df, run=row.label, task=task, subset="all", metric="spearman")
            assert (got.ci_low, got.ci_high) == pytest.approx(row.cells[task].ci, abs=1e-9)
    other_seed = to_frame(two_runs[1], n_boot=B, seed=4)  # not a vacuous agreement:
    a = one(df, run="fake", task="STS12", subset="all", metric="spearman")
    b = one(other_seed, run="fake", task="STS12", subset="all", metric="spearman")
    assert a.ci_low < a.ci_high and (a.ci_low, a.ci_high) != (b.ci_low, b.ci_high)


def test_pearson_and_subset_intervals_from_stats(two_runs):
    """Pearson: same resamples as the task's Spearman; a subset: its own stream TASK/SUBSET."""
    df = to_frame(two_runs[0], n_boot=B)
    p = load_run(two_runs[0]).load_pairs()["STS12"]
    seed = stats.task_seed(stats.SEED, "STS12")
    r = one(df, task="STS12", subset="all", metric="pearson")
    want = stats.percentile_ci(stats.bootstrap_pearson(p["sim"], p["gold"], B, seed))
    assert (r.ci_low, r.ci_high) == pytest.approx(want)
    assert r.ci_low <= r.value <= r.ci_high
    m = p["subset"] == "MSRpar"
    sub_seed = stats.task_seed(stats.SEED, "STS12/MSRpar")
    want = stats.percentile_ci(stats.bootstrap_spearman(p["sim"][m], p["gold"][m], B, sub_seed))
    r = one(df, task="STS12", subset="MSRpar", metric="spearman")
    assert (r.ci_low, r.ci_high) == pytest.approx(want)
    for subset in ("mean", "wmean"):  # no interval for SentEval's aggregates
        assert math.isnan(one(df, task="STS12", subset=subset, metric="spearman").ci_low)
    assert math.isnan(one(df, task="STSBenchmark", metric="alignment").ci_high)


def test_transfer_rows_and_average(tmp_path):
    path = edit_json(
        synthetic_run(tmp_path / "t.json", "t", 0.3, split="test"),
        lambda d: (
            d["tasks"].update(
                MRPC={"split": "test", "n": 10, "accuracy": 71.5, "f1": 80.25, "C": 1.0}
            ),
            d.update(transfer_avg=71.5),
        ),
    )
    df = to_frame(path, n_boot=B)
    mrpc = df[df.task == "MRPC"].set_index("metric")
    assert mrpc.value.to_dict() == {"accuracy": 71.5, "f1": 80.25}
    assert mrpc.ci_low.isna().all() and set(mrpc.split) == {"test"}
    assert one(df, task="Avg", metric="accuracy").value == 71.5
    assert not math.isnan(one(df, task="STSBenchmark", metric="spearman").ci_low)


def test_paths_as_str_path_or_one(two_runs):
    a = to_frame([str(p) for p in two_runs], n_boot=0)
    b = to_frame(tuple(Path(p) for p in two_runs), n_boot=0)
    assert a.equals(b)
    single = to_frame(str(two_runs[1]), n_boot=0)
    assert set(single.run) == {"fake"} and single.equals(a[a.run == "fake"].reset_index(drop=True))


def test_runs_are_labelled_as_in_the_report(tmp_path, two_runs):
    """Two files of one name are told apart by their path; an int8 run is marked."""
    other = tmp_path / "other"
    other.mkdir()
    copy = other / "bow.json"
    shutil.copy(two_runs[0], copy)
    shutil.copy(pairs_path(two_runs[0]), pairs_path(copy))
    edit_json(copy, lambda d: d["meta"].update(quantize="int8"))
    df = to_frame([two_runs[0], copy], n_boot=0)
    labels = [lab for lab, _ in report.collect([two_runs[0], copy])[0]]
    assert list(dict.fromkeys(df.run)) == labels == [f"bow [{two_runs[0]}]", f"bow (int8) [{copy}]"]


def test_missing_pairs_file_gives_nan_intervals(tmp_path, caplog):
    path = synthetic_run(tmp_path / "r.json", "r", 0.3)
    pairs_path(path).unlink()
    r = one(to_frame(path, n_boot=B), task="STSBenchmark", metric="spearman")
    assert math.isnan(r.ci_low) and not math.isnan(r.value)
    assert "is missing" in caplog.text


def test_bootstrap_pearson_is_pearson_of_the_resampled_pairs():
    """Each resample b is rows idx_b of the same index matrix bootstrap_spearman draws."""
    rng = np.random.default_rng(0)
    pred, gold = rng.standard_normal(50), rng.standard_normal(50)
    r = stats.bootstrap_pearson(pred, gold, 5, seed=7)
    (idx,) = list(stats.resample_indices(50, 5, 7))
    want = [100 * np.corrcoef(pred[i], gold[i])[0, 1] for i in idx]
    assert r == pytest.approx(want)
