"""The diagnostics registry: each unit is the pure metric of `similarity`, `score` measures every
registered one, and the CLI table and the report list them from the registry."""

import numpy as np
import pytest
from report_fixtures import scored_run

from embeval.cli.score import format_table
from embeval.eval.metrics import diagnostics as diag
from embeval.eval.metrics import similarity
from embeval.eval.report import build as report
from embeval.eval.scoring.score import score
from embeval.registry import UnknownUnit
from embeval.results.files import load_run

BUILT_IN = ["alignment", "uniformity", "anisotropy", "effective_rank"]


def test_built_in_units_their_needs_format_and_direction():
    assert diag.DIAGNOSTICS.names() == BUILT_IN  # also the order of results files' keys
    units = dict(diag.DIAGNOSTICS.items())
    assert units["alignment"].needs == diag.POSITIVES
    assert {units[n].needs for n in BUILT_IN[1:]} == {diag.SENTENCES}
    assert [units[n].label for n in BUILT_IN] == [
        "alignment",
        "uniformity",
        "anisotropy",
        "effective rank",
    ]
    assert [units[n].fmt for n in BUILT_IN] == [".3f", ".3f", ".3f", ".1f"]
    assert [units[n].higher_is_better for n in BUILT_IN] == [False, False, False, True]
    papers = {
        "alignment": "Wang & Isola 2020",
        "uniformity": "Wang & Isola 2020",
        "anisotropy": "Ethayarajh 2019",
        "effective_rank": "Roy & Vetterli 2007",
    }
    for name, paper in papers.items():
        assert paper in units[name].__doc__, name
    assert "alignment: Mean squared distance" in diag.DIAGNOSTICS.help()


def test_units_are_the_pure_metrics():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 30, 8)).astype(np.float32)
    units = dict(diag.DIAGNOSTICS.items())
    assert units["alignment"].fn(x, y) == similarity.alignment(x, y)
    for name in BUILT_IN[1:]:
        assert units[name].fn(x) == getattr(similarity, name)(x)


def test_measure_takes_positives_above_4_and_distinct_sentences():
    """Hand case: three pairs, gold 5, 4, 1: only the first is a positive (SimCSE: gold > 4,
    not >= 4); sentence 'a' appears twice and counts once."""
    vec = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "d": [-1.0, 0.0]}

    def vectors(texts):
        return np.array([vec[t] for t in texts], dtype=np.float32)

    out = diag.measure(["a", "a", "c"], ["b", "c", "d"], np.array([5.0, 4.0, 1.0]), vectors, "X/y")
    assert list(out) == ["source", "n_sentences", "n_positive_pairs", *BUILT_IN]
    assert out["source"] == "X/y" and out["n_sentences"] == 4 and out["n_positive_pairs"] == 1
    assert out["alignment"] == pytest.approx(2.0)  # ||(1,0) - (0,1)||^2 on the unit circle
    x = vectors(["a", "b", "c", "d"])
    assert out["uniformity"] == similarity.uniformity(x)
    assert out["effective_rank"] == similarity.effective_rank(x)
    none = diag.measure(["a"], ["b"], np.array([3.0]), vectors, "X/y")
    assert "alignment" not in none and none["n_positive_pairs"] == 0 and "uniformity" in none


def test_a_registered_diagnostic_is_scored_printed_and_reported(tmp_path, tiny_data, fake_encoder):
    """One registry entry is enough: score() measures it, the CLI table and the report card show
    it with its label and format, after the built-ins."""

    @diag.diagnostic(
        "mean_norm", needs=diag.SENTENCES, label="mean norm", fmt=".4f", higher_is_better=False
    )
    def mean_norm(x):
        """Mean L2 norm of the embeddings."""
        return float(np.linalg.norm(x, axis=1).mean())

    try:
        path = scored_run(fake_encoder, tiny_data, tmp_path / "r.json", "r", ["stsb"])
        run = load_run(path)
        assert list(run.diagnostics)[-2:] == ["effective_rank", "mean_norm"]
        assert run.diagnostics["mean_norm"] == pytest.approx(1.0, abs=1e-6)  # unit vectors
        assert "effective rank " in format_table(run) and "mean norm 1.0000" in format_table(run)
        card = report.run_card("r", run)
        assert [k for k, _ in card.diagnostics] == [
            "measured on",
            "alignment",
            "uniformity",
            "anisotropy",
            "effective rank",
            "mean norm",
        ]
        r = report.build([path], n_boot=0)
        assert ("mean norm", "Mean L2 norm of the embeddings", "lower is better") in r.diagnostics
        assert "Mean norm: Mean L2 norm of the embeddings; lower is better." in report.render_html(
            r
        )
    finally:
        diag.DIAGNOSTICS.remove("mean_norm")
    # The file still holds it: shown under its key, as any measure the registry no longer has.
    assert ("mean_norm", "1.000") in diag.formatted(load_run(path).diagnostics)


def test_cli_table_and_card_print_each_unit_in_its_format(tmp_path, tiny_data, fake_encoder):
    path = scored_run(fake_encoder, tiny_data, tmp_path / "r.json", "r", ["stsb"])
    d = load_run(path).diagnostics
    line = format_table(load_run(path)).splitlines()
    want = (
        f"STSBenchmark/test: alignment {d['alignment']:.3f}  uniformity {d['uniformity']:.3f}  "
        f"anisotropy {d['anisotropy']:.3f}  effective rank {d['effective_rank']:.1f}"
    )
    assert want in line
    card = dict(report.run_card("r", load_run(path)).diagnostics)
    assert card["effective rank"] == f"{d['effective_rank']:.1f}"
    assert card["measured on"] == "STSBenchmark/test"


def test_run_without_stsb_prints_no_diagnostics_line(tiny_data, fake_encoder):
    run = score(fake_encoder, ["STS12"], root=tiny_data)
    assert run.diagnostics == {} and "alignment" not in format_table(run)


def test_user_code_must_be_a_diagnostic():
    with pytest.raises(UnknownUnit, match="expected an embeval.eval.metrics.diagnostics.Diag"):
        diag.DIAGNOSTICS.get("embeval.eval.metrics.similarity:anisotropy")


def test_unknown_diagnostic_names_the_known_ones():
    with pytest.raises(UnknownUnit, match="did you mean 'uniformity'"):
        diag.DIAGNOSTICS.get("uniformty")


def test_needs_is_checked():
    with pytest.raises(ValueError, match="expected sentences or positives"):
        diag.Diagnostic(len, "pairs", "x", ".3f", True)
