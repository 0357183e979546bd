"""examples/focal_infonce_bert_base.sh runs end to end (slow): the paper's recipe, shrunk.

The script's own knobs swap BERT-base for random-tiny and the 1M sentences for the 11,914 here,
and EXTRA stops training after 2 steps; the commands themselves (train flags, scoring the best
checkpoint on the STS suite, the report) are the ones a GPU machine with internet runs. NPROC=2
launches the training through torchrun (gloo on CPU), as on several GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "focal_infonce_bert_base.sh"


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_paper_recipe_script_runs(nproc, shared_data, tmp_path):
    bin_dir = str(Path(sys.executable).parent)  # embeval and torchrun of this environment
    if nproc > 1 and not shutil.which("torchrun", path=bin_dir):
        pytest.fail(f"torchrun not found beside {sys.executable}")
    out = tmp_path / "runs" / "recipe"
    data = shared_data.resolve()  # the script runs in tmp_path; the data path may be relative
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "MODEL": "random-tiny",
        "DATA_DIR": str(data),
        "WIKI": str(data / "train" / "wiki1m_for_simcse.first11914.txt"),
        "OUT": str(out),
        "NPROC": str(nproc),
        "BATCH": str(64 // nproc),
        "EXTRA": "--steps 2 --eval-steps 2 --no-progress --device cpu",
        "CUDA_VISIBLE_DEVICES": "",
    }
    res = subprocess.run(
        ["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    cfg = json.loads((out / "train_config.json").read_text())
    assert (cfg["loss"], cfg["loss_args"]["m"], cfg["temperature"]) == ("focal-infonce", 0.3, 0.05)
    assert (cfg["lr"], cfg["max_length"], cfg["pooler"]) == (3e-5, 32, "cls")
    assert cfg["world_size"] == nproc and cfg["batch_size"] * nproc == 64
    run = json.loads((tmp_path / "reports" / "runs" / "recipe-test.json").read_text())
    assert len(run["tasks"]) == 7 and run["avg"] is not None
    assert (tmp_path / "reports" / "recipe.html").stat().st_size > 10_000


LITERATURE = SCRIPT.parent / "literature_bert_base.sh"


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    ["promcse-hinge", "gcse", "dclr", "matryoshka", "2dmse", "sbert-nli", "diffcse", "promptbert"],
)
def test_literature_recipes_run(method, shared_data, tmp_path):
    """examples/literature_bert_base.sh METHOD with random-tiny, one step on the shared data
    (the reference and generator swapped for random tiny ones; no STS scoring)."""
    from transformers import BertForMaskedLM

    from embeval.core.model import random_tiny

    backbone, tok = random_tiny(1)
    BertForMaskedLM(backbone.config).save_pretrained(tmp_path / "gen")
    tok.save_pretrained(tmp_path / "gen")
    data = shared_data.resolve()
    out = tmp_path / "runs" / method
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "MODEL": "random-tiny",
        "DATA_DIR": str(data),
        "NLI": str(data / "train" / "snli_devtest_triplets_for_simcse.csv"),
        "WIKI": str(data / "train" / "wiki1m_for_simcse.first11914.txt"),
        "OUT": str(out),
        "REFERENCE": "random-tiny",
        "GENERATOR": str(tmp_path / "gen"),
        "SCORE": "0",
        "DIMS": "128,64",  # random-tiny is 128 wide
        "EXTRA": "--steps 1 --batch-size 8 --no-eval --no-progress --device cpu",
    }
    run = subprocess.run(
        ["bash", str(LITERATURE), method], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 1 and (out / "best" / "model.safetensors").is_file()
