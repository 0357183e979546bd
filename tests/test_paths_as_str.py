"""Public functions of embeval.results and embeval.eval.report take a str wherever a path goes
(and a lone str where a list of paths goes: one file, not its letters)."""

import json

from report_fixtures import synthetic_run

from embeval.eval.report import build, mteb_export
from embeval.results import files, load_run, save_run


def test_results_functions_take_str(tmp_path):
    path = str(synthetic_run(tmp_path / "r.json", "r", 0.3))
    run = load_run(path)
    assert files.pairs_path(path) == tmp_path / "r.pairs.npz"
    assert set(files.load_pairs(str(tmp_path / "r.pairs.npz"), run.run_id, path)) == {
        "STSBenchmark"
    }
    again = str(tmp_path / "again.json")
    assert save_run(run, again) == tmp_path / "again.json"
    assert files.free_sibling(path) == tmp_path / "r-2.json"
    settings = files.run_settings(run.meta, run.tasks)
    assert files.differing_run(path, settings) == []
    assert files.differing_run(str(tmp_path / "none.json"), settings) is None
    labelled, _ = files.load_runs(path)
    assert [lab for lab, _ in labelled] == ["r"]


def test_report_functions_take_str(tmp_path):
    path = str(
        synthetic_run(tmp_path / "r.json", "r", 0.3, split="test", meta={"protocol": "mteb"})
    )
    log = tmp_path / "train_log.jsonl"
    log.write_text(json.dumps({"step": 1, "alignment": 0.2, "uniformity": -2.0}) + "\n")
    assert [lab for lab, _ in build.collect(path)[0]] == ["r"]
    r = build.build(path, train_logs=str(log), n_boot=20)
    assert r.runs == ["r"] and r.logs[0].points == 1
    assert build.read_train_log(str(log)).points == 1
    out = str(tmp_path / "r.html")
    assert build.write(build.render_html(r), out) == tmp_path / "r.html"
    folder = tmp_path / "mteb" / "org__model" / "rev"
    written = mteb_export.export_mteb(load_run(path), str(folder))
    assert written[-1] == folder / "model_meta.json"
    assert mteb_export.model_meta(load_run(path), str(folder))["name"] == "org/model"
