"""Does contrastive training lift a randomly initialised encoder's STS-B dev? A settings sweep.

Trains random-tiny (2 layers, hidden 128, the packaged tokenizer) under each setting below and
prints the STS-B dev Spearman trajectory, one line per setting (the first rows took 3 minutes on an
H100; all of them take several hours on 2 CPU cores). docs/random-tiny-sweep.md quotes one H100 run
of the first rows made before the Trainer clipped gradients, and CPU runs (`--match`) of the later
rows and of three earlier ones with clipping. Each row trains `--steps` steps unless it sets its
own (the later rows: 300, or 500 where named). The last controls change the model: one layer,
position vectors zeroed and frozen, or only the word embeddings trained; three ablations keep one
of Focal-InfoNCE's two modulating factors and drop the other; the controls added after them train
SimCSE's MLP over [CLS], freeze the word vectors, or clean the training file. The SNLI rows use the
triplets as they are; the smoke test drops rows sharing a sentence with STS-B dev first.
Figures quoted with another seed than 42 (initial weights, data order, dropout) used `--seed`.

    python benchmarks/sweep_random_tiny.py [--data ../shared/data] [--steps 500] [--only wiki|nli]
        [--match SUBSTRING] [--seed 42]
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
CLS_MLP = {"pooler": "cls", "eval_pooler": "cls_before_pooler"}  # SimCSE's pair, the default
LATER = {**AVG, "lr": 3e-3, "temperature": 0.1, "steps": 300}  # the later rows' base
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
        {**AVG, "lr": 3e-3, "temperature": 0.1, "loss_args": {"m": 0.1}, **FOCAL},
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
    # Later rows, 300 steps unless named: more negatives, and controls for the fall.
    "wiki avg tau .1 lr 3e-3 b256": ("wiki", {**LATER, "batch_size": 256}),
    "wiki avg focal tau .1 lr 3e-3 b256": ("wiki", {**LATER, **FOCAL, "batch_size": 256}),
    "wiki avg focal tau .1 lr 1e-3 b256": (
        "wiki",
        {**LATER, **FOCAL, "batch_size": 256, "lr": 1e-3},
    ),
    "wiki avg focal tau .2 lr 3e-3 b256": (
        "wiki",
        {**LATER, **FOCAL, "batch_size": 256, "temperature": 0.2},
    ),
    "wiki avg focal tau .1 lr 3e-3 b512": ("wiki", {**LATER, **FOCAL, "batch_size": 512}),
    "wiki avg focal tau .05 lr 3e-3 b512": (
        "wiki",
        {**LATER, **FOCAL, "batch_size": 512, "temperature": 0.05},
    ),
    "wiki avg focal tau .1 lr 3e-3 b1024": ("wiki", {**LATER, **FOCAL, "batch_size": 1024}),
    "wiki avg focal tau .1 lr 3e-4 500 steps": (
        "wiki",
        {**LATER, **FOCAL, "lr": 3e-4, "steps": 500},
    ),
    "wiki avg focal tau .1 lr 3e-3 warmup 100": ("wiki", {**LATER, **FOCAL, "warmup_steps": 100}),
    "wiki avg focal tau .1 lr 3e-3 dropout 0": ("wiki", {**LATER, **FOCAL, "dropout": 0.0}),
    "wiki avg focal tau .1 lr 3e-3 1 layer": ("wiki", {**LATER, **FOCAL, "_layers": 1}),
    "wiki avg focal tau .1 lr 3e-3 no positions": (
        "wiki",
        {**LATER, **FOCAL, "_no_positions": True},
    ),
    "wiki avg focal tau .1 lr 3e-3 word emb only": (
        "wiki",
        {**LATER, **FOCAL, "_words_only": True},
    ),
    "wiki avg tau .1 lr 3e-3 word emb only": ("wiki", {**LATER, "_words_only": True}),
    # Which of Focal-InfoNCE's two factors does it: each alone (losses defined below), and
    # InfoNCE's own way of weighting hard negatives up, a lower temperature.
    "wiki avg tau .05 lr 3e-3 b256": ("wiki", {**LATER, "batch_size": 256, "temperature": 0.05}),
    "wiki avg focal positive factor only b256": (
        "wiki",
        {**LATER, "batch_size": 256, "loss": "focal-positive-only"},
    ),
    "wiki avg focal negative factor only b256": (
        "wiki",
        {**LATER, "batch_size": 256, "loss": "focal-negatives-only"},
    ),
    "wiki avg focal negative factor only m 0 b256": (
        "wiki",
        {**LATER, "batch_size": 256, "loss": "focal-negatives-only", "loss_args": {"m": 0.0}},
    ),
    # Controls added later (batch 256): SimCSE's MLP over [CLS] in training at the later rows'
    # tau and lr; the random word vectors frozen (only the layers learn); the training file without
    # its short lines (under 4 words) and exact repeats (false negatives when two share a batch).
    "wiki cls-mlp tau .1 lr 3e-3 b256": ("wiki", {**LATER, **CLS_MLP, "batch_size": 256}),
    "wiki cls-mlp focal tau .1 lr 3e-3 b256": (
        "wiki",
        {**LATER, **CLS_MLP, **FOCAL, "batch_size": 256},
    ),
    "wiki avg tau .1 lr 3e-3 b256 frozen word emb": (
        "wiki",
        {**LATER, "batch_size": 256, "_freeze_words": True},
    ),
    "wiki avg focal tau .1 lr 3e-3 b256 frozen word emb": (
        "wiki",
        {**LATER, **FOCAL, "batch_size": 256, "_freeze_words": True},
    ),
    "wiki avg focal tau .1 lr 3e-3 b256 no short lines or duplicates": (
        "wiki",
        {**LATER, **FOCAL, "batch_size": 256, "_clean_file": True},
    ),
    "nli avg lr 1e-3": ("nli", {**AVG, "lr": 1e-3}),
    "nli avg focal lr 1e-3": ("nli", {**AVG, "lr": 1e-3, "loss": "focal-infonce"}),
}
FILES = {
    "wiki": "train/wiki1m_for_simcse.first11914.txt",
    "nli": "train/snli_devtest_triplets_for_simcse.csv",
}


def clean_copy(src: Path, dst: Path) -> Path:
    """`src` without lines of fewer than 4 words and without repeats of a line already kept
    (wiki1m's first lines hold 1,101 lines of 1-3 words and 366 repeats, e.g. Olympic templates)."""
    kept = dict.fromkeys(
        x for x in src.read_text(encoding="utf-8").splitlines() if len(x.split()) >= 4
    )
    dst.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return dst


def focal_positive_only(sim, temperature: float = 0.05):  # (B, B+k) -> scalar
    """Ablation: Focal-InfoNCE's positive logit s_p * s_p / tau, negatives as in InfoNCE."""
    from embeval.core.losses import modulated_infonce

    return modulated_infonce(sim, temperature, pos_weight=sim.diagonal())


def focal_negatives_only(sim, temperature: float = 0.05, m: float = 0.3):  # (B, B+k) -> scalar
    """Ablation: Focal-InfoNCE's negative logits s_n * (s_n + m) / tau, positive as InfoNCE."""
    from embeval.core.losses import modulated_infonce

    return modulated_infonce(sim, temperature, neg_weight=sim + m)


def dev_sims(enc, data: Path):
    """(cosine per STS-B dev pair, gold) from an encoder, as `embeval score` computes them."""
    from embeval.eval.scoring.score import score

    pairs = score(enc, ["STSBenchmark"], split="dev", root=data, diagnostics=False).pairs
    return pairs["STSBenchmark"]["sim"], pairs["STSBenchmark"]["gold"]


def run(name: str, data: Path, steps: int, device: str, seed: int = 42) -> str:
    """One setting: the dev trajectory, and the paired bootstrap p (two-sided) that the last
    checkpoint and the untrained model differ on STS-B dev. `seed` draws the initial weights and
    the data order and dropout (42: the figures quoted unless a seed is named)."""
    from embeval.cli.train import stsb_dev_evaluator
    from embeval.core.model import SentenceModel, random_tiny
    from embeval.core.trainer import TrainConfig, Trainer
    from embeval.eval.encoders.transformer import TransformerEncoder
    from embeval.eval.metrics.stats import paired_bootstrap

    which, overrides = SETTINGS[name]
    overrides = {"steps": steps, "seed": seed, **overrides}
    backbone, tok = random_tiny(seed, layers=overrides.pop("_layers", 2))
    if overrides.pop("_no_positions", False):  # control: no length cue from position vectors
        backbone.embeddings.position_embeddings.weight.data.zero_()
        backbone.embeddings.position_embeddings.requires_grad_(False)
    if overrides.pop("_words_only", False):  # control: the random layers stay as they are
        for pname, param in backbone.named_parameters():
            param.requires_grad_(pname == "embeddings.word_embeddings.weight")
    if overrides.pop("_freeze_words", False):  # control: the random word vectors stay as they are
        backbone.embeddings.word_embeddings.weight.requires_grad_(False)
    clean = overrides.pop("_clean_file", False)  # control: no short or repeated training lines
    cfg = TrainConfig(eval_steps=max(1, overrides["steps"] // 5), **overrides)
    t0 = time.perf_counter()
    # Scored before training, in eval mode (no dropout, no RNG draws): the run is unchanged.
    untrained = SentenceModel(backbone, cfg.eval_pooler).eval()
    sim0, gold = dev_sims(TransformerEncoder(untrained, tok, device=device, progress=False), data)
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as scratch:
        evaluate = stsb_dev_evaluator(tok, data, device, 256)
        train_file = data / FILES[which]
        if clean:
            train_file = clean_copy(train_file, Path(scratch, train_file.name))
        Trainer(backbone, tok, train_file, cfg, out, evaluate, device, False).train()
        rows = [json.loads(x) for x in Path(out, "train_log.jsonl").read_text().splitlines()]
        last = TransformerEncoder.from_checkpoint(
            str(Path(out, "last")), progress=False, device=device
        )
        sim1, _ = dev_sims(last, data)
    dev = " ".join(f"{r['step']}:{r['stsb_dev']:.1f}" for r in rows if "stsb_dev" in r)
    p = paired_bootstrap(sim1, sim0, gold)
    tag = "" if seed == 42 else f" seed {seed}"
    return f"{name + tag:32s} {dev}  p={p:.3f}  ({time.perf_counter() - t0:.0f} s)"


def idf_bag_of_words(data: Path, dim: int = 128) -> str:
    """What a random encoder could gain by learning token frequencies alone: STS-B dev Spearman
    of averaged random token vectors (what untrained random-tiny scores), and of the same vectors
    weighted by their IDF over the wiki1m training sentences."""
    import numpy as np
    from scipy.stats import spearmanr
    from transformers import AutoTokenizer

    from embeval.core.model import default_checkpoint_path
    from embeval.eval.data.sts import load_sts

    tok = AutoTokenizer.from_pretrained(str(default_checkpoint_path()))

    def ids(texts: list[str]) -> list[list[int]]:
        return tok(texts, add_special_tokens=False)["input_ids"]

    wiki = (data / FILES["wiki"]).read_text(encoding="utf-8").split("\n")
    df = np.zeros(tok.vocab_size)
    for sent in ids(wiki):
        df[list(set(sent))] += 1
    idf = np.log((len(wiki) + 1) / (df + 1))
    vectors = np.random.default_rng(0).standard_normal((tok.vocab_size, dim))
    dev = load_sts("STSBenchmark", "dev", data)
    out = []
    for name, weight in (("uniform", np.ones_like(idf)), ("idf", idf)):
        a, b = ([(weight[s, None] * vectors[s]).mean(0) for s in ids(x)] for x in (dev.s1, dev.s2))
        a, b = np.array(a), np.array(b)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        out.append(f"{name} {100 * spearmanr(cos, dev.gold)[0]:.1f}")
    return f"averaged random token vectors, no training: {', '.join(out)}"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--only", choices=["wiki", "nli"])
    ap.add_argument("--match", default="", help="run only settings whose name contains this")
    ap.add_argument("--seed", type=int, default=42, help="initial weights, data order, dropout")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from embeval.core.losses import LOSSES

    # the ablation rows' losses, for this process only
    LOSSES.add("focal-positive-only", focal_positive_only)
    LOSSES.add("focal-negatives-only", focal_negatives_only)
    print(idf_bag_of_words(Path(args.data)), flush=True)
    steps = f"{args.steps} steps unless the row sets its own"
    print(f"random-tiny, STS-B dev Spearman by step; {steps}, device {args.device}")
    for name, (which, _) in SETTINGS.items():
        if args.only in (None, which) and args.match in name:
            print(run(name, Path(args.data), args.steps, args.device, args.seed), flush=True)


if __name__ == "__main__":
    main()
