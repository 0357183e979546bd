"""embeval report: tables, statistics, grouping, bad input, escaping, exports (no browser)."""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from report_fixtures import BowEncoder, edit_json, scored_run, synthetic_run

from embeval.cli import main
from embeval.eval.metrics import stats
from embeval.eval.report import build as report
from embeval.eval.report import export
from embeval.results.files import (
    SCHEMA_VERSION,
    ResultsError,
    load_run,
    pairs_path,
    save_run,
)

# SimCSE's seven STS tasks, in its table's order (Gao et al., 2021, Table 1)
SIMCSE_STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]

HISTORIC = Path(__file__).parent / "historic_results" / "schema1-minilm-stsb-dev-limit200.json"
B = 200  # bootstrap resamples in tests


@pytest.fixture
def two_runs(tmp_path, tiny_data, fake_encoder):
    """Full tiny-data runs of a bag-of-words and a random (fake) encoder."""
    bow = scored_run(BowEncoder(), tiny_data, tmp_path / "bow.json", "bow")
    fake = scored_run(fake_encoder, tiny_data, tmp_path / "fake.json", "fake")
    return bow, fake


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_main_table_values_deltas_best_ci_p(two_runs):
    bow, fake = two_runs
    r = report.build([bow, fake], baseline="fake", n_boot=B, figures=False)
    (t,) = r.tables
    assert [row.label for row in t.rows] == ["fake", "bow"]  # baseline first
    assert t.columns == [*SIMCSE_STS, "Avg"]
    runs = {"bow": load_run(bow), "fake": load_run(fake)}
    for row in t.rows:
        for task in SIMCSE_STS:
            assert row.cells[task].value == runs[row.label].tasks[task]["spearman"]
        assert row.cells["Avg"].value == runs[row.label].avg
    cell = t.rows[1].cells["STSBenchmark"]
    base = t.rows[0].cells["STSBenchmark"]
    assert cell.delta == pytest.approx(cell.value - base.value)
    assert cell.best == (cell.value >= base.value) and base.best == (base.value >= cell.value)
    # CI and p-value recomputed independently from the per-pair files.
    pb, pf = runs["bow"].load_pairs()["STS12"], runs["fake"].load_pairs()["STS12"]
    sims = np.stack([pb["sim"], pf["sim"]])
    rho = stats.bootstrap_spearman(sims, pb["gold"], B, stats.task_seed(stats.SEED, "STS12"))
    c = t.rows[1].cells["STS12"]
    assert c.ci == pytest.approx(stats.percentile_ci(rho[0]))
    assert c.p == pytest.approx(stats.paired_p_value(rho[0], rho[1], c.delta))
    assert t.rows[0].cells["STS12"].p is None  # the baseline has no p-value against itself
    # The Avg interval averages the seven tasks' bootstrap samples.
    assert t.rows[0].cells["Avg"].ci is not None and t.rows[1].cells["Avg"].p is not None


def test_default_baseline_is_first_run(two_runs):
    r = report.build(list(two_runs), n_boot=0, figures=False)
    assert r.tables[0].rows[0].label == "bow" and r.tables[0].rows[0].baseline


def test_missing_tasks_are_missing_not_zero(tmp_path, tiny_data, fake_encoder):
    a = scored_run(BowEncoder(), tiny_data, tmp_path / "a.json", "a", ["STS12", "stsb"])
    b = scored_run(fake_encoder, tiny_data, tmp_path / "b.json", "b", ["stsb"])
    r = report.build([a, b], n_boot=B)
    t = r.tables[0]
    assert t.columns == ["STS12", "STSBenchmark"]
    miss = t.rows[1].cells["STS12"]
    assert miss.value is None and miss.ci is None and miss.delta is None and not miss.best
    html = report.render_html(r)
    assert 'class="missing" title="not scored in this run">—' in html
    assert "| b | — |" in export.to_markdown(r)
    rows = list(csv.DictReader(io.StringIO(export.to_csv(r))))
    (row,) = [x for x in rows if x["run"] == "b" and x["task"] == "STS12"]
    assert row["value"] == ""


