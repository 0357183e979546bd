"""Typed records: built from a results file's dicts and written back to exactly those dicts."""

import json
from pathlib import Path

import pytest
from report_fixtures import BowEncoder, edit_json, scored_run, synthetic_run

from embeval.results import ResultsError, load_run, records
from embeval.results.files import RunResult

HISTORIC = Path(__file__).parent / "historic_results" / "schema1-minilm-stsb-dev-limit200.json"
GOLDEN = Path(__file__).parent / "golden"


def same_json(a, b) -> bool:
    """Equal and in the same key order: what `json.dumps` would write byte for byte."""
    return json.dumps(a) == json.dumps(b)


def round_trips(run: RunResult) -> None:
    for task, rec in run.scores().items():
        assert same_json(rec.to_dict(), run.tasks[task]), task
    assert same_json(run.meta_record().to_dict(), run.meta)
    d = run.diagnostics_record()
    assert (d is None and run.diagnostics == {}) or same_json(d.to_dict(), run.diagnostics)


@pytest.mark.parametrize(
    "path",
    [HISTORIC, GOLDEN / "mteb" / "minilm-mteb-run.json"]
    + sorted((GOLDEN / "outputs").glob("score-*.json")),
    ids=lambda p: p.name,
)
def test_real_files_round_trip(path):
    """Today's files (a schema-1 file, the saved golden outputs of STS test/dev, mteb and the
    seven transfer tasks) give records whose dicts are the files' objects, keys in order."""
    data = json.loads(path.read_text())
    if "schema_version" in data:
        round_trips(load_run(path))
    else:  # golden outputs keep the figures of a results file, not the whole file
        run = RunResult(data["name"], {}, data["tasks"], diagnostics=data["diagnostics"])
        round_trips(run)


def test_fresh_run_round_trips_and_reads_typed(tmp_path, tiny_data):
    path = scored_run(BowEncoder(), tiny_data, tmp_path / "r.json", "r")
    run = load_run(path)
    round_trips(run)
    scores = run.scores()
    s12 = scores["STS12"]
    assert isinstance(s12, records.STSScore) and s12.task == "STS12"
    assert s12.spearman == run.tasks["STS12"]["spearman"] == s12.aggregates["all"].spearman
    assert s12.subsets["MSRpar"].n == run.tasks["STS12"]["subsets"]["MSRpar"]["n"]
    assert s12.metrics == {"spearman": s12.spearman, "pearson": s12.pearson}
    assert scores["STSBenchmark"].subsets == {} and scores["STSBenchmark"].split == "test"
    meta = run.meta_record()
    assert (meta.protocol, meta.split, meta.limit, meta.partial) == ("simcse", "test", None, False)
    assert meta.checkpoint == "bow" and meta.extra["fingerprint"] == "bow-v1"
    d = run.diagnostics_record()
    assert d.source == "STSBenchmark/test" and list(d.values) == [
        "alignment",
        "uniformity",
        "anisotropy",
        "effective_rank",
    ]
    assert d.values["uniformity"] == run.diagnostics["uniformity"]
    meta.data_checksums["STS12"] = "edited"  # a copy: the run's own dicts stay as loaded
    assert run.meta["data_checksums"]["STS12"] != "edited"


def test_transfer_record():
    entry = {"split": "test", "n": 4, "n_train": 10, "accuracy": 75.0, "dev_accuracy": 70.0,
             "C": 0.5, "f1": 80.0}  # fmt: skip
    rec = records.score_record("MRPC", entry)
    assert isinstance(rec, records.TransferScore) and rec.C == 0.5 and rec.n_train == 10
    assert rec.metrics == {"accuracy": 75.0, "f1": 80.0, "dev_accuracy": 70.0}
    assert same_json(rec.to_dict(), entry)
    cv = {"split": "10-fold CV", "accuracy": 80.0, "dev_accuracy": 79.0, "C": [1.0, 2.0], "n": 9}
    assert same_json(records.score_record("MR", cv).to_dict(), cv)  # another key order


def test_unknown_fields_are_kept():
    entry = {"split": "dev", "n": 3, "spearman": 50.0, "pearson": 40.0, "note": {"x": [1]}}
    rec = records.STSScore.from_dict(entry, task="T")
    assert rec.extra == {"note": {"x": [1]}} and same_json(rec.to_dict(), entry)
    diag = {"source": "A/b", "custom": 0.5, "label": "hand-made", "n_sentences": 3}
    d = records.Diagnostics.from_dict(diag)
    assert d.values == {"custom": 0.5} and d.extra == {"label": "hand-made"}
    assert same_json(d.to_dict(), diag)


def test_records_written_by_code_have_today_s_layout():
    """A writer may build a record: its dict is what `score` writes (fields in that order)."""
    d = records.Diagnostics("STSBenchmark/dev", 10, 2, {"alignment": 0.2, "uniformity": -3.0})
    assert same_json(
        d.to_dict(),
        {
            "source": "STSBenchmark/dev",
            "n_sentences": 10,
            "n_positive_pairs": 2,
            "alignment": 0.2,
            "uniformity": -3.0,
        },
    )
    s = records.STSScore("STSBenchmark", 80.0, 79.0, "dev", 5)
    assert same_json(s.to_dict(), {"split": "dev", "n": 5, "spearman": 80.0, "pearson": 79.0})


def test_entry_of_no_known_kind_is_refused_naming_it(tmp_path):
    path = edit_json(
        synthetic_run(tmp_path / "r.json", "r", 0.3),
        lambda d: d["tasks"].update(Odd={"split": "test", "n": 3}),
    )
    with pytest.raises(ResultsError, match="task Odd has none of spearman"):
        load_run(path).scores()
