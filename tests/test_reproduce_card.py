"""Experiment cards: every mistake is refused, naming the key (with a suggestion), before any
cell runs (the CLI leaves no OUT folder behind)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.reproduce.card import CardError, load_card
from embeval.reproduce.cells import option_args

GOOD = """
name = "t"
models = ["random-tiny"]
data = "train.txt"
seeds = [1, 2]
steps = 3
baseline = "simcse"
[train]
batch_size = 4
[methods.simcse]
loss = "infonce"
[methods.focal]
loss = "focal-infonce"
loss_args = { m = 0.3 }
normalize = true
[eval]
tasks = ["STSBenchmark"]
"""


def card_file(tmp_path, text=GOOD, **replace):
    (tmp_path / "train.txt").write_text("a sentence\nanother one\n")
    for old, new in replace.items():
        old = old.replace("_", " ") if old.startswith("_") else old
        assert old in text, old
        text = text.replace(old, new)
    p = tmp_path / "card.toml"
    p.write_text(text)
    return p


def test_good_card_cells_and_train_options(tmp_path):
    card = load_card(card_file(tmp_path))
    assert card.data == str((tmp_path / "train.txt").resolve())  # relative to the card
    assert [c.key for c in card.cells()] == [
        "random-tiny__simcse__seed1",
        "random-tiny__focal__seed1",
        "random-tiny__simcse__seed2",
        "random-tiny__focal__seed2",
    ]
    assert card.methods["focal"] == {
        "batch_size": 4,
        "loss": "focal-infonce",
        "loss_args": {"m": 0.3},
        "normalize": True,
    }
    assert option_args(card.methods["focal"]) == [
        "--batch-size", "4", "--loss", "focal-infonce", "--loss-arg", "m=0.3", "--normalize",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "replace, expected",
    [
        ({'loss = "infonce"': 'los = "infonce"'}, "unknown option 'los'; did you mean 'loss'"),
        ({'loss = "infonce"': 'loss = "infonse"'}, "did you mean 'infonce'"),
        ({"m = 0.3": "mm = 0.3"}, "[methods.focal]"),
        ({"batch_size = 4": "batchsize = 4"}, "did you mean 'batch_size'"),
        ({"seeds = [1, 2]": "seeds = [1, 2, 1]"}, "seeds lists 1 more than once"),
        ({'data = "train.txt"': 'data = "nope.txt"'}, "nope.txt does not exist"),
        ({'baseline = "simcse"': 'baseline = "simcs"'}, "baseline 'simcs' is not a method"),
        ({"steps = 3": "step = 3"}, "unknown key 'step'; did you mean 'steps'"),
        ({"[train]": "[train]\nseed = 3"}, "seed is set by the card's seeds"),
        ({"[train]": "[train]\nmodel = 'x'"}, "model is set by the card's models"),
        ({'tasks = ["STSBenchmark"]': 'tasks = ["STSBenchmarc"]'}, "eval.tasks"),
        ({"[eval]": "[eval]\nsplitt = 'dev'"}, "did you mean 'split'"),
        ({"steps = 3": "steps = 3 3"}, "not valid TOML"),
        ({"normalize = true": 'matryoshka_dims = "64,x"'}, "matryoshka_dims: '64,x': expected"),
        ({"steps = 3": "steps = 3\nprocesses = 0"}, "processes must be an integer >= 1"),
    ],
)
def test_bad_card_refused_before_anything_runs(tmp_path, replace, expected):
    path = card_file(tmp_path, **replace)
    with pytest.raises(CardError) as exc:
        load_card(path)
    assert expected in str(exc.value)
    assert str(path) in str(exc.value)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["reproduce", str(path), "--out", str(out)])
    assert res.exit_code == 2 and expected in res.output
    assert not out.exists()


def test_options_given_as_cli_text_are_parsed_as_the_cli_does(tmp_path):
    card = load_card(card_file(tmp_path, **{"normalize = true": 'matryoshka_dims = "32,16"'}))
    assert card.methods["focal"]["matryoshka_dims"] == "32,16"
    assert option_args(card.methods["focal"])[-2:] == ["--matryoshka-dims", "32,16"]


def test_missing_card(tmp_path):
    with pytest.raises(CardError, match="does not exist"):
        load_card(tmp_path / "none.toml")


def test_dry_run_lists_cells(tmp_path):
    path = card_file(tmp_path)
    out = str(tmp_path / "o")
    res = CliRunner().invoke(main, ["reproduce", str(path), "--out", out, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.count("todo") == 4
    assert not (tmp_path / "o").exists()


def test_cell_states_from_the_files(tmp_path):
    """todo -> partial (train/last) -> trained (train/DONE) -> done (results with this cell's
    settings); results of other settings are stale, and the CLI refuses to run over them."""
    import json

    from embeval.reproduce.cells import cell_state, plan

    path = card_file(tmp_path)
    card = load_card(path)
    p = plan(card, tmp_path / "out", card.cells()[0])
    folder = tmp_path / "out" / "cells" / card.cells()[0].key
    assert p.folder == str(folder) and cell_state(folder, p.meta) == "todo"
    (folder / "train" / "last").mkdir(parents=True)
    assert cell_state(folder, p.meta) == "partial"
    (folder / "train" / "DONE").write_text("")
    assert cell_state(folder, p.meta) == "trained"
    (folder / "results.json").write_text(json.dumps({"meta": {"reproduce": p.meta}}))
    assert cell_state(folder, p.meta) == "done"
    other = {**p.meta, "settings": {**p.meta["settings"], "lr": 1.0}}
    (folder / "results.json").write_text(json.dumps({"meta": {"reproduce": other}}))
    assert cell_state(folder, p.meta) == "stale"
    res = CliRunner().invoke(main, ["reproduce", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "other settings" in res.output


def test_jobs_run_cells_side_by_side_sharing_the_cores(tmp_path, monkeypatch):
    """--jobs 2 on a CPU machine: two cells at once, each with cores / 2 threads; a failed cell
    is reported without stopping the others."""
    import threading
    import time

    from embeval.reproduce import cells as cl

    card = load_card(card_file(tmp_path))
    plans = [cl.plan(card, tmp_path / "out", c) for c in card.cells()]
    running, most, seen = [0], [0], []
    lock = threading.Lock()

    def fake_run_cell(p, device=None, threads=None, visible=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            seen.append((device, threads))
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        if p.cell.method == "focal" and p.cell.seed == 2:
            raise cl.CellError("boom")
        return p.folder

    monkeypatch.setattr(cl, "run_cell", fake_run_cell)
    monkeypatch.setattr(cl, "gpu_count", lambda: 0)
    monkeypatch.setattr(cl.os, "cpu_count", lambda: 4)
    out = cl.run_plans(plans, jobs=2)
    assert most[0] == 2 and set(seen) == {(None, 2)}
    assert sorted(k for k, v in out.items() if isinstance(v, Exception)) == [
        "random-tiny__focal__seed2"
    ]
    assert len(out) == 4


@pytest.mark.parametrize(
    "gpus, processes, jobs, slots",
    [
        (0, 2, 1, {(None, None, 2)}),  # 4 cores / (1 cell x 2 processes)
        (4, 1, 2, {("cuda:0", None, None), ("cuda:1", None, None)}),
        (4, 2, 2, {(None, "0,1", None), (None, "2,3", None)}),  # a GPU group per cell
        (4, 2, 5, {(None, "0,1", None), (None, "2,3", None)}),  # no more cells than groups
    ],
)
def test_multi_process_cells_get_their_own_cores_or_gpus(tmp_path, monkeypatch, gpus, processes,
                                                          jobs, slots):  # fmt: skip
    """A card's `processes` launches each cell's training through torchrun; on GPUs a cell
    holds `processes` of them (CUDA_VISIBLE_DEVICES), on a CPU its processes share the cores."""
    from embeval.reproduce import cells as cl

    card = load_card(card_file(tmp_path, **{"steps = 3": f"steps = 3\nprocesses = {processes}"}))
    assert card.processes == processes
    assert ("processes" in card.cell_meta(card.cells()[0])) is (processes > 1)
    plans = [cl.plan(card, tmp_path / "out", c) for c in card.cells()]
    seen = set()

    def fake_run_cell(p, device=None, threads=None, visible=None):
        assert p.processes == processes
        seen.add((device, visible, threads))
        return p.folder

    monkeypatch.setattr(cl, "run_cell", fake_run_cell)
    monkeypatch.setattr(cl, "gpu_count", lambda: gpus)
    monkeypatch.setattr(cl.os, "cpu_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert len(cl.run_plans(plans, jobs=jobs)) == 4 and seen <= slots and seen
    if gpus and processes > 1:  # started on GPUs 4-7: a cell's group names those GPUs
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        seen.clear()
        cl.run_plans(plans, jobs=jobs)
        assert {v for _, v, _ in seen} <= {"4,5", "6,7"} and seen


def test_more_processes_than_gpus_is_refused(tmp_path, monkeypatch):
    from embeval.reproduce import cells as cl

    card = load_card(card_file(tmp_path, **{"steps = 3": "steps = 3\nprocesses = 2"}))
    monkeypatch.setattr(cl, "gpu_count", lambda: 1)
    with pytest.raises(cl.CellError, match="asks 2 processes .* this machine has 1"):
        cl.run_plans([cl.plan(card, tmp_path / "out", c) for c in card.cells()])