def test_protocols_and_partial_runs_get_separate_tables(tmp_path, tiny_data, fake_encoder):
    full = scored_run(fake_encoder, tiny_data, tmp_path / "full.json", "full", ["stsb"])
    part = scored_run(fake_encoder, tiny_data, tmp_path / "part.json", "part", ["stsb"], limit=3)
    mteb = edit_json(
        Path(scored_run(fake_encoder, tiny_data, tmp_path / "m.json", "m", ["stsb"])),
        lambda d: d["meta"].update(protocol="mteb"),
    )
    r = report.build([full, part, mteb], baseline="full", n_boot=0, figures=False)
    titles = [t.title for t in r.tables]
    assert titles == [
        "protocol simcse · test split",
        "protocol simcse · test split · PARTIAL: first 3 pairs per task",
        "protocol mteb · test split",
    ]
    assert [[row.label for row in t.rows] for t in r.tables] == [["full"], ["part"], ["m"]]
    assert r.tables[1].partial and any("not comparable" in n for n in r.tables[1].notes)
    assert any("'full' is not in this table" in n for n in r.tables[2].notes)
    assert r.tables[1].rows[0].cells["STSBenchmark"].delta is None  # never vs the full run


def test_same_name_disambiguated_and_said(tmp_path, tiny_data, fake_encoder):
    a = scored_run(fake_encoder, tiny_data, tmp_path / "a.json", "model", ["stsb"])
    b = scored_run(BowEncoder(), tiny_data, tmp_path / "b.json", "model", ["stsb"])
    r = report.build([a, b], n_boot=0, figures=False)
    assert r.runs == [f"model [{a}]", f"model [{b}]"]
    assert any("2 runs are named 'model'" in n for n in r.notes)
    with pytest.raises(ResultsError, match="ambiguous"):
        report.build([a, b], baseline="model", n_boot=0, figures=False)
    assert (
        report.build([a, b], baseline=f"model [{b}]", n_boot=0)
        .tables[0]
        .baseline.endswith(f"[{b}]")
    )
    with pytest.raises(ResultsError, match="given twice"):
        report.build([a, tmp_path / "." / "a.json"], n_boot=0)


def test_unknown_baseline_did_you_mean(two_runs):
    with pytest.raises(ResultsError, match="did you mean 'fake'"):
        report.build(list(two_runs), baseline="fakee", n_boot=0)


def test_html_escapes_names_and_sentences(tmp_path, tiny_data, fake_encoder):
    evil = '<img src=x onerror=alert(1)> & "quoted"'
    path = scored_run(fake_encoder, tiny_data, tmp_path / "e.json", evil, ["stsb"])
    run = load_run(path)
    pairs = run.load_pairs()
    pairs["STSBenchmark"]["s1"] = pairs["STSBenchmark"]["s1"].astype(object)
    pairs["STSBenchmark"]["s1"][0] = "<script>alert('s')</script>"
    pairs["STSBenchmark"]["s1"] = pairs["STSBenchmark"]["s1"].astype(str)
    save_run(run, path)
    html = report.render_html(report.build([path], n_boot=B))
    assert "<img src=x" not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quoted&#34;" in html
    assert "&lt;script&gt;alert(&#39;s&#39;)&lt;/script&gt;" in html
    md = export.to_markdown(report.build([path], n_boot=0, figures=False))
    assert "\\<img src=x onerror=alert(1)\\>" in md


def test_empty_list_of_results(tmp_path):
    with pytest.raises(ResultsError, match="no results files given"):
        report.build([])
    res = cli("report", "--out", tmp_path / "r.html")
    assert res.exit_code == 2 and "no results files given" in res.output
    assert not (tmp_path / "r.html").exists()


def test_not_json_and_truncated(tmp_path, two_runs):
    bad = tmp_path / "bad.json"
    bad.write_text("hello")
    trunc = tmp_path / "trunc.json"
    trunc.write_text(Path(two_runs[0]).read_text()[:200])
    for f in (bad, trunc):
        res = cli("report", two_runs[0], f, "--out", tmp_path / "r.html")
        assert res.exit_code == 2 and f"{f} is not valid JSON" in res.output
    res = cli("report", tmp_path / "nope.json")
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "r.html").exists()


