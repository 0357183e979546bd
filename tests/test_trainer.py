"""Trainer on CPU with a tiny random BERT: checkpoints, resume, bad input, NaN, supervised data."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from train_helpers import WORDS, read_log, train_until_interrupted, write_sentences

from embeval.core import losses
from embeval.core.batches import contrastive_loss
from embeval.core.model import load_model, random_tiny
from embeval.core.train_data import read_training_file
from embeval.core.trainer import TrainConfig, Trainer, TrainingError, simcse_poolers


def tiny(seed=0):
    return random_tiny(seed, hidden=32, layers=1, heads=2)


def cfg(**kw):
    base = dict(batch_size=8, max_length=16, lr=1e-3, eval_steps=3, log_steps=1, seed=7)
    return TrainConfig(**{**base, **kw})


def make_trainer(tmp_path, data=None, evaluate=None, seed=0, **kw):
    backbone, tok = tiny(seed)
    data = data or write_sentences(tmp_path / "train.txt")
    return Trainer(
        backbone, tok, data, cfg(**kw), tmp_path / "out", evaluate=evaluate, progress=False
    )


@pytest.fixture
def register_loss():
    """register_loss(name, fn) adds a toy loss to LOSSES for one test."""
    added = []

    def add(name, fn):
        losses.LOSSES.add(name, fn)
        added.append(name)

    yield add
    for name in added:
        losses.LOSSES.remove(name)


def embed(model, tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**enc)


def test_steps_zero_saves_the_initial_model(tmp_path):
    seen = []

    def evaluate(model):
        seen.append((model.pooler, model.training))
        return {"stsb_dev": 1.0}

    tr = make_trainer(tmp_path, evaluate=evaluate, steps=0)
    result = tr.train()
    assert result.step == 0 and result.best_step == 0
    assert seen == [("cls_before_pooler", False)]  # scored once, with the evaluation pooler
    out = tmp_path / "out"
    model, tok, info = load_model(out / "best")
    # the training max_length (16) is not an inference limit: SimCSE evaluates untruncated
    assert info.pooler == "cls_before_pooler" and info.max_length == 512
    texts = ["a cat", "the river runs fast"]
    assert torch.allclose(embed(model, tok, texts), embed(tr.eval_model, tok, texts), atol=1e-6)
    assert (out / "last" / "trainer_state.pt").is_file()
    # The MLP pooler weights are kept: --pooler cls loads them.
    cls_model, _, _ = load_model(out / "best", pooler="cls")
    assert torch.equal(cls_model.backbone.pooler.dense.weight, tr.backbone.pooler.dense.weight)


def test_pooler_is_reinitialised_like_simcse_mlp(tmp_path):
    tr = make_trainer(tmp_path, steps=0)
    before = tr.backbone.pooler.dense.weight.clone()
    tr.backbone.pooler.dense.bias.data.fill_(1.0)
    tr.train()
    w, b = tr.backbone.pooler.dense.weight, tr.backbone.pooler.dense.bias
    assert not torch.equal(w, before)
    assert torch.all(b == 0)
    assert abs(w.std().item() - tr.backbone.config.initializer_range) < 0.004


def test_dropout_sets_the_noise_of_the_views_and_the_saved_config(tmp_path):
    """--dropout is the rate of SimCSE's two views. At 0 the views of one sentence are equal (a
    train-mode forward pass is deterministic); at 0.3 they differ. The saved config records it."""
    texts = ["a cat sat on the mat", "the river runs fast"]
    enc = tiny()[1](texts, padding=True, return_tensors="pt")
    for p, same in ((0.0, True), (0.3, False)):
        tr = make_trainer(tmp_path / str(p), steps=0, dropout=p, pooler="avg")
        assert {m.p for m in tr.backbone.modules() if isinstance(m, torch.nn.Dropout)} == {p}
        tr.model.train()
        assert torch.equal(tr.model(**enc), tr.model(**enc)) is same
        tr.train()
        saved = json.loads((tmp_path / str(p) / "out" / "best" / "config.json").read_text())
        assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == p
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        cfg(dropout=1.0).validate()


def test_gradient_clipping_and_weight_decay_groups(tmp_path):
    """max_grad_norm clips the global gradient norm the optimizer sees (0 turns it off);
    weight decay skips biases and LayerNorm weights and the frozen MLP pooler, as HF does."""
    norms = {}
    for clip in (0.0, 0.05):
        tr = make_trainer(
            tmp_path / str(clip), steps=2, max_grad_norm=clip, pooler="avg", weight_decay=0.01
        )

        def grad_norm(trainer, step, clip=clip):
            grads = [p.grad for p in trainer.backbone.parameters() if p.grad is not None]
            norms[clip] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()

        tr.on_step_end.append(grad_norm)
        tr.train()
    assert norms[0.0] > 0.1 and norms[0.05] == pytest.approx(0.05, rel=1e-4)

    decay, no_decay = tr.optimizer.param_groups
    names = {id(p): n for n, p in tr.backbone.named_parameters()}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    assert all(names[id(p)].endswith("weight") and p.ndim == 2 for p in decay["params"])
    assert {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]} == {"bias", "weight"}
    assert not any(
        names[id(p)].startswith("pooler.") for g in (decay, no_decay) for p in g["params"]
    )
    with pytest.raises(ValueError, match="max_grad_norm must be >= 0"):
        cfg(max_grad_norm=-1.0).validate()


def test_training_logs_and_keeps_the_best(tmp_path):
    scores = iter([10.0, 30.0, 20.0])  # step 0, 3, 6: step 3 is the best

    def evaluate(model):
        return {"stsb_dev": next(scores), "alignment": 0.5, "uniformity": -1.0}

    tr = make_trainer(tmp_path, evaluate=evaluate, steps=6)
    before = [p.clone() for p in tr.backbone.parameters()]
    result = tr.train()
    assert result.best_step == 3 and result.best_score == 30.0
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.backbone.parameters(), strict=True))
    out = tmp_path / "out"
    assert json.loads((out / "best" / "embeval_train.json").read_text())["step"] == 3
    log = read_log(out)
    assert [r["step"] for r in log] == [0, 1, 2, 3, 4, 5, 6]
    assert [r["stsb_dev"] for r in log if "stsb_dev" in r] == [10.0, 30.0, 20.0]
    assert all(r["loss"] > 0 and r["lr"] >= 0 for r in log[1:])
    assert log[-1]["lr"] == 0.0  # linear decay to zero over the run
    assert json.loads((out / "train_config.json").read_text())["n_examples"] == 40


@pytest.mark.parametrize("when", ["between steps", "inside the weight update"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, when):
    """Interrupted at step 4 (between the evaluations at 3 and 6, so the interrupt handler saves),
    then resumed: the same weights and losses as 7 uninterrupted steps. A real Ctrl-C (SIGINT)
    that arrives while the optimizer and scheduler step is held until the step is complete, so
    the saved weights, optimizer, scheduler, step and RNG belong together."""
    full = make_trainer(tmp_path / "a", steps=7)
    full.train()

    part = make_trainer(tmp_path / "b", steps=7)
    if when == "between steps":

        def interrupt(trainer, step):
            if step == 4:
                raise KeyboardInterrupt

        part.on_step_end.append(interrupt)
    else:
        updates = []

        def ctrl_c_after_the_4th_update(optimizer, args, kwargs):  # before the scheduler steps
            updates.append(1)
            if len(updates) == 4:
                os.kill(os.getpid(), signal.SIGINT)

        part.optimizer.register_step_post_hook(ctrl_c_after_the_4th_update)
    # Python's own Ctrl-C handler, as in a terminal: a shell that starts the test run in the
    # background makes the process ignore SIGINT, and then nothing would be raised at all.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            part.train()
    finally:
        signal.signal(signal.SIGINT, previous)
    state = torch.load(tmp_path / "b" / "out" / "last" / "trainer_state.pt", weights_only=False)
    assert state["step"] == state["scheduler"]["last_epoch"] == 4

    resumed = make_trainer(tmp_path / "b", steps=7, seed=99)  # other init: weights come from last
    resumed.train(resume=True)
    for (name, a), b in zip(
        full.backbone.state_dict().items(), resumed.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    la, lb = read_log(tmp_path / "a" / "out"), read_log(tmp_path / "b" / "out")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_a_fresh_start_refuses_a_folder_that_holds_a_run(tmp_path):
    """Training again into a folder with checkpoints or log records would replace best/, last/
    and train_log.jsonl: refused, naming the folder and both ways on, unless overwrite=True.
    A missing or empty folder, or one a run left before its first save, is fine."""
    out = tmp_path / "out"
    out.mkdir()
    make_trainer(tmp_path, steps=2).train()  # an empty folder
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(
        TrainingError,
        match=r"out already holds a run \(best, last, train_log"
        r"\.jsonl\); continue it with --resume, replace it with --overwrite",
    ):
        make_trainer(tmp_path, steps=3).train()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    make_trainer(tmp_path, steps=3).train(overwrite=True)
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    assert json.loads((out / "train_config.json").read_text())["steps"] == 3
    assert make_trainer(tmp_path, steps=3).train(resume=True).step == 3  # resuming is fine
    # A run stopped before its first save leaves its config and an empty log: nothing to lose.
    early = tmp_path / "early" / "out"
    early.mkdir(parents=True)
    (early / "train_config.json").write_text("{}")
    (early / "train_log.jsonl").write_text("")
    assert make_trainer(tmp_path / "early", data=tmp_path / "train.txt", steps=1).train().step == 1


def test_cli_train_refuses_an_out_folder_that_holds_a_run(tmp_path):
    from click.testing import CliRunner

    from embeval.cli import main

    data, out = write_sentences(tmp_path / "train.txt", n=8), tmp_path / "run"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--steps", "1", "--batch-size", "4", "--no-eval", "--no-progress"]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert f"{out} already holds a run" in again.output and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    both = CliRunner().invoke(main, [*args, "--overwrite", "--resume"])
    assert both.exit_code == 2 and "not both" in both.output


def test_ctrl_c_during_the_first_evaluation_saves_step_0_and_says_so(tmp_path, monkeypatch):
    """A Ctrl-C while step 0 is being scored saved nothing, yet the CLI offered --resume, which
    then failed. Now step 0 is saved to last/, the message names what OUT holds, and --resume
    scores step 0 and trains on. Interrupted before training starts, it offers no --resume."""
    import embeval.cli.train as cli_train
    import embeval.core.model as model_module
    from embeval.cli import main

    calls = []

    def fake_evaluator(tokenizer, root, device, batch_size, normalize=False):
        def evaluate(model):
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return {"stsb_dev": float(len(calls))}

        return evaluate

    monkeypatch.setattr(cli_train, "stsb_dev_evaluator", fake_evaluator)
    data, out = write_sentences(tmp_path / "train.txt", n=8), tmp_path / "run"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--steps", "2", "--batch-size", "4", "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 130
    assert f"interrupted at step 0; {out} holds last/ (step 0): resume with" in res.output
    assert not (out / "best").exists()
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in read_log(out) if "stsb_dev" in r] == [0, 2]

    def no_model(seed):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module, "random_tiny", no_model)
    early = CliRunner().invoke(main, [*args[:6], str(tmp_path / "new"), *args[7:]])
    assert early.exit_code == 130 and "nothing was saved" in early.output
    assert "--resume" not in early.output


def test_resume_recovers_a_save_cut_between_its_two_renames(tmp_path):
    """_save_last moves last/ aside to .last.old, then the new folder in: a crash between the
    two leaves only .last.old, which resume takes back."""
    make_trainer(tmp_path, steps=3).train()
    out = tmp_path / "out"
    os.replace(out / "last", out / ".last.old")
    resumed = make_trainer(tmp_path, steps=3)
    assert resumed.train(resume=True).step == 3
    assert (out / "last" / "trainer_state.pt").is_file() and not (out / ".last.old").exists()


def test_resume_refuses_changed_settings_and_missing_state(tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        make_trainer(tmp_path, steps=2).train(resume=True)
    make_trainer(tmp_path, steps=2).train()
    with pytest.raises(TrainingError, match="lr: 0.001 -> 0.002"):
        make_trainer(tmp_path, steps=2, lr=2e-3).train(resume=True)
    other = write_sentences(tmp_path / "other.txt", n=24)
    with pytest.raises(TrainingError, match="n_examples: 40 -> 24"):
        make_trainer(tmp_path, data=other, steps=2).train(resume=True)
    wider, tok = random_tiny(0, hidden=48, layers=1, heads=2)
    with pytest.raises(TrainingError, match="does not fit this --model"):
        Trainer(wider, tok, tmp_path / "train.txt", cfg(steps=2), tmp_path / "out").train(True)
    state_file = tmp_path / "out" / "last" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]  # older layout
    torch.save(state, state_file)
    with pytest.raises(TrainingError, match=r"trainer_state\.pt: optimizer state does not fit"):
        make_trainer(tmp_path, steps=2).train(resume=True)


def test_resume_reads_a_state_saved_before_the_normalize_field(tmp_path):
    """A state written before TrainConfig.normalize existed resumes as normalize=False (what
    those runs saved) and is refused under normalize=True, naming the field."""
    make_trainer(tmp_path, steps=2).train()
    state_file = tmp_path / "out" / "last" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    del state["config"]["normalize"]
    torch.save(state, state_file)
    with pytest.raises(TrainingError, match="normalize: False -> True"):
        make_trainer(tmp_path, steps=2, normalize=True).train(resume=True)
    assert make_trainer(tmp_path, steps=2).train(resume=True).step == 2  # accepted, done


def test_resume_reads_a_state_saved_before_loss_args(tmp_path):
    """Before loss_args, view and negatives existed, a state's config held focal_m,
    hard_negative_weight and uniformity_weight, whichever the loss, and each loss took those it
    has. Such a state (its config rewritten to the old fields, as the old TrainConfig saved
    them) resumes as loss_args {"m": focal_m} for focal-infonce, the view by the data and no
    providers; a run asking for another m is refused, naming the resolved arguments."""
    stop = make_trainer(tmp_path, steps=4, loss="focal-infonce", loss_args={"m": 0.2})
    train_until_interrupted(stop, 3)  # saved at the evaluation of step 3
    state_file = tmp_path / "out" / "last" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    config = state["config"]
    assert (config["loss_args"], config["view"], config["negatives"]) == ({"m": 0.2}, "dropout", [])
    for key in ("loss_args", "view", "negatives"):
        del config[key]
    config.update(focal_m=0.2, hard_negative_weight=0.0, uniformity_weight=1.0)
    torch.save(state, state_file)
    with pytest.raises(TrainingError, match=r"loss_args: \{'m': 0.2\} -> \{'m': 0.3\}"):
        make_trainer(tmp_path, steps=4, loss="focal-infonce").train(resume=True)
    with pytest.raises(TrainingError, match="loss: 'focal-infonce' -> 'infonce'"):
        make_trainer(tmp_path, steps=4).train(resume=True)
    resumed = make_trainer(tmp_path, steps=4, loss="focal-infonce", loss_args={"m": "0.2"})
    assert resumed.train(resume=True).step == 4
    assert [r["step"] for r in read_log(tmp_path / "out")] == [1, 2, 3, 4]  # no evaluate: no step 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, register_loss):
    calls = {"n": 0}

    def nan_at_5(sim, temperature):
        calls["n"] += 1
        loss = losses.infonce(sim, temperature)
        return loss * float("nan") if calls["n"] == 5 else loss

    register_loss("nan-at-5", nan_at_5)
    tr = make_trainer(tmp_path, loss="nan-at-5", steps=8)
    with pytest.raises(TrainingError, match=r"loss became nan at step 5.*last \(step 3\)"):
        tr.train()
    last = tmp_path / "out" / "last"
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    assert state["step"] == 3
    model, _, _ = load_model(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("which", ["best", "last"])
def test_a_full_disk_stops_with_the_folder_named_and_the_previous_checkpoints_intact(
    tmp_path, monkeypatch, which
):
    """Saves at steps 0, 3 and 6; the one at step 6 hits a full disk. For best/ the weights
    writer fails half-way with ENOSPC (an OSError); for last/ torch.save fails half-way as torch
    does on a full disk (a RuntimeError). Training stops with a TrainingError naming the folder
    and the step kept; best/ and last/ are byte for byte as before and load; no partial folder
    is left."""
    import errno

    import transformers.modeling_utils as hf_modeling

    import embeval.core.train_state as state_module

    scores = iter([1.0, 2.0, 3.0] if which == "best" else [3.0, 2.0, 1.0])
    tr = make_trainer(tmp_path, evaluate=lambda model: {"stsb_dev": next(scores)}, steps=6)
    out, before = tmp_path / "out", {}

    def full_safetensors(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    class FullTorch:  # train_state's torch module, whose save fails on a full disk
        def __getattr__(self, name):
            return getattr(torch, name)

        def save(self, obj, path):
            Path(path).write_bytes(b"partial")
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    def fill_the_disk(trainer, step):
        if step == 5:
            before.update({p: p.read_bytes() for p in out.rglob("*") if p.is_file()})
            if which == "best":
                monkeypatch.setattr(hf_modeling, "safe_save_file", full_safetensors)
            else:
                monkeypatch.setattr(state_module, "torch", FullTorch())

    tr.on_step_end.append(fill_the_disk)
    where = rf"could not save the step-6 checkpoint to {out / which} \(.*"
    kept = rf"\); the previous {which}/ \(step 3\) is intact; free space, then continue from "
    with pytest.raises(TrainingError, match=where + kept + r"last/ \(step 3\) with --resume"):
        tr.train()
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def unlogged(files):  # the log may hold step 6's record; resume drops it
        return {p: b for p, b in files.items() if p.name != "train_log.jsonl"}

    assert unlogged(after) == unlogged(before) and unlogged(before)
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "last",
        "train_config.json",
        "train_log.jsonl",
    ]
    best_step = 3 if which == "best" else 0
    assert json.loads((out / "best" / "embeval_train.json").read_text())["step"] == best_step
    assert torch.load(out / "last" / "trainer_state.pt", weights_only=False)["step"] == 3
    for folder in ("best", "last"):
        model, _, _ = load_model(out / folder)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def fixed_views(seed=0, b=6, h=16):  # (2, b, H): fixed embeddings of norm about 12, not unit length
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(2, b, h, generator=g) + 1


def test_contrastive_loss_is_focal_infonce_of_the_cosines_with_the_config_s_tau_and_m():
    """The Trainer's loss on two views z1, z2 equals focal_infonce(normalize(z1) @
    normalize(z2).T, tau, m) computed directly, at tau 0.1 and m 0.2. Each guard shows the
    figure moves if the Trainer dropped m (loss default 0.3), fixed tau at 0.05 or skipped the
    L2 normalisation, so the equality can fail."""
    z1, z2 = fixed_views()
    sim = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T  # (6, 6) cosines
    got = contrastive_loss(
        torch.stack([z1, z2]), cfg(loss="focal-infonce", temperature=0.1, loss_args={"m": 0.2})
    )
    want = losses.focal_infonce(sim, 0.1, m=0.2)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    for wrong in (
        losses.focal_infonce(sim, 0.1),  # m dropped: the loss's default
        losses.focal_infonce(sim, 0.05, m=0.2),  # --temp ignored
        losses.focal_infonce(z1 @ z2.T, 0.1, m=0.2),  # no normalisation
    ):
        assert abs(wrong.item() - want.item()) > 1e-3


def test_contrastive_loss_uses_the_config_s_temperature_and_normalises():
    z1, z2 = fixed_views(1)
    sim = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T
    got = contrastive_loss(torch.stack([z1, z2]), cfg(loss="infonce", temperature=0.1))
    want = losses.infonce(sim, 0.1)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert abs(losses.infonce(sim, 0.05).item() - want.item()) > 1e-3  # tau 0.05 would show
    assert abs(losses.infonce(z1 @ z2.T, 0.1).item() - want.item()) > 1e-3  # so would raw dots


def test_the_trainer_computes_its_loss_with_contrastive_loss(tmp_path):
    """End to end: with dropout 0 both views of a sentence are the model's embedding z, so the
    Trainer's loss on a batch is focal_infonce(normalize(z) @ normalize(z).T, 0.1, m=0.2)."""
    tr = make_trainer(
        tmp_path,
        loss="focal-infonce",
        temperature=0.1,
        loss_args={"m": 0.2},
        dropout=0.0,
        pooler="avg",
    )
    examples = tr.batch_examples(0)
    tr.model.train()
    with torch.no_grad():
        got = tr.compute_loss(examples)
        z = F.normalize(tr.model(**tr.tokenize([ex[0] for ex in examples])[0]), dim=-1)
    want = losses.focal_infonce(z @ z.T, 0.1, m=0.2)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(losses.focal_infonce(z @ z.T, 0.1).item() - want.item()) > 1e-3


