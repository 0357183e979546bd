"""examples/{esimcse,consert,distilcse}_bert_base.sh run end to end (slow): the papers' recipes,
shrunk as tests/test_examples.py shrinks the Focal-InfoNCE one (random-tiny for BERT-base, the
11,914 wiki1m sentences, 2 steps; DistilCSE's teacher is the packaged all-MiniLM-L6-v2, its
queue and batch small enough for that file). The train flags, the scoring of the best checkpoint
on the STS suite and the report are the ones a GPU machine with internet runs."""

from __future__ import annotations

import json

import pytest
from train_helpers import run_recipe

EXPECTED = {  # what train_config.json must record of each paper's setting
    "esimcse": {"view": "esimcse", "view_args": {"dup_rate": 0.32, "max_dup": 10}, "lr": 3e-5},
    "consert": {"view": "consert", "loss": "nt-xent", "temperature": 0.1, "dropout": 0.0},
    "distilcse": {"view": "anchors", "negatives": ["teacher"], "lr": 2e-4, "max_length": 64},
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_method_recipe_script_runs(method, shared_data, tmp_path):
    from embeval.core.model import default_checkpoint_path

    out = tmp_path / "runs" / method
    run_recipe(
        f"{method}_bert_base.sh", shared_data, out, tmp_path,
        STSSICK=tmp_path / "stssick.txt", TEACHER=default_checkpoint_path(), BATCH=16, QUEUE=64,
        EXTRA="--steps 2 --eval-steps 2 --no-progress --device cpu",
    )  # fmt: skip
    cfg = json.loads((out / "train_config.json").read_text())
    for key, value in EXPECTED[method].items():
        assert cfg[key] == value, key
    run = json.loads((tmp_path / "reports" / "runs" / f"{method}-test.json").read_text())
    assert len(run["tasks"]) == 7 and run["avg"] is not None
    if method == "consert":  # the unlabelled STS/SICK sentences the recipe builds
        assert len((tmp_path / "stssick.txt").read_text().splitlines()) == 62198
