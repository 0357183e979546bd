"""Results files: type validation on load, and the tie between a JSON and its per-pair file."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import edit_json, synthetic_run

from embeval.cli import main
from embeval.eval.report import build as report
from embeval.results.files import ResultsError, load_run, pairs_path, save_run

HISTORIC = Path(__file__).parent / "historic_results" / "schema1-minilm-stsb-dev-limit200.json"
GOLDEN_MTEB = Path(__file__).parent / "golden" / "mteb" / "minilm-mteb-run.json"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(
    "edit, field",
    [
        (
            lambda d: d["tasks"]["STSBenchmark"].update(spearman="abc"),
            "tasks.STSBenchmark.spearman",
        ),
        (lambda d: d["tasks"]["STSBenchmark"].update(pearson=None), "tasks.STSBenchmark.pearson"),
        (lambda d: d["tasks"]["STSBenchmark"].update(n="400"), "tasks.STSBenchmark.n"),
        (lambda d: d["tasks"].update(MR=[71.5]), "tasks.MR"),
        (lambda d: d.update(avg="80"), "avg"),
        (lambda d: d["diagnostics"].update(alignment="0.2"), "diagnostics.alignment"),
        (lambda d: d["meta"].update(limit="200"), "meta.limit"),
        (lambda d: d["meta"].update(partial="no"), "meta.partial"),
        (lambda d: d["meta"].update(split=1), "meta.split"),
        (lambda d: d.update(meta=None), "meta"),
    ],
)
def test_wrongly_typed_field_names_file_and_field(tmp_path, edit, field):
    path = edit_json(synthetic_run(tmp_path / "run.json", "run", 0.3), edit)
    with pytest.raises(ResultsError, match=f"{path}: field {field} is "):
        load_run(path)
    for args in (
        ("report", path, "--out", tmp_path / "r.html"),
        ("export", path, "--out", tmp_path / "m"),
    ):
        res = cli(*args)
        assert res.exit_code == 2 and f"{path}: field {field} is " in res.output, res.output
        assert "Unknown format code" not in res.output
    assert not (tmp_path / "r.html").exists()


def test_nan_metric_refused(tmp_path):
    path = synthetic_run(tmp_path / "run.json", "run", 0.3)
    path.write_text(path.read_text().replace('"alignment": ', '"alignment": NaN, "x": '))
    with pytest.raises(ResultsError, match="diagnostics.alignment is nan"):
        load_run(path)


@pytest.mark.parametrize("path", [HISTORIC, GOLDEN_MTEB])
def test_real_files_validate(path):
    assert load_run(path).tasks


def test_pairs_file_of_another_run_is_ignored_naming_both(tmp_path, caplog):
    """A .pairs.npz copied from another run (other gold, other sentences) must not feed the
    interval and p-value of this run; before, the report computed them from the wrong pairs."""
    a = synthetic_run(tmp_path / "a.json", "a", 0.3)
    b = synthetic_run(tmp_path / "b.json", "b", 0.1, seed=1, data_seed=5)
    shutil.copy(pairs_path(b), pairs_path(a))
    run = load_run(a)
    assert run.run_id and run.run_id != load_run(b).run_id
    with pytest.raises(
        ResultsError, match=f"per-pair file {pairs_path(a)} belongs to another run than {a}"
    ):
        run.load_pairs()
    r = report.build([a], n_boot=50)
    cell = r.tables[0].rows[0].cells["STSBenchmark"]
    assert cell.ci is None and cell.p is None
    assert any(str(a) in n and str(pairs_path(a)) in n for n in r.tables[0].notes)
    assert r.cards[0].dist_plot is None and "belongs to another run" in caplog.text


def test_run_id_ties_json_and_pairs(tmp_path):
    a = synthetic_run(tmp_path / "a.json", "a", 0.3)
    run = load_run(a)
    assert json.loads(a.read_text())["run_id"] == run.run_id
    assert len(run.load_pairs()["STSBenchmark"]["sim"]) == 400
    save_run(run, tmp_path / "copy.json")  # a new save is a new pair of files, with its own id
    assert load_run(tmp_path / "copy.json").run_id == run.run_id != load_run(a).run_id
    assert load_run(tmp_path / "copy.json").load_pairs()["STSBenchmark"]["gold"].shape == (400,)


def test_files_without_run_id_still_load_their_pairs():
    run = load_run(HISTORIC)
    assert run.run_id is None and len(run.load_pairs()["STSBenchmark"]["sim"]) == 200
