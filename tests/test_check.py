"""embeval check: exit codes 0 / 1 / 2, the one-line verdict, scoring a checkpoint first."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from report_fixtures import edit_json, synthetic_run

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.data.sts import load_sts
from embeval.results.files import load_run

BASELINE = Path(__file__).resolve().parents[1] / "reports/baselines/all-MiniLM-L6-v2-stsb-dev.json"


def cli(*args):
    return CliRunner().invoke(main, ["check", *map(str, args)])


@pytest.fixture
def base(tmp_path):
    return synthetic_run(tmp_path / "base.json", "base", noise=0.3)


def test_same_figures_pass(tmp_path, base):
    same = synthetic_run(tmp_path / "same.json", "same", noise=0.3)
    res = cli(same, "--baseline", base, "--bootstrap", 200)
    assert res.exit_code == 0, res.output
    v = load_run(base).tasks["STSBenchmark"]["spearman"]
    (line,) = res.output.strip().splitlines()
    assert line.startswith("OK: STSBenchmark dev Spearman")
    assert f"{v:.2f} (same) vs baseline {v:.2f} (base): +0.00 points" in line
    assert "p=1.000 (not significant at 0.05)" in line


def test_regression_fails_with_one_line_verdict(tmp_path, base):
    worse = synthetic_run(tmp_path / "worse.json", "worse", noise=0.6, seed=3)
    a = load_run(worse).tasks["STSBenchmark"]["spearman"]
    b = load_run(base).tasks["STSBenchmark"]["spearman"]
    assert b - a > 5  # the noisier run is clearly worse on these 400 pairs
    res = cli(worse, "--baseline", base, "--bootstrap", 200)
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("REGRESSION: ")
    assert f"Spearman {a:.2f} (worse) vs baseline {b:.2f} (base): {a - b:+.2f} points" in line
    assert "beyond tolerance 1.00" in line and "(significant at 0.05)" in line


def test_tolerance_decides(tmp_path, base):
    near = synthetic_run(tmp_path / "near.json", "near", noise=0.31, seed=1)
    diff = (
        load_run(near).tasks["STSBenchmark"]["spearman"]
        - load_run(base).tasks["STSBenchmark"]["spearman"]
    )
    assert -1.0 < diff < 0  # slightly worse, within the default tolerance
    assert cli(near, "--baseline", base, "--bootstrap", 200).exit_code == 0
    res = cli(near, "--baseline", base, "--tolerance", abs(diff) / 2, "--bootstrap", 200)
    assert res.exit_code == 1 and "REGRESSION" in res.output
    better = synthetic_run(tmp_path / "better.json", "better", noise=0.1, seed=4)
    res = cli(better, "--baseline", base, "--tolerance", 0, "--bootstrap", 200)
    assert res.exit_code == 0 and "within tolerance 0.00" in res.output


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("not_json", "is not valid JSON"),
        ("task_missing", "has no SICKRelatedness Spearman (tasks: STSBenchmark)"),
        ("partial", "partial (--limit 200) but baseline is full"),
        ("split", "scored STSBenchmark on the test split, not dev"),
        ("protocol", "protocol 'mteb', baseline 'simcse'"),
        ("pairs", "different pairs"),
        ("newer", "newer than this embeval reads"),
    ],
)
def test_unusable_input_exits_2(tmp_path, base, case, message):
    r = tmp_path / "r.json"
    args = []
    if case == "missing":
        r = tmp_path / "nope.json"
    elif case == "not_json":
        r.write_text('{"schema_version": 2, "tasks": {')  # truncated
    elif case == "task_missing":
        r = synthetic_run(r, "r", 0.3)
        args = ["--task", "sick"]
    elif case == "partial":
        r = edit_json(
            synthetic_run(r, "r", 0.3), lambda d: d["meta"].update(partial=True, limit=200)
        )
    elif case == "split":
        r = synthetic_run(r, "r", 0.3, split="test")
    elif case == "protocol":
        r = edit_json(synthetic_run(r, "r", 0.3), lambda d: d["meta"].update(protocol="mteb"))
    elif case == "pairs":
        r = synthetic_run(r, "r", 0.3, data_seed=9)
    elif case == "newer":
        r = edit_json(synthetic_run(r, "r", 0.3), lambda d: d.update(schema_version=99))
    res = cli(r, "--baseline", base, "--bootstrap", 50, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("nosuch", "unknown task 'nosuch'. Known tasks: STS12,"),
        ("stsx", "unknown task 'stsx'; did you mean STSBenchmark? Known tasks: STS12,"),
    ],
)
def test_unknown_task_message_reads_as_sentences(base, task, message):
    res = cli(base, "--baseline", base, "--task", task)
    assert res.exit_code == 2 and message in res.output


def test_missing_baseline_exits_2(tmp_path, base):
    res = cli(base, "--baseline", tmp_path / "nope.json")
    assert res.exit_code == 2 and "nope.json does not exist" in res.output


def test_checkpoint_is_scored_first(tmp_path, tiny_data):
    """A checkpoint argument (not a .json) is scored with the baseline's protocol, then checked."""
    backbone, tok = random_tiny(seed=0)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "tiny", "avg", 32)
    common = ["--data", tiny_data, "--no-cache", "--split", "test", "--bootstrap", 50]
    base = tmp_path / "base.json"
    res = CliRunner().invoke(
        main, ["score", str(ckpt), "--tasks", "stsb", "--out", str(base), *map(str, common[:3])]
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "again.json"
    res = cli(ckpt, "--baseline", base, "--out", out, *common)
    assert res.exit_code == 0, res.output
    assert "OK: STSBenchmark test Spearman" in res.output and "+0.00 points" in res.output
    assert load_run(out).tasks["STSBenchmark"]["n"] == 4


def test_committed_baseline_is_a_real_run_on_the_real_data(shared_data):
    """The CI baseline must hold STS-B dev exactly: same gold and sentences as the data files."""
    run = load_run(BASELINE)
    assert run.name == "all-MiniLM-L6-v2" and run.meta["partial"] is False
    assert run.meta["fingerprint"]  # written by a real encoder, not a fake
    p = run.load_pairs()["STSBenchmark"]
    d = load_sts("STSBenchmark", "dev", shared_data)
    np.testing.assert_array_equal(p["gold"], d.gold)
    assert list(p["s1"]) == d.s1 and list(p["s2"]) == d.s2
    assert run.tasks["STSBenchmark"]["n"] == 1500


def test_committed_baseline_describes_the_packaged_model_as_scored_today():
    """The baseline once predated the Normalize fix (no `normalize`, another fingerprint, effective
    rank 301.03 vs 306.77). The model settings are known without encoding, so this runs always.
    Regenerate with the settings `make gate` scores with: `embeval score --tasks stsb --split dev
    --no-cache --data ../shared/data --overwrite --out reports/baselines/<this file>.json`."""
    from embeval.eval.encoders.chain import build_encoder

    now = build_encoder(progress=False, no_cache=True).describe()
    meta = load_run(BASELINE).meta
    for key in ("checkpoint", "fingerprint", "pooler", "normalize", "max_length", "dtype"):
        assert meta.get(key) == now[key], key
    assert (meta["protocol"], meta["split"], meta["limit"]) == ("simcse", "dev", None)


@pytest.mark.slow
def test_packaged_model_passes_committed_baseline(shared_data, tmp_path):
    """The project's own CI gate: score all-MiniLM-L6-v2 on STS-B dev, check vs the baseline;
    the fresh run's figures and diagnostics equal the baseline's to 0.01."""
    now = tmp_path / "now.json"
    res = cli(
        "--baseline", BASELINE, "--data", shared_data, "--no-cache", "--out", now,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "OK: STSBenchmark dev Spearman" in res.output
    run, base = load_run(now), load_run(BASELINE)
    for key in ("fingerprint", "pooler", "normalize", "protocol", "max_length", "dtype"):
        assert run.meta[key] == base.meta[key], key
    got = {k: v for k, v in run.tasks["STSBenchmark"].items() if isinstance(v, float)}
    assert got == pytest.approx({k: base.tasks["STSBenchmark"][k] for k in got}, abs=0.01)
    for key in ("alignment", "uniformity", "anisotropy", "effective_rank"):
        assert run.diagnostics[key] == pytest.approx(base.diagnostics[key], abs=0.01), key


def test_a_pairs_file_of_another_run_is_named_in_the_verdict(tmp_path, base):
    """The gate still decides on the figures, but says why it has no p-value: the per-pair file
    beside the result belongs to another run (its run_id differs), not merely 'no files'."""
    other = synthetic_run(tmp_path / "other.json", "other", noise=0.5, seed=2)
    same = synthetic_run(tmp_path / "same.json", "same", noise=0.3)
    (tmp_path / "same.pairs.npz").write_bytes((tmp_path / "other.pairs.npz").read_bytes())
    assert other.exists()
    res = cli(same, "--baseline", base, "--bootstrap", 200)
    assert res.exit_code == 0, res.output
    (line,) = res.output.strip().splitlines()
    assert "paired bootstrap: unavailable (" in line
    assert "same.pairs.npz" in line and "no per-pair files" not in line


def test_another_post_processing_is_refused_unless_allowed(tmp_path, base):
    """A whitened result against a plain baseline would gate on whitening's effect; Normalize
    alone is no difference (cosines, hence Spearman, unchanged)."""
    whiten = {"name": "whiten", "fit_on": "target", "fit_size": {"STSBenchmark": 400}, "dim": 64}
    meta = {"postprocess": [whiten, {"name": "normalize", "fit_on": None}]}
    whitened = synthetic_run(tmp_path / "w.json", "w", noise=0.3, meta=meta)
    res = cli(whitened, "--baseline", base, "--bootstrap", 50)
    assert res.exit_code == 2, res.output
    assert "post-processed by ['whiten (fit on target) (dim 64)']" in res.output
    assert "baseline by nothing" in res.output and "--allow-postprocess" in res.output
    res = cli(whitened, "--baseline", base, "--bootstrap", 50, "--allow-postprocess")
    assert res.exit_code == 0 and res.output.startswith("OK: "), res.output
    normed = synthetic_run(tmp_path / "n.json", "n", noise=0.3, meta={"normalize": True})
    assert cli(normed, "--baseline", base, "--bootstrap", 50).exit_code == 0
