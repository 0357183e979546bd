"""--dims / --truncate: Matryoshka truncation, one encode per sweep, points equal single runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embeval.cli.app import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.encoders.chain import build_encoder
from embeval.eval.encoders.postprocess import PostProcessed
from embeval.eval.scoring import sweeps
from embeval.eval.scoring.score import score
from embeval.results.files import load_run


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=0, hidden=32, layers=1)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 32)


def test_truncation_keeps_the_first_coordinates_below_post_processing(fake_encoder):
    x = fake_encoder.encode(["a b", "c d e"])  # (2, 16), unit rows
    np.testing.assert_array_equal(
        sweeps.Truncated(fake_encoder, 4).encode(["a b", "c d e"]), x[:, :4]
    )
    chain = sweeps.with_truncation(PostProcessed(fake_encoder, "normalize"), 4)
    assert isinstance(chain, PostProcessed) and isinstance(chain.inner, sweeps.Truncated)
    y = chain.encode(["a b", "c d e"])  # truncated, then made unit length again
    np.testing.assert_allclose(
        y, x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True), rtol=1e-6
    )
    assert chain.describe()["truncate_dim"] == 4
    with pytest.raises(
        sweeps.SweepError, match="cannot truncate to 17 dimensions: the model's vectors have 16"
    ):
        sweeps.Truncated(fake_encoder, 17).encode(["a b"])


def test_truncation_keeps_each_post_processors_settings(fake_encoder):
    """A post-processor with settings of its own (whitening's fit set and K) is rebuilt above the
    truncation with those settings, as its own copy (a fit on full-width vectors is not shared)."""
    from embeval.eval.encoders.postprocess import Whiten

    unit = Whiten("target", 3)
    chain = sweeps.with_truncation(PostProcessed(fake_encoder, "whiten", unit), 8)
    assert isinstance(chain.inner, sweeps.Truncated)
    assert chain.unit is not unit and (chain.unit.fit_on, chain.unit.dim) == ("target", 3)
    assert chain.step() == {"name": "whiten", "fit_on": "target", "dim": 3}


def test_sweep_encodes_once_and_marks_each_point(tiny_data, fake_encoder):
    runs = sweeps.score_dims(fake_encoder, [2, 8, 16], name="fake", tasks=["sts"], root=tiny_data)
    assert len(fake_encoder.calls) == 1  # one encode for the three points
    assert [r.name for r in runs] == ["fake-dims2", "fake-dims8", "fake-dims16"]
    assert [r.meta["sweep"] for r in runs] == [
        {"axis": "dims", "value": d, "of": "fake"} for d in (2, 8, 16)
    ]
    assert runs[0].avg != runs[2].avg  # 2 coordinates do not rank pairs as 16 do
    full = score(fake_encoder, ["sts"], root=tiny_data, name="fake")
    assert runs[2].tasks == full.tasks  # all 16 dimensions: the untruncated run


def test_each_point_equals_the_single_truncated_run_exactly(tiny_ckpt, tiny_data):
    enc = build_encoder(str(tiny_ckpt), no_cache=True, progress=False)
    runs = sweeps.score_dims(enc, [4, 16], tasks=["stsb", "sick"], root=tiny_data)
    for d, run in zip([4, 16], runs, strict=True):
        single_enc = sweeps.with_truncation(
            build_encoder(str(tiny_ckpt), no_cache=True, progress=False), d
        )
        single = score(single_enc, ["stsb", "sick"], root=tiny_data)
        assert run.tasks == single.tasks  # bit for bit: same vectors, same metrics
        assert run.avg == single.avg
    assert sweeps.model_dim(enc) == 32


def test_cli_dims_refuses_a_size_above_the_model_before_encoding(tiny_ckpt, tiny_data, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "score",
            str(tiny_ckpt),
            "--dims",
            "8,64",
            "--tasks",
            "stsb",
            "--data",
            str(tiny_data),
            "--no-cache",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 2
    assert "cannot truncate to 64 dimensions: the model's vectors have 32" in res.output
    assert not list(tmp_path.glob("*.json"))
    res = CliRunner().invoke(main, ["score", "--dims", "8,x"])
    assert res.exit_code == 2 and "expected comma-separated integers" in res.output


def test_cli_dims_writes_one_file_per_point_and_a_table(tiny_ckpt, tiny_data, tmp_path):
    out = tmp_path / "r.json"
    args = ["score", str(tiny_ckpt), "--tasks", "stsb,sick", "--data", str(tiny_data), "--no-cache"]
    res = CliRunner().invoke(main, [*args, "--dims", "8,32", "--name", "tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].split() == ["dims", "STSBenchmark", "SICKRelatedness"]
    for d in (8, 32):
        run = load_run(tmp_path / f"r-dims{d}.json")
        assert run.name == f"tiny-dims{d}" and run.meta["truncate_dim"] == d
        assert run.meta["sweep"] == {"axis": "dims", "value": d, "of": "tiny"}
    single = tmp_path / "single.json"
    res = CliRunner().invoke(main, [*args, "--truncate", "8", "--out", str(single)])
    assert res.exit_code == 0, res.output
    assert load_run(single).tasks == load_run(tmp_path / "r-dims8.json").tasks
    assert "sweep" not in json.loads(single.read_text())["meta"]


def test_report_draws_each_sweep_with_the_tables_bands(tmp_path):
    from report_fixtures import synthetic_run

    from embeval.eval.report import build as report

    files = []
    for d, noise in ((32, 0.5), (64, 0.3), (128, 0.2)):  # a dims sweep: less noise, more dims
        sweep = {"axis": "dims", "value": d, "of": "m"}
        files.append(
            synthetic_run(tmp_path / f"d{d}.json", f"m-dims{d}", noise, meta={"sweep": sweep})
        )
    for layer, noise in ((2, 0.4), (6, 0.25)):  # a layer sweep with the same metadata shape
        sweep = {"axis": "layers", "value": layer, "of": "m"}
        files.append(
            synthetic_run(
                tmp_path / f"l{layer}.json", f"m-layers{layer}", noise, meta={"sweep": sweep}
            )
        )
    files.append(synthetic_run(tmp_path / "plain.json", "plain", 0.3))  # not a sweep point
    r = report.build(files, n_boot=100)
    assert [(s.axis, s.of) for s in r.sweeps] == [("dims", "m"), ("layers", "m")]
    dims = r.sweeps[0]
    assert dims.labels == ["m-dims32", "m-dims64", "m-dims128"]
    (stsb,) = dims.series  # no Avg: these runs scored STS-B alone
    assert stsb.label == "STSBenchmark" and stsb.x == [32, 64, 128]
    rows = {row.label: row.cells["STSBenchmark"] for row in r.tables[0].rows}
    assert stsb.y == [rows[f"m-dims{d}"].value for d in (32, 64, 128)]
    cis = [rows[f"m-dims{d}"].ci for d in (32, 64, 128)]
    assert list(zip(stsb.low, stsb.high, strict=True)) == cis
    assert all(lo < y < hi for lo, y, hi in zip(stsb.low, stsb.y, stsb.high, strict=True))
    assert stsb.y[0] < stsb.y[2]  # the synthetic noise falls with the dimension
    html = report.render_html(r)
    assert "<h2>Sweeps</h2>" in html and html.count('class="figure sweep"') == 2
    assert dims.plot.startswith("data:image/svg+xml;base64,") and dims.plot in html
    # one point alone is no sweep to draw; no figures asked, none drawn
    assert report.build(files[:1] + files[-1:], n_boot=0).sweeps == []
    assert report.build(files, n_boot=0, figures=False).sweeps == []
