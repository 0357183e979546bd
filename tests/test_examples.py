"""The examples/ recipes run end to end (slow): each paper's recipe, shrunk.

tests/train_helpers.run_recipe swaps BERT-base for random-tiny and the 1M sentences for the
11,914 here, and EXTRA stops training after a step or two; the commands themselves (train flags,
scoring the best checkpoint on the STS suite, the report) are the ones a GPU machine with internet
runs. NPROC=2 launches the Focal-InfoNCE training through torchrun (gloo on CPU), as on several
GPUs. examples/{esimcse,consert,distilcse}_bert_base.sh: tests/test_method_examples.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from train_helpers import run_recipe


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_paper_recipe_script_runs(nproc, shared_data, tmp_path):
    bin_dir = str(Path(sys.executable).parent)  # embeval and torchrun of this environment
    if nproc > 1 and not shutil.which("torchrun", path=bin_dir):
        pytest.fail(f"torchrun not found beside {sys.executable}")
    out = tmp_path / "runs" / "recipe"
    extra = "--steps 2 --eval-steps 2 --no-progress --device cpu"
    run_recipe(
        "focal_infonce_bert_base.sh", shared_data, out, tmp_path,
        NPROC=nproc, BATCH=64 // nproc, EXTRA=extra,
    )  # fmt: skip

    cfg = json.loads((out / "train_config.json").read_text())
    assert (cfg["loss"], cfg["loss_args"]["m"], cfg["temperature"]) == ("focal-infonce", 0.3, 0.05)
    assert (cfg["lr"], cfg["max_length"], cfg["pooler"]) == (3e-5, 32, "cls")
    assert cfg["world_size"] == nproc and cfg["batch_size"] * nproc == 64
    run = json.loads((tmp_path / "reports" / "runs" / "recipe-test.json").read_text())
    assert len(run["tasks"]) == 7 and run["avg"] is not None
    assert (tmp_path / "reports" / "recipe.html").stat().st_size > 10_000


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
    out = tmp_path / "runs" / method
    run_recipe(
        "literature_bert_base.sh", shared_data, out, tmp_path, method,
        NLI=shared_data.resolve() / "train" / "snli_devtest_triplets_for_simcse.csv",
        REFERENCE="random-tiny", GENERATOR=tmp_path / "gen", SCORE=0,
        DIMS="128,64",  # random-tiny is 128 wide
        EXTRA="--steps 1 --batch-size 8 --no-eval --no-progress --device cpu",
    )  # fmt: skip
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 1 and (out / "best" / "model.safetensors").is_file()
