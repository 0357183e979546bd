"""Results files: type validation on load, and the tie between a JSON and its per-pair file."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from report_fixtures import edit_json, synthetic_run

from embeval.cli import main
from embeval.eval.results import ResultsError, load_run

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
