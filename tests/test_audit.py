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
from conftest import FakeEncoder

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.core.poolers import POOLERS
from embeval.eval.encoders.chain import build_encoder
from embeval.eval.report.build import build, render_html
from embeval.eval.scoring.audit import (
    AUDIT_POOLERS,
    AuditSpec,
    audit_grid,
    matches,
    run_audit,
    summarize,
)
from embeval.eval.scoring.score import score
from embeval.results.files import load_run, save_run

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


@pytest.mark.slow  # ~70 s CPU: 2 x 64 grid points (the CLI's second audit among them)
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
    for wrong in ("STS99", "Avg"):  # Avg: only when all seven tasks are scored
        bad = CliRunner().invoke(main, [*args[:-2], "--expect", f"{wrong}=1"])
        assert bad.exit_code == 2 and f"--expect {wrong}: not a scored task" in bad.output


def row(pooler, figures, aggregation="all", same=(32,)):
    return {
        "pooler": pooler, "protocol": "simcse", "max_length": same[0],
        "max_length_same": list(same), "normalize": False, "whiten": False,
        "aggregation": aggregation, "figures": figures,
    }  # fmt: skip


def test_matches_within_a_hundredth_and_the_report_shows_the_audit(tiny_data, tmp_path):
    rows = [
        row("avg", {"STSBenchmark": 80.0, "STS12": 70.0}, same=(32, 128)),
        row("cls", {"STSBenchmark": 76.8449, "STS12": 68.4}),
        row("cls", {"STSBenchmark": 76.8449, "STS12": 68.3}, "mean"),
        row("cls_before_pooler", {"STSBenchmark": 76.8351, "STS12": 68.409}),
    ]
    per, every = matches(rows, {"STSBenchmark": 76.85, "STS12": 68.40})
    assert per == {"STSBenchmark": [1, 2], "STS12": [1, 3]} and every == [1]
    assert matches(rows, {}) == ({}, [])
    run = score(FakeEncoder(), ["stsb"], root=tiny_data, name="m")
    run.meta["audit"] = {
        "grid": {}, "tolerance": 0.01, "expected": {"STSBenchmark": 76.85, "STS12": 68.40},
        "rows": rows, "matches": per, "reproduces_all": every,
    }  # fmt: skip
    html = render_html(build([save_run(run, tmp_path / "m.json")]))
    assert '<td class="s">avg, simcse, len 32 (=128), no-norm, no-whiten, all</td>' in html
    assert "audit: reproduces every expected figure: cls, simcse, len 32, no-norm" in html
    # matched rows that are every combination of their values read as one line
    assert "STS12 = 68.40 (±0.01): cls or cls_before_pooler, simcse, len 32, no-norm" in html
    assert summarize([rows[0], rows[2]]) == (
        "avg, simcse, len 32 (=128), no-norm, no-whiten, all; "
        "cls, simcse, len 32, no-norm, no-whiten, mean"
    )