def test_focal_m_defaults_are_the_paper_s(tmp_path):
    """Focal-InfoNCE's m is 0.3 (PROTOCOL.md, from the authors' code), as the loss's default and
    as the m a run records when neither --loss-arg m nor --focal-m is given (the flag's own
    default is None: it sets m only when given, then to its value); tau 0.05 likewise (SimCSE
    and the authors)."""
    import inspect

    from embeval.cli import main
    from embeval.cli.train import train

    params = inspect.signature(losses.focal_infonce).parameters
    assert params["m"].default == 0.3 and params["temperature"].default == 0.05
    resolved = TrainConfig(loss="focal-infonce").resolved(("sent0",))
    assert resolved.loss_args == {"m": params["m"].default}
    assert TrainConfig().temperature == params["temperature"].default
    flags = {p.name: p.default for p in train.params}
    assert flags["focal_m"] is None
    assert flags["temperature"] == TrainConfig().temperature
    data = write_sentences(tmp_path / "train.txt", n=8)
    for extra, m in (((), 0.3), (("--focal-m", "0.2"), 0.2), (("--loss-arg", "m=0.25"), 0.25)):
        out = tmp_path / f"run{m}"
        args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
        args += ["--loss", "focal-infonce", "--steps", "0", "--batch-size", "4", "--no-eval"]
        res = CliRunner().invoke(main, [*args, *extra])
        assert res.exit_code == 0, res.output
        saved = json.loads((out / "train_config.json").read_text())
        assert saved["loss_args"] == {"m": m} and saved["temperature"] == 0.05


