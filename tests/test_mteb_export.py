"""`embeval export RESULTS --format mteb --out DIR`: MTEB per-task result JSON.

Golden files: `tests/golden/mteb/minilm-mteb-run.json` is a real run,
  embeval score --protocol mteb --tasks STS13,STSBenchmark,SICK-R --data ../shared/data \\
      --name all-MiniLM-L6-v2-mteb --out tests/golden/mteb/minilm-mteb-run.json
(packaged all-MiniLM-L6-v2, CPU), and `tests/golden/mteb/expected/*.json` are what
`embeval export` wrote from it, checked by hand against mteb 2.26's TaskResult fields and task
metadata (names, dataset revisions). The export is a pure function of the results file, so the
comparison is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.eval.mteb_export import MTEB_TASKS, export_mteb
from embeval.eval.results import ResultsError, load_run, save_run
from embeval.eval.score import score

GOLDEN = Path(__file__).parent / "golden" / "mteb"
RUN = GOLDEN / "minilm-mteb-run.json"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_export_matches_golden_files(tmp_path):
    res = invoke("export", RUN, "--format", "mteb", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    expected = sorted(p.name for p in (GOLDEN / "expected").glob("*.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    assert expected == ["SICK-R.json", "STS13.json", "STSBenchmark.json"]
    for name in expected:
        got = json.loads((tmp_path / name).read_text())
        assert got == json.loads((GOLDEN / "expected" / name).read_text()), name


def test_golden_layout_and_values():
    """The MTEB TaskResult layout, and the scores are the run's Spearman / 100."""
    run = load_run(RUN)
    assert run.meta["protocol"] == "mteb" and run.tasks["SICKRelatedness"]["n"] == 9927
    sick = json.loads((GOLDEN / "expected" / "SICK-R.json").read_text())
    assert set(sick) >= {"dataset_revision", "task_name", "mteb_version", "scores"}
    assert {"evaluation_time", "kg_co2_emissions"} <= set(sick)
    (entry,) = sick["scores"]["test"]
    assert entry["main_score"] == entry["cosine_spearman"]
    assert entry["main_score"] == pytest.approx(run.tasks["SICKRelatedness"]["spearman"] / 100)
    assert entry["hf_subset"] == "default" and entry["languages"] == ["eng-Latn"]
    assert sick["dataset_revision"] == MTEB_TASKS["SICKRelatedness"][1]
    stsb = json.loads((GOLDEN / "expected" / "STSBenchmark.json").read_text())
    # the published MTEB figure of all-MiniLM-L6-v2 on STSBenchmark is 0.8203 (the data README)
    assert stsb["scores"]["test"][0]["main_score"] == pytest.approx(0.8203, abs=5e-5)


def test_partial_run_refused(tmp_path):
    run = load_run(RUN)
    run.meta = {**run.meta, "limit": 200, "partial": True}
    path = save_run(run, tmp_path / "partial.json")  # export reads only the JSON
    res = invoke("export", path, "--out", tmp_path / "mteb")
    assert res.exit_code == 2 and "partial run (--limit 200)" in res.output
    assert not (tmp_path / "mteb").exists()


def test_limit_that_cut_nothing_is_exported(tmp_path):
    """`--limit` at or above every task's size scores the whole tasks: a complete run."""
    run = load_run(RUN)
    run.meta = {**run.meta, "limit": 9927, "partial": False}  # SICK-R, the largest, has 9927
    path = save_run(run, tmp_path / "limit-all.json")
    res = invoke("export", path, "--out", tmp_path / "mteb")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "mteb").glob("*.json"))) == 3


def test_real_limit_run_refused(tmp_path):
    """The schema-1 fixture is a real `--limit 200` run."""
    src = Path(__file__).parent / "historic_results" / "schema1-minilm-stsb-dev-limit200.json"
    with pytest.raises(ResultsError, match="partial run"):
        export_mteb(load_run(src), tmp_path)


def test_simcse_protocol_and_dev_split_refused(fake_encoder, tiny_data, tmp_path):
    run = score(fake_encoder, ["stsb"], root=tiny_data)
    with pytest.raises(ResultsError, match="--protocol simcse.*--protocol mteb"):
        export_mteb(run, tmp_path)
    run.meta["protocol"] = "mteb"
    run.meta["split"] = "dev"
    with pytest.raises(ResultsError, match="MTEB reports test splits"):
        export_mteb(run, tmp_path)


def test_transfer_tasks_skipped(tmp_path):
    run = load_run(RUN)
    run.tasks = {**run.tasks, "MR": {"split": "10-fold CV", "n": 10662, "accuracy": 77.0}}
    path = save_run(run, tmp_path / "with-mr.json")
    res = CliRunner().invoke(main, ["export", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0 and "skipped MR: no MTEB counterpart" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "SICK-R.json",
        "STS13.json",
        "STSBenchmark.json",
    ]


def test_out_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        export_mteb(load_run(RUN), blocker)


def test_only_transfer_tasks(tmp_path):
    run = load_run(RUN)
    run.tasks = {"MR": {"split": "10-fold CV", "n": 10, "accuracy": 77.0}}
    with pytest.raises(ResultsError, match="no STS task to export"):
        export_mteb(run, tmp_path)
