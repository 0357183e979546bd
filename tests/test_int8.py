"""`--quantize int8`: ONNX Runtime int8 close to float32, recorded, cached, never mixed unmarked."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from report_fixtures import synthetic_run

from embeval.cli import main
from embeval.core.model import SentenceModel, random_tiny, save_checkpoint
from embeval.eval.encoders import int8
from embeval.eval.encoders.transformer import TransformerEncoder
from embeval.eval.report.build import build, collect, pick_baseline
from embeval.eval.report.export import to_markdown
from embeval.eval.scoring.check import CheckError, check
from embeval.results.files import ResultsError, load_run, save_run

pytest.importorskip("onnxruntime")

SENTS = [
    "a man is playing a guitar .",
    "the cat sat on the mat",
    "short",
    "stocks fell sharply on friday after the report on jobs was published",
    "a woman slices an onion .",
    "two dogs run across a field of grass",
]


@pytest.fixture(scope="module")
def tiny():
    backbone, tok = random_tiny(seed=0)
    return SentenceModel(backbone, "avg").eval(), tok


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_embeddings_close_to_float32(tiny):
    """Same tokenisation, batching and pooling; only the linear layers differ (int8 weights and
    activations), so each vector stays within a small angle of the float32 one."""
    model, tok = tiny
    f32 = TransformerEncoder(model, tok, batch_size=4, progress=False).encode(SENTS)
    enc = TransformerEncoder(model, tok, batch_size=4, progress=False, quantize="int8")
    q = enc.encode(SENTS)
    assert q.shape == f32.shape and q.dtype == np.float32
    cos = cosines(q, f32)
    assert cos.min() > 0.99, cos
    assert not np.allclose(q, f32, atol=1e-4)  # it did run the int8 model, not the torch one
    assert (
        enc.describe()["quantize"] == "int8"
        and "quantize" not in TransformerEncoder(model, tok, progress=False).describe()
    )
    assert enc.fingerprint.endswith(";quantize=int8")


def test_normalize_applies_to_int8(tmp_path, tiny):
    """A Normalize checkpoint gives unit vectors on the int8 path too (the encoder chain puts
    Normalize after the int8 model and the cache); the export is cached under the cache's onnx
    dir, keyed by the checkpoint's fingerprint, and reused by the next encoder."""
    from embeval.core.checkpoint import checkpoint_info
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.encoders.postprocess import Normalize

    backbone, tok = random_tiny(seed=1)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 32, normalize=True)
    kw = dict(batch_size=2, progress=False, quantize="int8")
    enc = build_encoder(str(ckpt), cache_dir=tmp_path / "cache", **kw)
    got = enc.encode(SENTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert enc.describe()["quantize"] == "int8" and enc.describe()["normalize"] is True
    path = int8.model_dir(tmp_path / "cache", checkpoint_info(ckpt).fingerprint) / int8.FILE
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name != int8.FILE]  # no temp left over

    def no_export(*a, **k):
        raise AssertionError("exported again")

    again = TransformerEncoder.from_checkpoint(str(ckpt), onnx_dir=tmp_path / "cache", **kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(int8, "export_int8", no_export)
        np.testing.assert_array_equal(Normalize().transform(again.encode(SENTS)), got)


def test_missing_onnxruntime_says_how_to_install(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    model, tok = tiny
    with pytest.raises(int8.QuantizeError, match=r"pip install 'embeval\[int8\]'"):
        TransformerEncoder(model, tok, quantize="int8")
    res = CliRunner().invoke(
        main, ["score", "--quantize", "int8", "--no-cache", "--out", str(tmp_path / "r.json")]
    )
    assert res.exit_code == 2 and "pip install 'embeval[int8]'" in res.output, res.output


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(dtype="bfloat16"), "quantizes float32 weights"),
        (dict(device="cuda"), "runs on the CPU"),
        (dict(quantize="int4"), "expected one of int8"),
    ],
)
def test_unsupported_combinations_refused(tiny, kw, msg):
    model, tok = tiny
    with pytest.raises(ValueError, match=msg):
        TransformerEncoder(model, tok, **{"quantize": "int8", **kw})


def test_score_records_int8_and_check_refuses_float32_baseline(tmp_path, tiny_data):
    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 32)
    common = ["--data", str(tiny_data), "--split", "test", "--tasks", "stsb"]
    common += ["--cache-dir", str(tmp_path / "cache")]
    f32, q8 = tmp_path / "f32.json", tmp_path / "int8.json"
    for out, extra in ((f32, []), (q8, ["--quantize", "int8"])):
        res = CliRunner().invoke(main, ["score", str(ckpt), *common, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
    assert load_run(q8).meta["quantize"] == "int8" and "quantize" not in load_run(f32).meta
    check_args = ["check", str(q8), "--baseline", str(f32), "--split", "test", "--bootstrap", "50"]
    res = CliRunner().invoke(main, check_args)
    assert res.exit_code == 2 and "result is int8" in res.output and "float32" in res.output
    res = CliRunner().invoke(main, [*check_args, "--allow-quantized"])
    assert res.exit_code in (0, 1) and "STSBenchmark test Spearman" in res.output, res.output
    # An int8 run does not silently replace the float32 run's file either.
    res = CliRunner().invoke(
        main, ["score", str(ckpt), *common, "--out", str(f32), "--quantize", "int8"]
    )
    assert res.exit_code == 2 and "quantize: None vs 'int8'" in res.output, res.output


def test_check_refuses_float32_result_against_int8_baseline(tmp_path):
    base = load_run(synthetic_run(tmp_path / "b.json", "b", 0.3, meta={"quantize": "int8"}))
    res = load_run(synthetic_run(tmp_path / "r.json", "r", 0.3))
    with pytest.raises(CheckError, match="result is float32 .* baseline is int8"):
        check(res, base, n_boot=20)
    assert check(res, base, n_boot=20, allow_quantized=True).ok


def test_report_marks_int8_runs(tmp_path):
    a = synthetic_run(tmp_path / "a.json", "minilm", 0.3)
    b = synthetic_run(tmp_path / "b.json", "minilm-q", 0.6, seed=3, meta={"quantize": "int8"})
    labelled = collect([a, b])[0]
    assert [lab for lab, _ in labelled] == ["minilm", "minilm-q (int8)"]
    assert pick_baseline(labelled, "minilm-q") == "minilm-q (int8)"
    # Beside the float32 baseline, the int8 row is marked and gets its difference and p-value.
    md = to_markdown(build([a, b], baseline="minilm", n_boot=50, figures=False))
    spearman = md.split("**STS Pearson")[0]  # its Pearson table follows (no p-values there)
    (row,) = [line for line in spearman.splitlines() if "minilm-q" in line]
    assert "minilm-q (int8)" in row and "(-" in row and "†" in row, md


def test_results_refuse_unknown_quantize(tmp_path):
    run = load_run(synthetic_run(tmp_path / "a.json", "a", 0.3))
    run.meta["quantize"] = "int3"
    save_run(run, tmp_path / "bad.json")
    with pytest.raises(ResultsError, match=r"meta\.quantize"):
        load_run(tmp_path / "bad.json")
