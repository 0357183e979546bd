"""Does contrastive training lift a randomly initialised encoder's STS-B dev? A settings sweep.

Trains random-tiny (2 layers, hidden 128, the packaged tokenizer) under each setting below and
prints the STS-B dev Spearman trajectory, one line per setting (3 minutes on an H100, about 40 on
2 CPU cores). The README quotes one H100 run made before the Trainer clipped gradients, and CPU
runs (`--match`) of the later rows and of three earlier ones with clipping. The
SNLI rows use the triplets as they are; the smoke test drops rows that share a sentence with STS-B
dev first.

    python benchmarks/sweep_random_tiny.py [--data ../shared/data] [--steps 500] [--only wiki|nli]
        [--match SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import data_root

AVG = {"pooler": "avg", "eval_pooler": "avg"}
FOCAL = {"loss": "focal-infonce"}
SETTINGS = {  # name -> (training file, TrainConfig overrides)
    "wiki simcse lr 3e-5": ("wiki", {"lr": 3e-5}),
    "wiki simcse lr 1e-4": ("wiki", {"lr": 1e-4}),
    "wiki simcse lr 5e-4": ("wiki", {"lr": 5e-4}),
    "wiki focal lr 1e-4": ("wiki", {"lr": 1e-4, "loss": "focal-infonce"}),
    "wiki avg tau .05 lr 3e-3": ("wiki", {**AVG, "lr": 3e-3}),
    "wiki avg tau .1 lr 3e-3": ("wiki", {**AVG, "lr": 3e-3, "temperature": 0.1}),
    "wiki avg focal tau .1 lr 3e-3": (
        "wiki",
        {**AVG, "lr": 3e-3, "temperature": 0.1, "loss": "focal-infonce"},
    ),
    "wiki avg tau .2 lr 1e-3": ("wiki", {**AVG, "lr": 1e-3, "temperature": 0.2}),
    "wiki avg focal tau .2 lr 3e-3": ("wiki", {**AVG, "lr": 3e-3, "temperature": 0.2, **FOCAL}),
    "wiki avg focal tau .1 lr 3e-3 m .1": (
        "wiki",
        {**AVG, "lr": 3e-3, "temperature": 0.1, "focal_m": 0.1, **FOCAL},
    ),
    "wiki avg focal tau .1 lr 1e-3": ("wiki", {**AVG, "lr": 1e-3, "temperature": 0.1, **FOCAL}),
    "wiki avg focal tau .05 lr 3e-3": ("wiki", {**AVG, "lr": 3e-3, **FOCAL}),
    "wiki avg tau .1 lr 1e-2": ("wiki", {**AVG, "lr": 1e-2, "temperature": 0.1}),
    "wiki avg tau .1 lr 3e-3 dropout .3": (
        "wiki",
        {**AVG, "lr": 3e-3, "temperature": 0.1, "dropout": 0.3},
    ),
    "wiki avg focal tau .1 lr 3e-3 dropout .3": (
        "wiki",
        {**AVG, "lr": 3e-3, "temperature": 0.1, "dropout": 0.3, "loss": "focal-infonce"},
    ),
    "nli avg lr 1e-3": ("nli", {**AVG, "lr": 1e-3}),
    "nli avg focal lr 1e-3": ("nli", {**AVG, "lr": 1e-3, "loss": "focal-infonce"}),
}
FILES = {
    "wiki": "train/wiki1m_for_simcse.first11914.txt",
    "nli": "train/snli_devtest_triplets_for_simcse.csv",
}


def run(name: str, data: Path, steps: int, device: str) -> str:
    from embeval.cli import stsb_dev_evaluator
    from embeval.core.model import random_tiny
    from embeval.core.trainer import TrainConfig, Trainer

    which, overrides = SETTINGS[name]
    backbone, tok = random_tiny(42)
    cfg = TrainConfig(steps=steps, eval_steps=max(1, steps // 5), **overrides)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        evaluate = stsb_dev_evaluator(tok, data, device, 256)
        Trainer(backbone, tok, data / FILES[which], cfg, out, evaluate, device, False).train()
        rows = [json.loads(x) for x in Path(out, "train_log.jsonl").read_text().splitlines()]
    dev = " ".join(f"{r['step']}:{r['stsb_dev']:.1f}" for r in rows if "stsb_dev" in r)
    return f"{name:32s} {dev}   ({time.perf_counter() - t0:.0f} s)"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--only", choices=["wiki", "nli"])
    ap.add_argument("--match", default="", help="run only settings whose name contains this")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"random-tiny, STS-B dev Spearman by step; {args.steps} steps, device {args.device}")
    for name, (which, _) in SETTINGS.items():
        if args.only in (None, which) and args.match in name:
            print(run(name, Path(args.data), args.steps, args.device), flush=True)


if __name__ == "__main__":
    main()
