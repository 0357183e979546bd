"""`embeval audit`: the figures of a run under a non-default choice are named by the audit.

The expected figures come from an ordinary `score` of the same random tiny checkpoint with
`--pooler cls_before_pooler` (its own pooler is avg): the audit must find them, to float noise,
only in rows with that pooler and no whitening (Normalize does not change a cosine, so both of
its rows match), the run's own protocol, length and aggregation among them.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.core.poolers import POOLERS
from embeval.eval.encoders.chain import build_encoder
from embeval.eval.scoring.audit import AUDIT_POOLERS, AuditSpec, audit_grid, run_audit
from embeval.eval.scoring.score import score
from embeval.results.files import load_run

TASKS = ["STSBenchmark", "STS12"]
LIMIT = 40


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=3)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("a") / "ckpt", "avg", 32)


def test_grid_comes_from_the_registries_own_setting_first(ckpt):
    grid = audit_grid(str(ckpt))
    assert grid["pooler"][0] == "avg"
    assert set(grid["pooler"]) == {p for p in AUDIT_POOLERS if p in POOLERS}
    assert grid["protocol"] == ["simcse", "mteb"] and grid["max_length"] == [32, 128, 512]
    assert grid["normalize"] == [False, True] and grid["whiten"] == [False, True]
    assert grid["aggregation"] == ["all", "mean", "wmean"]


def test_audit_names_the_choice_that_made_the_expected_figures(ckpt, shared_data, tmp_path):
    enc = build_encoder(str(ckpt), pooler="cls_before_pooler", no_cache=True, progress=False)
    ref = score(enc, TASKS, root=shared_data, limit=LIMIT, diagnostics=False)
    expect = {t: round(ref.tasks[t]["spearman"], 2) for t in TASKS}
    spec = AuditSpec(
        str(ckpt), TASKS, expect, LIMIT, shared_data, tmp_path / "cache", progress=False
    )
    run, rows = run_audit(spec)
    audit = run.meta["audit"]
    assert len(rows) == len(audit["rows"]) > 0
    found = [rows[i] for i in audit["reproduces_all"]]
    assert found and all((r["pooler"], r["whiten"]) == ("cls_before_pooler", False) for r in found)
    # --limit 40 keeps STS12's first subset only (all = mean = wmean), and an uncased tokenizer
    # reads SentEval's tokenized text and the raw text alike: those rows may match as well
    assert ("simcse", 32, "all") in {
        (r["protocol"], r["max_length"], r["aggregation"]) for r in found
    }
    # the audit's one-pass-for-all-poolers vectors give score's own figures
    for t in TASKS:
        assert found[0]["figures"][t] == pytest.approx(ref.tasks[t]["spearman"], abs=1e-6)
    # the results file holds the checkpoint's own setting (avg) and the audit
    first = rows[0]
    assert (first["pooler"], first["protocol"], first["whiten"]) == ("avg", "simcse", False)
    plain = score(build_encoder(str(ckpt), no_cache=True, progress=False), TASKS,
                  root=shared_data, limit=LIMIT, diagnostics=False)  # fmt: skip
    assert run.tasks["STS12"]["spearman"] == pytest.approx(plain.tasks["STS12"]["spearman"])

    # the CLI: a second audit encodes nothing (the cache), prints the match, saves the file
    out = tmp_path / "audit.json"
    args = [
        "audit", str(ckpt), "--tasks", ",".join(TASKS), "--limit", str(LIMIT),
        "--data", str(shared_data), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
        *(f"--expect={t}={v}" for t, v in expect.items()),
    ]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "reproduces every expected figure: cls_before_pooler, simcse" in res.output
    saved = load_run(out)
    assert saved.meta["audit"]["reproduces_all"] == audit["reproduces_all"]
    assert json.loads(out.read_text())["meta"]["audit"]["expected"] == expect
    bad = CliRunner().invoke(main, [*args[:-2], "--expect", "STS99=1"])
    assert bad.exit_code == 2 and "--expect STS99: not a scored task" in bad.output
