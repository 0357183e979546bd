"""`embeval export RESULTS --format mteb --out DIR`: MTEB per-task result JSON.

Golden files: `tests/golden/mteb/minilm-mteb-run.json` is a real run,
  embeval score --protocol mteb --tasks STS13,STSBenchmark,SICK-R --data ../shared/data \\
      --name all-MiniLM-L6-v2-mteb --out tests/golden/mteb/minilm-mteb-run.json
(packaged all-MiniLM-L6-v2, CPU), and `tests/golden/mteb/expected/*.json` are what
`embeval export ... --out results/all-MiniLM-L6-v2/packaged` wrote from it, checked by hand
against mteb 2.26's TaskResult fields and task metadata (names, dataset revisions); the slow test
below loads an export with the real mteb package. The export is a pure function of the results
file (and the folder names), so the comparison is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.eval.data.tasks import TASKS
from embeval.eval.report.mteb_export import MTEB_VERSION, export_mteb
from embeval.eval.scoring.score import score
from embeval.results.files import ResultsError, load_run, save_run

GOLDEN = Path(__file__).parent / "golden" / "mteb"
RUN = GOLDEN / "minilm-mteb-run.json"
# embeval task -> (MTEB task name, dataset revision), read from the task records
MTEB_TASKS = {n: (t.mteb_name, t.mteb_revision) for n, t in TASKS.items() if t.mteb_name}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_export_matches_golden_files(tmp_path):
    out = tmp_path / "results" / "all-MiniLM-L6-v2" / "packaged"
    res = invoke("export", RUN, "--format", "mteb", "--out", out)
    assert res.exit_code == 0, res.output
    assert "model all-MiniLM-L6-v2, revision packaged" in res.output
    expected = sorted(p.name for p in (GOLDEN / "expected").glob("*.json"))
    assert sorted(p.name for p in out.iterdir()) == expected
    assert expected == ["SICK-R.json", "STS13.json", "STSBenchmark.json", "model_meta.json"]
    for name in expected:
        got = json.loads((out / name).read_text())
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
    assert len(list((tmp_path / "mteb").glob("*.json"))) == 3 + 1  # + model_meta.json


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
        "model_meta.json",
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


@pytest.mark.slow
def test_mteb_loader_sees_every_score(tmp_path):
    """mteb's own default loader, `ResultCache(tree).load_results()`, reads the export of a full
    mteb-protocol run: every task's main score, equal to ours / 100, under the model and revision
    of the folder names. The run: the golden run, with the four tasks it lacks (STS12, STS14-16)
    added with synthetic scores (70, 71, ...) so that all seven tasks are exported."""
    import mteb
    from mteb.models.model_meta import ModelMeta
    from packaging.version import Version

    run = load_run(RUN)
    for i, task in enumerate(t for t in MTEB_TASKS if t not in run.tasks):
        run.tasks[task] = {"split": "test", "n": 100, "spearman": 70.0 + i, "pearson": 60.0 + i}
    out = tmp_path / "results" / "my-org__my-model" / "rev1"
    export_mteb(run, out)
    ours = {MTEB_TASKS[t][0]: run.tasks[t]["spearman"] / 100 for t in MTEB_TASKS}

    results = mteb.ResultCache(tmp_path).load_results()
    (model,) = results.model_results
    assert (model.model_name, model.model_revision) == ("my-org/my-model", "rev1")
    got = {tr.task_name: tr.get_score() for tr in model.task_results}
    assert got == pytest.approx(ours) and len(got) == 7
    assert {tr.mteb_version for tr in model.task_results} == {MTEB_VERSION}
    assert Version(MTEB_VERSION) <= Version(mteb.__version__)  # no claim of a future release
    # The files also pass mteb's stricter checks: split/subset validation against each task's
    # metadata, and ModelMeta's own schema (it forbids unknown fields).
    strict = mteb.ResultCache(tmp_path).load_results(tasks=list(ours), validate_and_filter=True)
    assert {tr.task_name for tr in strict.model_results[0].task_results} == set(ours)
    meta = ModelMeta.model_validate_json_resolved((out / "model_meta.json").read_text())
    assert meta.name == "my-org/my-model" and meta.revision == "rev1"
    # Issue 14: our dataset revisions and main score are the ones mteb's task metadata declares.
    for name, revision in MTEB_TASKS.values():
        task_meta = mteb.get_task(name).metadata
        assert task_meta.dataset["revision"] == revision, name
        assert task_meta.main_score == "cosine_spearman" and task_meta.eval_splits == ["test"]
