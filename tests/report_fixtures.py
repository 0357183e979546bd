"""Results files for report/check tests, made cheaply.

`scored_run` scores the tiny SentEval tree (conftest.write_tiny_sts) with a fake encoder, so the
files are exactly what `embeval score` writes. `synthetic_run` builds an STS-B-dev-like run with
N synthetic pairs (gold uniform in [0, 5] rounded to 0.2, prediction = gold + Gaussian noise), for
tests that need enough pairs for the bootstrap to be meaningful.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from embeval.eval.scoring.score import score
from embeval.results.files import RunResult, save_run


class BowEncoder:
    """Bag-of-words vectors (word -> dimension by sha256): ranks the tiny data nearly right."""

    fingerprint = "bow-v1"

    def encode(self, sentences):
        out = np.zeros((len(sentences), 64), np.float32)
        for i, s in enumerate(sentences):
            for w in s.split():
                out[i, hashlib.sha256(w.encode()).digest()[0] % 64] += 1
        return out + 1e-3  # no all-zero row

    def describe(self):
        return {"checkpoint": "bow", "fingerprint": self.fingerprint, "pooler": "none"}


def scored_run(encoder, root: Path, out: Path, name: str, tasks=None, **kw) -> Path:
    run = score(encoder, tasks, root=root, name=name, **kw)
    return save_run(run, out)


def synthetic_run(
    out: Path,
    name: str,
    noise: float,
    n: int = 400,
    seed: int = 0,
    data_seed: int = 0,
    split: str = "dev",
    meta: dict | None = None,
    tasks_extra: dict | None = None,
) -> Path:
    rng = np.random.default_rng(data_seed)
    gold = np.round(rng.uniform(0, 5, n) * 5) / 5
    s1 = np.array([f"sentence a{i}" for i in range(n)])
    s2 = np.array([f"sentence b{i}" for i in range(n)])
    sim = gold / 5 + noise * np.random.default_rng(seed).standard_normal(n)
    task = {
        "split": split,
        "n": n,
        "spearman": 100 * float(spearmanr(sim, gold)[0]),
        "pearson": 100 * float(pearsonr(sim, gold)[0]),
    }
    run = RunResult(
        name=name,
        meta={
            "protocol": "simcse",
            "split": split,
            "limit": None,
            "partial": False,
            **(meta or {}),
        },
        tasks={"STSBenchmark": task, **(tasks_extra or {})},
        diagnostics={
            "source": f"STSBenchmark/{split}",
            "alignment": 0.2 + noise,
            "uniformity": -3.0,
        },
        pairs={
            "STSBenchmark": {
                "sim": sim,
                "gold": gold,
                "subset": np.array(["x"] * n),
                "s1": s1,
                "s2": s2,
            }
        },
    )
    return save_run(run, out)


def edit_json(path: Path, fn) -> Path:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path
