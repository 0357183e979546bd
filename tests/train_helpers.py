"""Small training-test helpers shared by the trainer, distributed, GPU, smoke and recipe tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

WORDS = "cat dog bird fish sun moon tree river road city car boat house lamp book song".split()


def write_sentences(path, n=40):
    """n distinct short sentences: word pairs drawn in a fixed order from WORDS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"the {WORDS[i % 16]} saw a {WORDS[(i * 7 + 3) % 16]} number {i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_log(out):
    """Every record of OUT/train_log.jsonl, in order."""
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def train_until_interrupted(trainer, step):
    """trainer.train() stopped by a Ctrl-C at the end of STEP, as a user's Ctrl-C stops it (the
    Trainer saves last/ and re-raises); a fresh Trainer's train(resume=True) then carries on."""

    def interrupt(_, at):
        if at == step:
            raise KeyboardInterrupt

    trainer.on_step_end.append(interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


def run_recipe(script, data, out, cwd, *args, **knobs):
    """Run examples/SCRIPT shrunk for a test: this environment's embeval and torchrun first on
    PATH, offline, random-tiny for BERT-base, the shared DATA (its 11,914 wiki1m sentences), OUT,
    no GPU, plus the script's own KNOBS (EXTRA, BATCH, ...). Fails the test with the output's tail
    unless the script exits 0."""
    data = Path(data).resolve()  # the script runs in cwd; the data path may be relative
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "MODEL": "random-tiny",
        "DATA_DIR": str(data),
        "WIKI": str(data / "train" / "wiki1m_for_simcse.first11914.txt"),
        "OUT": str(out),
        "CUDA_VISIBLE_DEVICES": "",
        **{key: str(value) for key, value in knobs.items()},
    }
    res = subprocess.run(
        ["bash", str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res
