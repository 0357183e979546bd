"""examples/{esimcse,consert,distilcse}_bert_base.sh run end to end (slow): the papers' recipes,
shrunk as tests/test_examples.py shrinks the Focal-InfoNCE one (random-tiny for BERT-base, the
11,914 wiki1m sentences, 2 steps; DistilCSE's teacher is the packaged all-MiniLM-L6-v2, its
queue and batch small enough for that file). The train flags, the scoring of the best checkpoint
on the STS suite and the report are the ones a GPU machine with internet runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECTED = {  # what train_config.json must record of each paper's setting
    "esimcse": {"view": "esimcse", "view_args": {"dup_rate": 0.32, "max_dup": 10}, "lr": 3e-5},
    "consert": {"view": "consert", "loss": "nt-xent", "temperature": 0.1, "dropout": 0.0},
    "distilcse": {"view": "anchors", "negatives": ["teacher"], "lr": 2e-4, "max_length": 64},
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_method_recipe_script_runs(method, shared_data, tmp_path):
    from embeval.core.model import default_checkpoint_path

    data = shared_data.resolve()
    out = tmp_path / "runs" / method
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "MODEL": "random-tiny",
        "DATA_DIR": str(data),
        "WIKI": str(data / "train" / "wiki1m_for_simcse.first11914.txt"),
        "STSSICK": str(tmp_path / "stssick.txt"),
        "TEACHER": str(default_checkpoint_path()),
        "BATCH": "16",
        "QUEUE": "64",
        "OUT": str(out),
        "EXTRA": "--steps 2 --eval-steps 2 --no-progress --device cpu",
        "CUDA_VISIBLE_DEVICES": "",
    }
    script = EXAMPLES / f"{method}_bert_base.sh"
    res = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cfg = json.loads((out / "train_config.json").read_text())
    for key, value in EXPECTED[method].items():
        assert cfg[key] == value, key
    run = json.loads((tmp_path / "reports" / "runs" / f"{method}-test.json").read_text())
    assert len(run["tasks"]) == 7 and run["avg"] is not None
    if method == "consert":  # the unlabelled STS/SICK sentences the recipe builds
        assert len((tmp_path / "stssick.txt").read_text().splitlines()) == 62198
