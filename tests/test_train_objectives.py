"""Objectives (heads trained beside the encoder): SBERT's NLI softmax objective reads labelled
pairs or SimCSE triplets, refuses other data before any step, trains random-tiny (the loss
falls), keeps its head out of the checkpoint but in last/ for --resume, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from train_helpers import read_log, write_sentences

from embeval.cli import main
from embeval.core.model import random_tiny
from embeval.core.objectives import SBertNLI
from embeval.core.train_data import read_training_file
from embeval.core.trainer import TrainConfig, Trainer

NLI = "snli_devtest_triplets_for_simcse.csv"


def head_rows(shared_data, tmp_path, n=8):
    lines = (shared_data / "train" / NLI).read_text(encoding="utf-8").splitlines()
    out = tmp_path / NLI
    out.write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return out


def make(out, data, steps=10, **kw):
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(
        objective="sbert-nli", batch_size=8, steps=steps, lr=2e-3, eval_steps=steps,
        log_steps=1, seed=7, max_length=24, pooler="avg", eval_pooler="avg", **kw,
    )  # fmt: skip
    return Trainer(backbone, tok, data, cfg, out, progress=False)


def test_triplets_become_labelled_pairs_and_labels_are_checked(tmp_path):
    trip = tmp_path / "t.csv"
    trip.write_text("sent0,sent1,hard_neg\na,b,c\nd,e,f\n")
    rows = SBertNLI.prepare(read_training_file(trip))
    assert rows.columns == ("sent0", "sent1", "label")
    assert rows.examples == [
        ("a", "b", "entailment"), ("a", "c", "contradiction"),
        ("d", "e", "entailment"), ("d", "f", "contradiction"),
    ]  # fmt: skip
    labelled = tmp_path / "l.csv"
    labelled.write_text("sent0,sent1,label\na,b,neutral\nc,d,maybe\n")
    with pytest.raises(ValueError, match=r"l.csv: data row 2 has label 'maybe'; expected one of"):
        SBertNLI.prepare(read_training_file(labelled))


@pytest.mark.parametrize("kind", ["pairs", "sentences"])
def test_data_without_labels_is_refused_before_any_step(kind, tmp_path):
    if kind == "pairs":
        data = tmp_path / "p.csv"
        data.write_text("sent0,sent1\n" + "".join(f"a{i},b{i}\n" for i in range(8)))
    else:
        data = write_sentences(tmp_path / "s.txt", n=8)
    with pytest.raises(ValueError, match="objective sbert-nli needs labelled sentence pairs"):
        make(tmp_path / "out", data)
    assert not (tmp_path / "out").exists()  # nothing written, nothing trained


def test_sbert_nli_trains_keeps_its_head_out_of_the_checkpoint_and_resumes(shared_data, tmp_path):
    data = head_rows(shared_data, tmp_path)  # 8 triplets -> 16 labelled rows
    full = make(tmp_path / "a", data, steps=10)
    full.train()
    losses = [r["loss"] for r in read_log(tmp_path / "a") if "loss" in r]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["objective"] == "sbert-nli" and saved["objective_args"] == {"num_labels": 3}
    assert saved["view"] == "labelled-pairs" and saved["n_examples"] == 16
    weights = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    assert not any("classifier" in k for k in weights)  # the encoder alone
    state = torch.load(tmp_path / "a" / "last" / "trainer_state.pt", weights_only=False)
    assert torch.equal(state["objective"]["classifier.weight"], full.objective.classifier.weight)

    part = make(tmp_path / "b", data, steps=10)

    def interrupt(trainer, step):
        if step == 4:
            raise KeyboardInterrupt

    part.on_step_end.append(interrupt)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    resumed = make(tmp_path / "b", data, steps=10)
    resumed.train(resume=True)
    assert [r["loss"] for r in read_log(tmp_path / "b") if "loss" in r] == losses
    assert torch.equal(resumed.objective.classifier.weight, full.objective.classifier.weight)
    for a, b in zip(full.backbone.parameters(), resumed.backbone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cli_objective_and_a_labelled_csv(tmp_path):
    data = tmp_path / "nli.csv"
    rows = [("a man plays", "a person plays", "entailment"), ("a dog runs", "a cat sleeps",
            "contradiction"), ("kids eat", "kids eat lunch", "neutral")] * 3  # fmt: skip
    data.write_text("sent0,sent1,label\n" + "".join(",".join(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--objective", "sbert-nli", "--pooler", "avg", "--steps", "2", "--batch-size", "4"]
    res = CliRunner().invoke(main, [*args, "--no-eval", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "train_config.json").read_text())["objective"] == "sbert-nli"
    bad = CliRunner().invoke(main, [*args, "--objective-arg", "labels=2", "--overwrite"])
    assert bad.exit_code == 2 and "objective sbert-nli has no argument 'labels'" in bad.output
