"""Saved outputs of `embeval score` and `embeval train`, to prove a refactor changes no figure.

`python tools/golden_outputs.py --write tests/golden/outputs` runs every case below through the
CLI (a subprocess per command, as a user runs it) and saves what each produced, trimmed to what
must not change: the figures of a results file (tasks, averages, diagnostics, counts) and the
records of a training log (all but the throughput). `tests/test_golden_outputs.py` runs the same
cases and compares with the saved files.

The files were written on main before the "one method, one place" reshape (issue 15).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> arguments of `embeval score` (the packaged all-MiniLM-L6-v2)
SCORE_CASES = {
    "score-sts-test": [],
    "score-sts-dev": ["--split", "dev"],
    "score-mteb": ["--protocol", "mteb"],
    "score-transfer": ["--tasks", "transfer"],
}
# name -> (training file under DATA/train, arguments of `embeval train` on random-tiny)
TRAIN_CASES = {
    # unsupervised SimCSE: dropout twins, SimCSE's MLP pooler in training, [CLS] in evaluation
    "train-unsup-infonce": (
        "wiki1m_for_simcse.first11914.txt",
        ["--loss", "infonce", "--steps", "16", "--eval-steps", "8", "--log-steps", "4"],
    ),
    # supervised CSV with hard negatives, a loss hyper-parameter set by its own flag
    "train-sup-focal": (
        "snli_devtest_triplets_for_simcse.csv",
        ["--loss", "focal-infonce", "--focal-m", "0.2", "--steps", "16", "--eval-steps", "8"]
        + ["--log-steps", "4", "--pooler", "avg", "--eval-pooler", "avg", "--temp", "0.07"],
    ),
    "train-sup-simcse-hardneg": (
        "snli_devtest_triplets_for_simcse.csv",
        ["--loss", "sup-simcse", "--hard-negative-weight", "0.5", "--steps", "12", "--no-eval"]
        + ["--log-steps", "3", "--pooler", "avg", "--eval-pooler", "avg", "--dropout", "0.2"],
    ),
    "train-align-uniform": (
        "wiki1m_for_simcse.first11914.txt",
        ["--loss", "align-uniform", "--uniformity-weight", "0.5", "--steps", "8", "--no-eval"]
        + ["--log-steps", "2", "--pooler", "avg_first_last", "--eval-pooler", "avg"],
    ),
}
TRAIN_COMMON = ["--model", "random-tiny", "--batch-size", "16", "--lr", "1e-3", "--no-progress"]
# Cases scored with a cache of their own, never one the other cases warmed: a transfer
# classifier's chosen C can move with a 1-ulp change of the vectors, and a sentence's vector
# depends on the batch it was encoded in, which a warm cache changes (fewer sentences to encode).
OWN_CACHE = ("score-transfer",)
# Results fields that hold figures; the rest (times, paths, versions) may change freely.
FIGURE_FIELDS = ("name", "tasks", "avg", "transfer_avg", "diagnostics")
UNTIMED = ("sentences_per_s",)


def embeval(args: list[str], env: dict) -> None:
    cmd = [sys.executable, "-m", "embeval.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")


def figures(results_json: Path) -> dict:
    """The part of a results file a refactor must leave unchanged."""
    data = json.loads(results_json.read_text())
    out = {k: data.get(k) for k in FIGURE_FIELDS}
    out["n_sentences"] = data["meta"]["n_sentences"]
    return out


def log_records(train_log: Path) -> list[dict]:
    recs = [json.loads(line) for line in train_log.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in UNTIMED} for r in recs]


def run_case(name: str, data: Path, work: Path, cache: Path) -> object:
    """Run one case into `work`; its trimmed output (a dict, or a list of log records)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEVAL_CACHE": str(cache)}
    if name in SCORE_CASES:
        out = work / f"{name}.json"
        embeval(["score", *SCORE_CASES[name], "--data", str(data), "--out", str(out)], env)
        return figures(out)
    file, args = TRAIN_CASES[name]
    out = work / name
    train_args = ["train", *TRAIN_COMMON, *args, "--data", str(data / "train" / file)]
    embeval([*train_args, "--out", str(out), "--eval-data", str(data)], env)
    return log_records(out / "train_log.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, required=True, help="folder for the saved outputs")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embeval-golden"))
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    a = ap.parse_args()
    a.write.mkdir(parents=True, exist_ok=True)
    for name in a.only or [*SCORE_CASES, *TRAIN_CASES]:
        cache = a.work / ("cache-" + name if name in OWN_CACHE else "cache")
        got = run_case(name, a.data, a.work, cache)
        (a.write / f"{name}.json").write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {a.write / name}.json")


if __name__ == "__main__":
    main()