def test_bad_training_files(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.txt does not exist"):
        read_training_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match=r"empty\.txt holds no sentences"):
        read_training_file(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\nx,y\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: header"):
        read_training_file(bad)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("sent0,sent1,hard_neg\nx,y,z\nx,y\n")
    with pytest.raises(ValueError, match=r"ragged\.csv:3: expected 3"):
        read_training_file(ragged)


def test_training_files_split_on_newlines_only(tmp_path):
    """Lines end at \n or \r\n (as SimCSE reads them), not at the other characters
    str.splitlines() breaks on (\x85, \u2028, form feed); quoted CSV fields may hold commas and
    newlines; blank lines are skipped and counted."""
    txt = tmp_path / "wiki.txt"
    txt.write_bytes("one \u2028 sentence\r\nform\x0cfeed and \x85 next\n\nlast\n".encode())
    data = read_training_file(txt)
    assert data.examples == [("one \u2028 sentence",), ("form\x0cfeed and \x85 next",), ("last",)]
    assert data.skipped_empty == 1
    csv_file = tmp_path / "nli.csv"
    csv_file.write_text('sent0,sent1,hard_neg\n"a, b","c\nd",e \u2028 f\n\ng,h,i\n')
    data = read_training_file(csv_file)
    assert data.examples == [("a, b", "c\nd", "e \u2028 f"), ("g", "h", "i")]
    assert data.skipped_empty == 1


def test_batch_larger_than_data(tmp_path):
    data = write_sentences(tmp_path / "few.txt", n=5)
    with pytest.raises(ValueError, match=r"batch size 8 .* larger than the 5 examples.*size 5 or"):
        make_trainer(tmp_path, data=data)
    # One sentence: no batch size has a negative, so none is suggested (batch 1 trains nothing).
    one = write_sentences(tmp_path / "one.txt", n=1)
    with pytest.raises(ValueError, match=r"larger than the 1 examples.*needs at least 2") as err:
        make_trainer(tmp_path, data=one)
    assert "--batch-size 1" not in str(err.value)


def test_batch_size_one_is_refused_when_it_leaves_no_negative(tmp_path, register_loss):
    """At batch size 1 an unsupervised or (sent0, sent1) batch is a 1x1 similarity matrix:
    InfoNCE of a single logit is 0 and nothing is learned. A hard_neg column is a negative of
    its own, so supervised triplets train at batch 1, except under align-uniform, which reads
    only the in-batch columns."""
    seen = []

    def spy(sim, temperature):
        seen.append((tuple(sim.shape), losses.infonce(sim, temperature).item()))
        return losses.infonce(sim, temperature)

    register_loss("spy", spy)
    pairs, triplets = tmp_path / "pairs.csv", tmp_path / "nli.csv"
    pairs.write_text("sent0,sent1\n" + "".join(f"a {w},the {w}\n" for w in WORDS))
    rows = "".join(f"a {w},the {w},no {w}\n" for w in WORDS)
    triplets.write_text("sent0,sent1,hard_neg\n" + rows)
    for data in (None, pairs):
        with pytest.raises(
            ValueError,
            match=r"batch size 1 x 1 .* leaves spy no negative.*"
            r"loss would be 0.*--batch-size 2 or more",
        ):
            make_trainer(tmp_path, data=data, loss="spy", batch_size=1)
    with pytest.raises(ValueError, match="align-uniform does not use hard_neg columns"):
        make_trainer(tmp_path, data=triplets, loss="align-uniform", batch_size=1)
    make_trainer(tmp_path, data=triplets, loss="spy", batch_size=1, steps=1).train()
    assert seen[0][0] == (1, 2) and seen[0][1] > 0  # the hard negative is the one negative


def test_long_lines_are_truncated_and_counted(tmp_path):
    data = write_sentences(tmp_path / "train.txt", n=16)
    long = " ".join(["word"] * 40)  # 40 tokens + 2 special > max_length 16
    data.write_text(data.read_text() + (long + "\n") * 3)
    tr = make_trainer(tmp_path, data=data, steps=3, batch_size=19)  # one batch = every line
    result = tr.train()
    assert result.truncated == 9  # 3 long lines x 3 steps (each counted once, not per view)
    assert [r["truncated"] for r in read_log(tmp_path / "out")][-1] == 9


def test_supervised_csv_gives_hard_negative_columns(tmp_path, register_loss):
    shapes = []

    def spy(sim, temperature, hard_negative_weight=0.0):
        shapes.append(tuple(sim.shape))
        return losses.sup_simcse(sim, temperature, hard_negative_weight)

    register_loss("spy", spy)
    rows = [f"the {w} sleeps,a {w} rests,no {w} runs" for w in WORDS]
    csv_path = tmp_path / "nli.csv"
    csv_path.write_text("sent0,sent1,hard_neg\n" + "\n".join(rows) + "\n")
    result = make_trainer(tmp_path, data=csv_path, loss="spy", steps=2).train()
    assert result.step == 2
    assert shapes == [(8, 16), (8, 16)]


def test_unknown_loss_and_pooler(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'infonce'"):
        make_trainer(tmp_path, loss="infonse")
    with pytest.raises(ValueError, match="eval_pooler"):
        make_trainer(tmp_path, eval_pooler="mean")


def test_cli_train_wires_the_stsb_dev_scorer(tmp_path, tiny_data):
    from click.testing import CliRunner

    from embeval.cli import main

    data = write_sentences(tmp_path / "train.txt", n=12)
    out = tmp_path / "run"
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(out)]
    args += ["--steps", "2", "--eval-steps", "1", "--batch-size", "4", "--lr", "1e-3"]
    args += ["--eval-data", str(tiny_data), "--no-progress", "--loss", "focal-infonce"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "trained 2 steps; best STS-B dev" in res.output
    log = read_log(out)
    assert [r["step"] for r in log if "stsb_dev" in r] == [0, 1, 2]
    assert all(isinstance(r["uniformity"], float) for r in log if "stsb_dev" in r)
    cfg_saved = json.loads((out / "train_config.json").read_text())
    assert cfg_saved["loss"] == "focal-infonce" and cfg_saved["batch_size"] == 4
    missing = CliRunner().invoke(main, [*args[:4], str(tmp_path / "nope.txt"), *args[5:]])
    assert missing.exit_code == 2 and "nope.txt does not exist" in missing.output
    resumed = CliRunner().invoke(main, [*args, "--resume"])  # finished run: nothing left to do
    assert resumed.exit_code == 0 and "trained 2 steps" in resumed.output


def test_cli_train_names_eval_data_when_stsb_dev_is_missing(tmp_path):
    """train's --data is the training file; the STS-B dev folder is --eval-data, and the error
    must say so (it told the user to point --data at the STS folder)."""
    from embeval.cli import main

    data, empty = write_sentences(tmp_path / "train.txt", n=8), tmp_path / "empty"
    empty.mkdir()
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, [*args, "--steps", "1", "--eval-data", str(empty)])
    assert res.exit_code == 2
    assert "(--eval-data): no STS data found" in res.output
    assert "point --eval-data / $EMBEVAL_DATA at" in res.output
    assert "point --data" not in res.output


def test_simcse_poolers_fill_in_what_the_user_left_out():
    assert simcse_poolers(None) == ("cls", "cls_before_pooler")  # plain HF encoder: SimCSE
    assert simcse_poolers("cls_before_pooler") == ("cls", "cls_before_pooler")  # embeval output
    assert simcse_poolers("avg") == ("avg", "avg")  # sentence-transformers mean pooling
    assert simcse_poolers("cls") == ("cls", "cls")
    # An explicit training pooler decides the evaluation one: SimCSE's --pooler_type avg
    # evaluates with avg; only the [CLS] MLP is dropped after training.
    assert simcse_poolers(None, pooler="avg") == ("avg", "avg")
    assert simcse_poolers("avg", pooler="cls") == ("cls", "cls_before_pooler")
    assert simcse_poolers("avg", eval_pooler="cls_before_pooler") == ("avg", "cls_before_pooler")
    assert simcse_poolers(None, "avg_top2", "avg") == ("avg_top2", "avg")


def test_cli_train_defaults_to_the_pooling_the_checkpoint_declares(tmp_path):
    """Fine-tuning the packaged all-MiniLM-L6-v2 (mean pooling) trains and saves with avg unless
    told otherwise; its own checkpoint then encodes as the original does. A checkpoint written by
    `embeval train` (cls_before_pooler) gets SimCSE's cls + MLP back."""
    from click.testing import CliRunner

    from embeval.cli import main
    from embeval.core.model import default_checkpoint_path

    data = write_sentences(tmp_path / "train.txt", n=8)

    def run(model, out, *extra):
        args = ["train", "--model", str(model), "--data", str(data), "--out", str(out)]
        res = CliRunner().invoke(
            main, [*args, "--steps", "0", "--batch-size", "4", "--no-eval", *extra]
        )
        assert res.exit_code == 0, res.output
        saved = json.loads((out / "train_config.json").read_text())
        return saved["pooler"], saved["eval_pooler"], res.output

    minilm = default_checkpoint_path()
    pooler, eval_pooler, output = run(minilm, tmp_path / "a")
    assert (pooler, eval_pooler) == ("avg", "avg") and "pools with avg" in output
    texts = ["a cat sat on the mat", "the river runs fast"]
    (orig, tok, _), (saved, _, info) = load_model(minilm), load_model(tmp_path / "a" / "best")
    assert info.pooler == "avg"
    assert torch.allclose(embed(orig, tok, texts), embed(saved, tok, texts), atol=1e-5)
    # all-MiniLM-L6-v2 ends with Normalize; its fine-tuned checkpoint keeps it unless told not to
    assert info.normalize and saved_modules(tmp_path / "a" / "best")[-1] == "Normalize"
    assert run(minilm, tmp_path / "b", "--pooler", "cls")[:2] == ("cls", "cls_before_pooler")
    assert run(tmp_path / "a" / "best", tmp_path / "c", "--eval-pooler", "cls_before_pooler")[
        :2
    ] == ("avg", "cls_before_pooler")
    assert run(tmp_path / "c" / "best", tmp_path / "d")[:2] == ("cls", "cls_before_pooler")
    run(minilm, tmp_path / "e", "--no-normalize")
    assert saved_modules(tmp_path / "e" / "best") == ["Transformer", "Pooling"]
    run(tmp_path / "e" / "best", tmp_path / "f", "--normalize")
    assert saved_modules(tmp_path / "f" / "best")[-1] == "Normalize"


def saved_modules(path):
    """The class names of a checkpoint's sentence-transformers modules, in order."""
    modules = json.loads((path / "modules.json").read_text())
    return [m["type"].rsplit(".", 1)[-1] for m in modules]


def test_core_does_not_import_the_evaluation_layer():
    import subprocess
    import sys

    code = (
        "import sys, embeval.core.trainer, embeval.core.losses, embeval.core.distributed; "
        "bad = [m for m in sys.modules if m.startswith('embeval.eval')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_last_batch_of_one_without_a_negative_is_dropped():
    """N mod B == 1 left a 1x1 similarity matrix at each epoch's end (loss 0, but AdamW's momentum
    still moved the weights); a triplet's hard_neg is a negative, so its lone row is kept."""
    from embeval.core.batches import steps_per_epoch
    from embeval.core.train_data import TrainData

    def data(cols, n):
        return TrainData("f", cols, [("s",) * len(cols)] * n)

    one, pairs, triplets = ("sent0",), ("sent0", "sent1"), ("sent0", "sent1", "hard_neg")
    assert steps_per_epoch(2, 1, data(one, 5), "infonce") == 2  # 2 + 2, the 1 dropped
    assert steps_per_epoch(2, 1, data(one, 6), "infonce") == 3
    assert steps_per_epoch(3, 1, data(one, 7), "infonce") == 2
    assert steps_per_epoch(3, 1, data(one, 8), "infonce") == 3  # a last batch of 2 is kept
    assert steps_per_epoch(2, 1, data(pairs, 5), "sup-simcse") == 2
    assert steps_per_epoch(2, 1, data(triplets, 5), "sup-simcse") == 3
    assert steps_per_epoch(2, 1, data(triplets, 5), "align-uniform") == 2
    assert steps_per_epoch(4, 2, data(one, 9), "infonce") == 2  # several processes: ragged dropped
