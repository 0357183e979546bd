"""`embeval reproduce` end to end on random-tiny: cells are trained and scored once, an
interrupted cell resumes from its checkpoint and the tables come out as an uninterrupted run's,
a new seed runs only its cells, and Ray gives the same results files as --jobs 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_report_browser import assert_drawn, laid_out

from embeval.reproduce.card import load_card
from embeval.reproduce.cells import cell_state, plan
from embeval.results.files import load_run

ROOT = Path(__file__).resolve().parents[1]
CARD = """
name = "tiny"
models = ["random-tiny"]
data = "train.txt"
seeds = {seeds}
steps = {steps}
baseline = "simcse"
[train]
batch_size = 8
lr = 1e-3
pooler = "avg"
eval_pooler = "avg"
eval_steps = {eval_steps}
save_steps = 2
[methods.simcse]
loss = "infonce"
[methods.focal]
loss = "focal-infonce"
[eval]
tasks = ["STSBenchmark", "SICKRelatedness"]
data = "data"
"""


def make_card(tmp_path, name="card.toml", seeds=(1,), steps=4, eval_steps=2) -> Path:
    words = "the a cat dog sits runs red blue sky car bus barks under over near far".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 6)) for _ in range(64)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    p = tmp_path / name
    p.write_text(CARD.format(seeds=list(seeds), steps=steps, eval_steps=eval_steps))
    return p


def reproduce(card, out, *args, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "embeval.cli", "reproduce", str(card), "--out", str(out),
           "--bootstrap", "50", *args]  # fmt: skip
    if not wait:
        return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def figures(out: Path) -> dict:
    """Every cell's scores and per-pair similarities (run ids and timings aside)."""
    got = {}
    for res in sorted(out.glob("cells/*/results.json")):
        run = load_run(res)
        sims = {t: p["sim"].tolist() for t, p in run.load_pairs().items()}
        got[res.parent.name] = (run.tasks, sims, run.meta["reproduce"])
    return got


@pytest.mark.slow  # 10 random-tiny cell runs, 2 subprocesses each: 131 s on 2 cores (load 3)
def test_interrupted_run_resumes_to_the_uninterrupted_tables(tmp_path, tiny_data):
    assert tiny_data == tmp_path / "data"  # the card reads data = "data"
    card = make_card(tmp_path, steps=40, eval_steps=20)
    reproduce(card, tmp_path / "whole")

    out = tmp_path / "cut"
    proc = reproduce(card, out, wait=False)
    c = load_card(card)
    first, second = (plan(c, out, cell) for cell in c.cells())
    deadline = time.time() + 300
    while not (Path(second.folder) / "train" / "last").is_dir():  # second cell mid-training
        assert proc.poll() is None and time.time() < deadline, "the run ended before the cut"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert cell_state(Path(first.folder), first.meta) == "done"
    assert cell_state(Path(second.folder), second.meta) == "partial"
    done_id = json.loads((Path(first.folder) / "results.json").read_text())["run_id"]

    printed = reproduce(card, out, "--dry-run")
    assert "done     random-tiny__simcse__seed1" in printed
    assert "partial  random-tiny__focal__seed1" in printed
    reproduce(card, out)
    assert json.loads((Path(first.folder) / "results.json").read_text())["run_id"] == done_id
    assert "--resume" in (Path(second.folder) / "cell.log").read_text()  # not retrained
    assert figures(out) == figures(tmp_path / "whole")
    for name in ("summary.csv", "summary.md"):
        assert (out / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert "Experiment card" in (out / "report.html").read_text()
    got, _ = laid_out(out / "report.html", tmp_path)  # the card's report, in a real browser
    assert got["imgs"] and len(got["tables"]) >= 2
    assert_drawn(got)

    # a new seed: only its two cells run, the others keep their results files
    more = make_card(tmp_path, seeds=(1, 2), steps=40, eval_steps=20)
    printed = reproduce(more, out)
    assert printed.count("  done") == 2 + 2  # listed as done, then the two new ones finishing
    assert json.loads((Path(first.folder) / "results.json").read_text())["run_id"] == done_id
    csv = (out / "summary.csv").read_text()
    assert "1:" in csv and "2:" in csv  # per-seed values of both seeds


@pytest.mark.slow  # a local Ray cluster and four cells: 90 s on 2 cores (load 3)
def test_ray_gives_the_results_of_jobs_1(tmp_path, tiny_data):
    assert tiny_data == tmp_path / "data"
    pytest.importorskip("ray", reason="the ray extra: pip install 'embeval[ray]'")
    card = make_card(tmp_path)
    reproduce(card, tmp_path / "local", "--jobs", "1")
    reproduce(card, tmp_path / "ray", "--executor", "ray")
    local, ray = figures(tmp_path / "local"), figures(tmp_path / "ray")
    assert len(local) == 2 and local == ray


@pytest.mark.slow  # one cell, its training two gloo processes under torchrun: ~40 s on 2 cores
def test_a_multi_process_cell_trains_through_torchrun(tmp_path, tiny_data):
    """`processes = 2`: the cell's `embeval train` runs as two ranks of the distributed Trainer
    (a global batch of 2 x 8), then scores best/ once; its results record the setting."""
    card = make_card(tmp_path, steps=2, eval_steps=2)
    text = card.read_text().replace('[methods.focal]\nloss = "focal-infonce"\n', "")
    card.write_text(text.replace('baseline = "simcse"', 'baseline = "simcse"\nprocesses = 2'))
    reproduce(card, tmp_path / "out")
    cell = tmp_path / "out" / "cells" / "random-tiny__simcse__seed1"
    cfg = json.loads((cell / "train" / "train_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["batch_size"] == 8
    assert load_run(cell / "results.json").meta["reproduce"]["processes"] == 2
    assert (
        "-m torch.distributed.run --standalone --nproc-per-node=2"
        in (cell / "cell.log").read_text()
    )
