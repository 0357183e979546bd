"""A results file is never replaced by a different run without --overwrite (issue 13, item 1).

"Same run" = same checkpoint fingerprint and scoring settings (`results.run_differences`):
re-running a command replaces its file; another run is refused before encoding, or, when the
clash appears only after scoring, written to a free sibling name. Every command that writes says
where.
"""

import json

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.scoring import score as score_mod
from embeval.results.files import load_run, run_differences, run_settings


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=0)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 32)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def dev_run(ckpt, tiny_data, tmp_path, monkeypatch):
    """`embeval score CKPT --split dev` (STS-B + SICK) at the default path, in a scratch cwd."""
    monkeypatch.chdir(tmp_path)
    res = invoke("score", ckpt, "--split", "dev", "--data", tiny_data, "--no-cache")
    assert res.exit_code == 0, res.output
    path = tmp_path / "reports/runs/tiny-dev.json"
    assert f"results: {path.relative_to(tmp_path)}" in res.output
    return path


def no_scoring(*a, **k):
    raise AssertionError("scored although the clash was known up front")


def test_run_differences_compare_model_and_settings():
    meta = {"fingerprint": "f", "pooler": "avg", "split": "dev", "limit": None, "batch_size": 8}
    a = run_settings(meta, ["STSBenchmark", "SICKRelatedness"])
    assert (
        run_differences(
            a, run_settings({**meta, "batch_size": 128}, ["SICKRelatedness", "STSBenchmark"])
        )
        == []
    )
    assert run_differences(a, run_settings(meta, ["STSBenchmark"])) == [
        "tasks: ['SICKRelatedness', 'STSBenchmark'] vs ['STSBenchmark']"
    ]
    assert run_differences(a, run_settings({**meta, "fingerprint": "g"}, a["tasks"])) == [
        "fingerprint: 'f' vs 'g'"
    ]


def test_check_does_not_replace_a_fuller_score_run(ckpt, tiny_data, dev_run, monkeypatch):
    """The issue's case: `check` scoring STS-B alone wrote over `score --split dev`'s run."""
    before = dev_run.read_bytes()
    monkeypatch.setattr(score_mod, "score", no_scoring)
    res = invoke(
        "check", ckpt, "--baseline", dev_run, "--data", tiny_data, "--no-cache", "--bootstrap", 10
    )
    assert res.exit_code == 2, res.output
    assert f"{dev_run.relative_to(dev_run.parents[2])} holds a different run" in res.output
    assert "'SICKRelatedness', 'STSBenchmark'] vs ['STSBenchmark']" in res.output
    assert "--out FILE" in res.output and "--overwrite" in res.output
    assert dev_run.read_bytes() == before


def test_rerun_replaces_and_overwrite_forces(ckpt, tiny_data, dev_run):
    res = invoke("score", ckpt, "--split", "dev", "--data", tiny_data, "--no-cache")
    assert res.exit_code == 0, res.output  # the same command again (`make demo` twice)
    res = invoke("score", ckpt, "--tasks", "stsb", "--split", "dev", "--data", tiny_data)
    assert res.exit_code == 2 and "holds a different run" in res.output
    res = invoke(
        "score", ckpt, "--tasks", "stsb", "--split", "dev", "--data", tiny_data, "--overwrite"
    )
    assert res.exit_code == 0, res.output
    assert list(load_run(dev_run).tasks) == ["STSBenchmark"]


def test_check_says_where_it_wrote(ckpt, tiny_data, dev_run, tmp_path):
    out = tmp_path / "gate.json"
    args = ["--baseline", dev_run, "--data", tiny_data, "--no-cache", "--bootstrap", 10]
    res = invoke("check", ckpt, *args, "--out", out)
    assert res.exit_code == 0, res.output
    assert f"results: {out}" in res.output and out.exists()


def test_clash_found_after_scoring_keeps_both(ckpt, tiny_data, tmp_path, monkeypatch):
    """Another process writes a different run to the path while this one scores: nothing lost."""
    out = tmp_path / "r.json"
    real = score_mod.score

    def racing(*a, **k):
        other = real(*a, **k)
        other.meta = {**other.meta, "fingerprint": "another model"}
        from embeval.results.files import save_run

        save_run(other, out)
        return real(*a, **k)

    monkeypatch.setattr(score_mod, "score", racing)
    res = invoke("score", ckpt, "--tasks", "stsb", "--data", tiny_data, "--out", out, "--no-cache")
    assert res.exit_code == 0, res.output
    sibling = tmp_path / "r-2.json"
    assert f"{out} now holds a different run" in res.output and f"results: {sibling}" in res.output
    assert json.loads(out.read_text())["meta"]["fingerprint"] == "another model"
    assert load_run(sibling).meta["fingerprint"] != "another model"
    assert sibling.with_name("r-2.pairs.npz").exists()