def test_newer_schema_refused_older_loads(tmp_path, two_runs):
    newer = edit_json(Path(two_runs[0]), lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    res = cli("report", newer, "--out", tmp_path / "r.html")
    assert res.exit_code == 2 and f"schema {SCHEMA_VERSION + 1}, newer" in res.output
    assert json.loads(HISTORIC.read_text())["schema_version"] < SCHEMA_VERSION
    r = report.build([HISTORIC], n_boot=B)
    (t,) = r.tables
    assert t.partial and t.rows[0].cells["STSBenchmark"].ci is not None
    assert r.cards[0].dist_plot and len(r.cards[0].worst) == report.N_WORST


def test_mismatched_pairs_give_no_p_value(tmp_path):
    a = synthetic_run(tmp_path / "a.json", "a", 0.3)
    b = synthetic_run(tmp_path / "b.json", "b", 0.3, seed=1, data_seed=5)  # other gold
    c = synthetic_run(tmp_path / "c.json", "c", 0.6, seed=2)  # same pairs, noisier
    t = report.build([a, b, c], n_boot=B, figures=False).tables[0]
    cb, cc = t.rows[1].cells["STSBenchmark"], t.rows[2].cells["STSBenchmark"]
    assert cb.p is None and "not the same pairs" in cb.note and cb.ci is not None
    assert cc.p is not None and cc.p < 0.05 and cc.delta < 0


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_pairs_file_still_reports(tmp_path, two_runs, damage):
    path = pairs_path(Path(two_runs[1]))
    if damage == "missing":
        path.unlink()
    else:  # a half-copied .npz is no zip file: a note naming it, not a traceback
        path.write_bytes(path.read_bytes()[:100])
    r = report.build(list(two_runs), n_boot=B)
    t = r.tables[0]
    assert t.rows[1].cells["STS12"].ci is None and "per-pair file" in t.rows[1].cells["STS12"].note
    assert any("per-pair file" in n for n in t.notes)
    assert r.cards[1].dist_plot is None and r.cards[0].dist_plot
    assert "no per-pair file" in report.render_html(r)


def test_subsets_and_transfer_hook(tmp_path, two_runs):
    edit_json(
        Path(two_runs[1]),
        lambda d: d["tasks"].update(MR={"split": "test", "n": 10, "accuracy": 71.5}),
    )
    r = report.build(list(two_runs), n_boot=0, figures=False)
    t = r.tables[0]
    assert "MR" not in t.columns  # the STS table only holds STS tasks
    assert t.other.columns == ["MR"]
    assert t.other.rows[0].cells["MR"].value is None and t.other.rows[1].cells["MR"].value == 71.5
    names, rows = t.subsets["STS13"]
    assert names == ["FNWN", "headlines", "OnWN"]
    assert (
        rows[1].cells["OnWN"].value
        == load_run(two_runs[1]).tasks["STS13"]["subsets"]["OnWN"]["spearman"]
    )
    html = report.render_html(r)
    assert "Other tasks (accuracy)" in html and "71.50" in html and "surprise.SMTnews" in html


def test_csv_names_each_average_by_its_metric(two_runs):
    """The STS Avg is a Spearman average, the transfer Avg an accuracy average."""
    edit_json(
        Path(two_runs[1]),
        lambda d: (
            d["tasks"].update(MR={"split": "test", "n": 10, "accuracy": 71.5}),
            d.update(transfer_avg=71.5),
        ),
    )
    r = report.build(list(two_runs), n_boot=0, figures=False)
    rows = list(csv.DictReader(io.StringIO(export.to_csv(r))))
    metric = {(x["run"], x["task"]): x["metric"] for x in rows if x["value"]}
    assert metric[("fake", "MR")] == "accuracy"
    assert metric[("fake", "Avg")] == "accuracy_avg"
    assert metric[("bow", "Avg")] == "spearman_avg"


def test_train_log_trajectory(tmp_path, two_runs, caplog):
    log = tmp_path / "simcse-run" / "train_log.jsonl"
    log.parent.mkdir()
    lines = [
        {"step": 0, "alignment": 0.10, "uniformity": -1.5, "stsb_dev": 60.0},
        {"step": 125, "loss": 2.1},  # no alignment: not a point
        {"step": 250, "alignment": 0.20, "uniformity": -2.5, "dev_spearman": 80.5},
        {"step": 375, "alignment": 0.22, "uniformity": -2.9, "stsb_dev": 79.0},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 500, "alig')
    lg = report.read_train_log(log)
    assert lg.label == "simcse-run" and lg.points == 3 and lg.skipped == 1
    assert lg.bad_lines == [5] and f"training log {log} line 5 skipped: not JSON" in caplog.text
    assert list(lg.trajectory.step) == [0, 250, 375] and max(lg.dev, key=lambda x: x[1]) == (
        250,
        80.5,
    )
    r = report.build(list(two_runs), train_logs=[log], n_boot=0)
    assert r.align_plot.startswith("data:image/svg+xml;base64,")
    assert any("skipped 1 line" in n and "(line 5)" in n for n in r.notes)
    res = cli(
        "report", two_runs[0], "--train-log", tmp_path / "none.jsonl", "--out", tmp_path / "x"
    )
    assert res.exit_code == 2 and "none.jsonl does not exist" in res.output


def test_worst_pairs_by_rank_gap():
    p = {
        "sim": np.array([0.9, 0.1, 0.5, 0.6]),
        "gold": np.array([0.0, 5.0, 2.0, 3.0]),
        "s1": np.array(list("abcd")),
        "s2": np.array(list("efgh")),
    }
    w = report.worst_pairs(p, k=2)
    # ranks: pred (4, 1, 2, 3), gold (1, 4, 2, 3): gaps 3, 3, 0, 0 -> pairs a and b
    assert [x["s1"] for x in w] == ["a", "b"] and w[0]["gap"] == 3


def test_cli_formats(tmp_path, two_runs):
    out = tmp_path / "r.html"
    res = cli("report", *two_runs, "--out", out, "--bootstrap", B)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert html.count("data:image/svg+xml;base64,") == 3  # align-uniformity + 2 distributions
    assert 'id="main-table-1"' in html and "<script" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # self-contained: nothing to fetch
    res = cli("report", *two_runs, "--format", "md", "--out", "-", "--bootstrap", B)
    assert res.exit_code == 0 and "| run | STS12 |" in res.output and "(baseline)" in res.output
    res = cli("report", *two_runs, "--format", "csv", "--out", tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 2 * 8 and {r["run"] for r in rows} == {"bow", "fake"}
    assert all(r["ci_low"] for r in rows)


def test_transfer_only_run_shows_only_its_tables(tmp_path):
    """No empty STS table in the HTML, no header-only Markdown table, no STS card sections."""
    path = edit_json(
        synthetic_run(tmp_path / "t.json", "transfer-only", 0.3, split="test"),
        lambda d: d.update(
            tasks={
                "MR": {"split": "10-fold CV", "n": 10, "accuracy": 71.5},
                "TREC": {"split": "test", "n": 10, "accuracy": 80.25},
            },
            diagnostics={},
        ),
    )
    r = report.build([path], n_boot=B)
    (t,) = r.tables
    assert t.columns == [] and t.other.columns == ["MR", "TREC"]
    html = report.render_html(r)
    assert 'id="main-table-1"' not in html and "STS results" not in html
    assert html.count("<table") == 1 and "71.50" in html and "80.25" in html
    assert "no per-pair file" not in html and "measured on" not in html
    md = export.to_markdown(report.build([path], n_boot=0, figures=False))
    tables = [ln for ln in md.splitlines() if ln.startswith("| run |")]
    assert tables == ["| run | MR | TREC |"] and "STS Spearman" not in md
    assert "| transfer-only | 71.50 | 80.25 |" in md


@pytest.mark.parametrize("where", ["/sys/r.html", "folder"])
def test_out_errors_name_the_users_path(tmp_path, two_runs, where):
    """Not the temporary file the atomic write goes through (`.r.html.XXXX.tmp`)."""
    out = Path(where) if where.startswith("/") else tmp_path / where
    if where == "folder":
        out.mkdir()
        with pytest.raises(ResultsError, match=f"cannot write the report to {out}: Is a dir"):
            report.write("x", out)
        return
    res = cli("report", two_runs[0], "--out", out, "--bootstrap", 0)
    assert res.exit_code == 2 and f"cannot write the report to {out}: " in res.output
    assert ".tmp" not in res.output, res.output


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures a report draws, kept open for inspection (title -> axes)."""
    from embeval.eval.report import plots

    drawn = {}
    real = plots.to_data_uri

    def keep(fig, fmt="svg"):
        ax = fig.axes[0]
        drawn[ax.get_title()] = {
            "ylim": ax.get_ylim(),
            "lines": {ln.get_label(): ln.get_color() for ln in ax.get_lines()},
            "texts": [t.get_text() for t in ax.texts if t.get_text()],
        }
        return real(fig, fmt)

    monkeypatch.setattr(plots, "to_data_uri", keep)
    return drawn


def test_similarity_plots_share_one_y_range(two_runs, figures):
    r = report.build(list(two_runs), n_boot=0)
    sims = [c.dist_pairs["sim"] for c in r.cards]
    assert (sims[0].min(), sims[0].max()) != (sims[1].min(), sims[1].max())
    limits = {figures[f"{c.label}: STSBenchmark"]["ylim"] for c in r.cards}
    (lo, hi), *rest = limits
    assert not rest  # one range for both figures ...
    assert lo <= min(s.min() for s in sims) and hi >= max(s.max() for s in sims)  # ... fits both


def test_trajectory_linked_to_its_run_and_labels_apart(tmp_path, figures):
    train = tmp_path / "simcse-run"
    train.mkdir()
    log = train / "train_log.jsonl"
    steps = [(0, 0.2000, -2.0000), (125, 0.2001, -2.0002), (250, 0.2002, -2.0003)]  # barely moves
    log.write_text(
        "\n".join(
            json.dumps(dict(zip(("step", "alignment", "uniformity"), s, strict=True)))
            for s in steps
        )
    )
    run = edit_json(
        synthetic_run(tmp_path / "best.json", "best", 0.3),
        lambda d: d["meta"].update(
            checkpoint=str(train / "best"), checkpoint_path=str(train / "best")
        ),
    )
    other = synthetic_run(tmp_path / "other.json", "other", 0.5)
    r = report.build([other, run], train_logs=[log], n_boot=0)
    (lg,) = r.logs
    assert lg.run == "best" and lg.trajectory.label == "best (training)"
    fig = figures["Alignment–uniformity (SimCSE Fig. 2)"]
    assert fig["lines"]["best (training)"] == fig["lines"]["best"] != fig["lines"]["other"]
    assert [t for t in fig["texts"] if "step" in t] == ["steps 0–250"]  # one label, not two on top
    assert "training of run best" in report.render_html(r)
    moved = report.plots.Trajectory("t", np.array([0, 9]), np.array([0.1, 0.3]), np.array([-1, -2]))
    labels = report.plots.step_labels(moved, (-3.0, 0.0), (0.0, 0.5))
    assert [text for text, _ in labels] == ["step 0", "step 9"]


def test_single_run_is_no_baseline_and_pearson_is_shown(tmp_path):
    path = synthetic_run(tmp_path / "only.json", "only", 0.3)
    run = load_run(path)
    r = report.build([path], n_boot=B)
    html = report.render_html(r)
    assert '<span class="sub">baseline</span>' not in html and 'class="baseline"' not in html
    md = export.to_markdown(report.build([path], n_boot=0, figures=False))
    assert "(baseline)" not in md and "| only |" in md
    pearson = f"{run.tasks['STSBenchmark']['pearson']:.2f}"
    assert "Pearson ×100" in html and pearson in html
    assert (
        r.tables[0].pearson.rows[0].cells["STSBenchmark"].value
        == run.tasks["STSBenchmark"]["pearson"]
    )


def test_pearson_in_markdown_and_csv(two_runs):
    """Pearson r, stored beside Spearman, was only in the HTML: the Markdown export has its
    table, the CSV a `pearson` column on each STS task's line (empty for the averages)."""
    r = report.build(list(two_runs), n_boot=0, figures=False)
    runs = {"bow": load_run(two_runs[0]), "fake": load_run(two_runs[1])}
    rows = list(csv.DictReader(io.StringIO(export.to_csv(r))))
    assert len(rows) == 2 * 8
    for row in rows:
        if row["task"] == "Avg":
            assert row["pearson"] == ""
        else:
            want = runs[row["run"]].tasks[row["task"]]["pearson"]
            assert row["pearson"] == f"{want:.4f}"
            assert row["value"] == f"{runs[row['run']].tasks[row['task']]['spearman']:.4f}"
    md = export.to_markdown(r)
    head, pearson = md.split("**STS Pearson ×100, protocol simcse · test split**")
    fake = runs["fake"].tasks["STS13"]["pearson"]
    line = next(x for x in pearson.splitlines() if x.startswith("| fake |"))
    assert f"{fake:.2f}" in line.split(" | ")[2]  # STS13 is the second column
    assert "| run | STS12 | STS13 |" in pearson
