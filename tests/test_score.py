"""score() end to end on tiny data with a fake encoder, results files, and the score CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.data.paths import DataError
from embeval.eval.data.sts import load_sts
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.metrics import similarity as metrics
from embeval.eval.scoring.score import score
from embeval.results.files import ResultsError, load_run, save_run

# SimCSE's seven STS tasks, in its table's order (Gao et al., 2021, Table 1)
SIMCSE_STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]


def test_score_all_tasks_on_tiny_data(fake_encoder, tiny_data):
    run = score(fake_encoder, root=tiny_data)
    assert list(run.tasks) == list(SIMCSE_STS)
    # Every distinct sentence of every task went to the encoder once, in one call.
    (call,) = fake_encoder.calls
    assert len(call) == len(set(call))
    d = load_sts("STS12", root=tiny_data)
    sim = metrics.pair_cosine(fake_encoder.encode(d.s1), fake_encoder.encode(d.s2))
    assert run.tasks["STS12"]["spearman"] == pytest.approx(
        metrics.correlations(sim, d.gold)["spearman"]
    )
    assert set(run.tasks["STS12"]["subsets"]) == {
        "MSRpar",
        "MSRvid",
        "SMTeuroparl",
        "surprise.OnWN",
        "surprise.SMTnews",
    }
    assert run.avg == pytest.approx(
        metrics.simcse_average([run.tasks[t]["spearman"] for t in SIMCSE_STS])
    )
    assert run.diagnostics["source"] == "STSBenchmark/test"
    assert run.meta["partial"] is False and run.meta["protocol"] == "simcse"


def test_diagnostics_only_from_a_scored_stsb(fake_encoder, tiny_data):
    """STS-B is not loaded and encoded for diagnostics when the run does not score it."""
    for split in ("train", "dev", "test"):  # sentences no other task has
        f = tiny_data / "sts" / "STSBenchmark" / f"sts-{split}.csv"
        f.write_text(f.read_text().replace("a cat sits", "only in stsb"))
    run = score(fake_encoder, ["STS12"], root=tiny_data)
    assert run.diagnostics == {} and not any("only in stsb" in s for s in fake_encoder.calls[0])
    run = score(fake_encoder, ["STS12", "stsb"], root=tiny_data, split="test")
    assert run.diagnostics["source"] == "STSBenchmark/test"
    assert run.diagnostics["n_sentences"] == len(
        {*run.pairs["STSBenchmark"]["s1"], *run.pairs["STSBenchmark"]["s2"]}
    )


def test_dev_split_default_tasks(fake_encoder, tiny_data):
    run = score(fake_encoder, split="dev", root=tiny_data)
    assert list(run.tasks) == ["STSBenchmark", "SICKRelatedness"] and run.avg is None


def test_limit_marks_partial(fake_encoder, tiny_data):
    run = score(fake_encoder, ["stsb"], root=tiny_data, limit=3)
    assert run.tasks["STSBenchmark"]["n"] == 3 and run.meta["partial"] is True
    full = score(fake_encoder, ["stsb"], root=tiny_data)
    n = full.tasks["STSBenchmark"]["n"]
    for limit in (n, n + 1):  # a limit at or above the task's size cuts nothing: complete
        run = score(fake_encoder, ["stsb"], root=tiny_data, limit=limit)
        assert run.meta["partial"] is False and run.meta["limit"] == limit
        assert run.tasks["STSBenchmark"] == full.tasks["STSBenchmark"]
    run = score(fake_encoder, ["stsb", "STS12"], root=tiny_data, limit=n)  # STS12 has 20 pairs
    assert run.tasks["STS12"]["n"] == n and run.meta["partial"] is True  # one task cut: partial
    # STS12's first subset has 4 scored pairs here: 5 leaves the second one a single pair.
    with pytest.raises(DataError, match=r"--limit 5 leaves STS12 subset \S+ with 1 pair"):
        score(fake_encoder, ["STS12"], root=tiny_data, limit=5)


def test_results_roundtrip(fake_encoder, tiny_data, tmp_path):
    run = score(fake_encoder, ["STS13", "sickr"], root=tiny_data, name="my run")
    path = save_run(run, tmp_path / "r.json")
    back = load_run(path)
    assert back.tasks == json.loads(json.dumps(run.tasks)) and back.name == "my run"
    pairs = back.load_pairs()
    np.testing.assert_allclose(pairs["STS13"]["sim"], run.pairs["STS13"]["sim"])
    assert list(pairs["SICKRelatedness"]["s1"]) == run.pairs["SICKRelatedness"]["s1"].tolist()


def test_nan_embeddings_write_nothing(tiny_data, tmp_path):
    class NaNEncoder:
        fingerprint = "nan"

        def encode(self, sentences):
            return np.full((len(sentences), 3), np.nan, np.float32)

    with pytest.raises(RuntimeError, match="NaN"):
        score(CachedEncoder(NaNEncoder(), tmp_path / "cache"), root=tiny_data)
    assert not list(tmp_path.rglob("*.npz"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=0)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 32)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_score_writes_results_and_reuses_cache(tiny_ckpt, tiny_data, tmp_path):
    out, cache = tmp_path / "out" / "tiny.json", tmp_path / "cache"
    res = invoke("score", tiny_ckpt, "--data", tiny_data, "--out", out, "--cache-dir", cache)
    assert res.exit_code == 0, res.output
    assert "STSBenchmark" in res.output and "Avg. (SimCSE)" in res.output
    run = load_run(out)
    assert run.meta["pooler"] == "avg" and run.meta["cache_misses"] > 0
    res = invoke("score", tiny_ckpt, "--data", tiny_data, "--out", out, "--cache-dir", cache)
    assert load_run(out).meta["cache_misses"] == 0
    assert load_run(out).tasks == run.tasks


def test_cli_nan_checkpoint_leaves_nothing(tiny_data, tmp_path):
    import torch

    backbone, tok = random_tiny(seed=0)
    with torch.no_grad():
        backbone.encoder.layer[0].output.dense.weight.fill_(float("inf"))
    ckpt = save_checkpoint(backbone, tok, tmp_path / "nan-model", "avg", 32)
    out = tmp_path / "runs" / "nan.json"
    res = invoke("score", ckpt, "--data", tiny_data, "--out", out, "--cache-dir", tmp_path / "c")
    assert res.exit_code == 2 and "NaN/inf embeddings" in res.output
    assert not out.parent.exists() or not list(out.parent.iterdir())
    assert not list((tmp_path / "c").rglob("*.npz"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/dir"], "does not exist"),
        (["--tasks", "STS-12"], "did you mean STS12"),
        (["--tasks", "STS12", "--split", "dev"], "only a test split"),
    ],
)
def test_cli_bad_input(tiny_data, tmp_path, args, message):
    res = invoke("score", *args, "--data", tiny_data, "--out", tmp_path / "r.json")
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "r.json").exists()


def test_cli_unwritable_output(tiny_ckpt, tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder is needed
    res = invoke(
        "score",
        tiny_ckpt,
        "--data",
        tiny_data,
        "--tasks",
        "stsb",
        "--out",
        blocker / "r.json",
        "--no-cache",
    )
    assert res.exit_code == 2 and "cannot write results" in res.output


def test_cli_output_must_be_json(tiny_ckpt, tiny_data, tmp_path):
    res = invoke(
        "score",
        tiny_ckpt,
        "--data",
        tiny_data,
        "--tasks",
        "stsb",
        "--out",
        tmp_path / "r.txt",
        "--no-cache",
    )
    assert res.exit_code == 2 and "must end in .json" in res.output
    assert not (tmp_path / "r.txt").exists()


def test_undefined_correlation_is_not_saved(tiny_data, tmp_path):
    class Constant:
        fingerprint = "constant"

        def encode(self, sentences):
            return np.ones((len(sentences), 3), np.float32)

    run = score(Constant(), ["stsb"], root=tiny_data)
    with pytest.raises(ResultsError, match="NaN or infinite"):
        save_run(run, tmp_path / "out" / "r.json")
    assert not (tmp_path / "out").exists()
