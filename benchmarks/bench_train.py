"""Training throughput: embeval's Trainer (InfoNCE) vs sentence-transformers'
MultipleNegativesRankingLoss, one run each, printed side by side.

Same model weights (random-tiny saved once, or --model DIR), batch size, max sequence length,
learning rate, device and batches: sentence-transformers gets exactly the batches embeval's
Trainer draws (its seeded shuffle of the file), so padding lengths match. Both encode every
sentence twice (two dropout views, in-batch negatives, scale 1/tau = 20) and clips the gradient
norm at 1 (the Hugging Face / sentence-transformers default). sentence-transformers
runs in a plain PyTorch loop around `model.tokenize` + `MultipleNegativesRankingLoss` (its
`fit`/Trainer needs the `datasets` package, which embeval does not depend on), so its figure
excludes Trainer overhead. Each side runs in its own process so peak memory (max RSS on CPU, max
allocated on CUDA) is its own; the first 3 steps are warm-up and not timed.

    nice python benchmarks/bench_train.py [--model random-tiny] [--steps 100] [--batch-size 64]

--methods esimcse,consert,distilcse instead times embeval's training methods (METHODS below)
against its own InfoNCE (dropout views) on the same model, batch size and device: examples/s
relative to infonce and peak memory, each in its own process. The supervised methods read
SimCSE's NLI triplets (three sentences an example) unless --data is given; DistilCSE distils the
model from itself, GCSE and DCLR score with a frozen copy of it, DiffCSE's generator is an MLM
built from it. benchmarks/bench_methods.py also scores each method's STS-B dev.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_root

WARMUP = 3
DATA = data_root() / "train/wiki1m_for_simcse.first11914.txt"


def peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batches(args) -> list[list[str]]:
    """The Trainer's batches for the timed run: its reader and its epoch-0 order."""
    from embeval.core.train_data import epoch_order, read_training_file
    from embeval.core.trainer import TrainConfig

    data = read_training_file(args.data)
    n, b = len(data.examples), args.batch_size
    if (WARMUP + args.steps) * b > n:
        sys.exit(f"--steps {args.steps} x batch {b} needs more than the {n} sentences of the file")
    idx = epoch_order(n, TrainConfig().seed, 0).tolist()
    return [
        [data.examples[i][0] for i in idx[k * b : (k + 1) * b]] for k in range(WARMUP + args.steps)
    ]


# embeval's training methods, as TrainConfig fields (see README "Methods from the literature").
# Placeholders filled per model by method_fields: "REFERENCE" (a frozen copy of the starting
# weights), "WIDTHS" (the model's width halved three times), "GENERATOR" (an MLM built from it).
METHODS = {
    "infonce": {},
    "focal-infonce": {"loss": "focal-infonce"},
    "align-uniform": {"loss": "align-uniform"},
    "sup-simcse": {"loss": "sup-simcse"},
    "esimcse": {"view": "esimcse", "negatives": ["momentum-queue"]},
    "consert": {"view": "consert", "loss": "nt-xent", "temperature": 0.1, "dropout": 0.0},
    "distilcse": {"view": "anchors", "negatives": ["teacher"]},
    "promptbert": {
        "view": "promptbert",
        "pooler": "promptbert_denoised",
        "eval_pooler": "promptbert",
    },
    "promcse-hinge": {"loss": "promcse-hinge"},
    "gcse": {"loss": "gcse", "reference_model": "REFERENCE"},
    "dclr": {"loss": "dclr", "negatives": ["dclr-noise"], "reference_model": "REFERENCE"},
    "matryoshka": {"matryoshka_dims": "WIDTHS"},
    "2dmse": {"matryoshka_dims": "WIDTHS", "matryoshka_layers": 1},
    "sbert-nli": {"objective": "sbert-nli"},
    "diffcse": {"objective": "diffcse", "objective_args": {"generator": "GENERATOR"}},
}
SUPERVISED = {"sup-simcse", "promcse-hinge", "gcse", "sbert-nli"}  # trained on NLI triplets
NLI = data_root() / "train/snli_devtest_triplets_for_simcse.csv"


def method_fields(method: str, model: str, hidden: int, generator: str) -> dict:
    """METHODS[method] with its placeholders filled for this model. DistilCSE distils the model
    from itself (queue 1024, within the data); the reference model is `initial`."""
    fields = {k: (dict(v) if isinstance(v, dict) else v) for k, v in METHODS[method].items()}
    if method == "distilcse":
        fields["negatives_args"] = {"teacher": model, "queue_size": 1024}
    if fields.get("reference_model") == "REFERENCE":
        fields["reference_model"] = "initial"
    if fields.get("matryoshka_dims") == "WIDTHS":
        fields["matryoshka_dims"] = [hidden >> k for k in range(4)]
    if fields.get("objective_args", {}).get("generator") == "GENERATOR":
        fields["objective_args"]["generator"] = generator
    return fields


def mlm_generator(model: str, folder: Path) -> None:
    """DiffCSE's generator for `model`: a BertForMaskedLM from its encoder and tokenizer, saved
    in `folder` (a checkpoint without an MLM head gets a fresh head transform; the decoder is
    tied to the word embeddings)."""
    from transformers import AutoTokenizer, BertForMaskedLM

    BertForMaskedLM.from_pretrained(model).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)


def run_embeval(args, device) -> dict:
    from embeval.core.model import load_model
    from embeval.core.train_config import pooler_to_load
    from embeval.core.trainer import TrainConfig, Trainer

    view = METHODS[args.method].get("view")  # PromptBERT trains through the MLP pooling layer
    model, tok, _ = load_model(args.model, pooler=pooler_to_load(view, "cls_before_pooler"))
    hidden = model.backbone.config.hidden_size
    fields = method_fields(args.method, args.model, hidden, args.generator)
    cfg = TrainConfig(
        **{"pooler": "cls_before_pooler", **fields},
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=args.lr,
        steps=WARMUP + args.steps,
        eval_steps=10**9,
        save_steps=10**9,
    )
    with tempfile.TemporaryDirectory() as out:
        data = NLI if args.method in SUPERVISED and args.data == str(DATA) else args.data
        tr = Trainer(model.backbone, tok, data, cfg, out, device=device, progress=False)
        times = []
        tr.on_step_end.append(lambda t, s: times.append(time.perf_counter()))
        tr.train()
    return {"seconds": times[-1] - times[WARMUP - 1], "peak_mb": peak_mb(tr.device)}


def run_st(args, device) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer, losses

    model = SentenceTransformer(args.model, device=str(device))
    model.max_seq_length = args.max_length
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data = batches(args)
    model.train()
    t0 = None
    for step in range(WARMUP + args.steps):
        if step == WARMUP:
            t0 = time.perf_counter()
        batch = data[step]
        feats = [
            {k: v.to(device) if hasattr(v, "to") else v for k, v in model.tokenize(batch).items()}
            for _ in range(2)
        ]  # anchor and positive: the same sentences, different dropout
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = loss_fn(feats, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as its fit() and embeval do
        opt.step()
        loss.item()  # sync, as embeval does for logging
    return {"seconds": time.perf_counter() - t0, "peak_mb": peak_mb(device)}


def child(args) -> None:
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    res = (run_embeval if args.side == "embeval" else run_st)(args, device)
    res["sentences_per_s"] = args.steps * args.batch_size / res["seconds"]
    res["device"] = str(device)
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="random-tiny", help="checkpoint folder or random-tiny")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--steps", type=int, default=100, help="timed steps (after 3 warm-up)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--methods", help="comma-separated: " + ", ".join(list(METHODS)[1:]))
    ap.add_argument("--method", default="infonce", help=argparse.SUPPRESS)
    ap.add_argument("--side", choices=["embeval", "st"], help=argparse.SUPPRESS)
    ap.add_argument("--generator", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return child(args)
    if args.methods:
        return compare_methods(args)

    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "random-tiny":
            from embeval.core.model import random_tiny, save_checkpoint

            backbone, tok = random_tiny(0)
            save_checkpoint(backbone, tok, Path(tmp) / "tiny", "cls_before_pooler", args.max_length)
            args.model = str(Path(tmp) / "tiny")
        results = {}
        for side in ("embeval", "st"):
            cmd = [sys.executable, __file__, "--side", side, "--model", args.model]
            for k in ("data", "steps", "batch_size", "max_length", "lr", "device"):
                if getattr(args, k) is not None:
                    cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[side] = json.loads(out.strip().splitlines()[-1])
    e, s = results["embeval"], results["st"]
    print(
        f"model {args.model}  batch {args.batch_size}  max_length {args.max_length}  "
        f"timed steps {args.steps}  device {e['device']}"
    )
    print(f"{'':24}{'embeval':>12}{'sentence-tf':>14}")
    print(f"{'sentences/s':24}{e['sentences_per_s']:12.1f}{s['sentences_per_s']:14.1f}")
    print(f"{'peak memory (MiB)':24}{e['peak_mb']:12.0f}{s['peak_mb']:14.0f}")
    print(
        f"embeval / sentence-transformers speed: {e['sentences_per_s'] / s['sentences_per_s']:.2f}x"
    )


def child_command(args, side: str, method: str = "infonce") -> list[str]:
    cmd = [sys.executable, __file__, "--side", side, "--model", args.model, "--method", method]
    for k in ("data", "steps", "batch_size", "max_length", "lr", "device", "generator"):
        if getattr(args, k) is not None:
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    return cmd


def compare_methods(args) -> None:
    names = ["infonce", *[m.strip() for m in args.methods.split(",") if m.strip()]]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        sys.exit(f"--methods: unknown {unknown}; choose among {list(METHODS)[1:]}")
    names = list(dict.fromkeys(names))
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "random-tiny":
            from embeval.core.model import random_tiny, save_checkpoint

            backbone, tok = random_tiny(0)
            save_checkpoint(backbone, tok, Path(tmp) / "tiny", "cls_before_pooler", args.max_length)
            args.model = str(Path(tmp) / "tiny")
        if "diffcse" in names:
            args.generator = str(Path(tmp) / "generator")
            mlm_generator(args.model, Path(args.generator))
        res = {}
        for m in names:
            run = subprocess.run(
                child_command(args, "embeval", m), check=True, capture_output=True, text=True
            )
            res[m] = json.loads(run.stdout.strip().splitlines()[-1])
    base = res["infonce"]["sentences_per_s"]
    print(
        f"batch {args.batch_size}  max_length {args.max_length}  timed steps {args.steps}  "
        f"device {res['infonce']['device']}"
    )
    print(f"{'method':12}{'sentences/s':>14}{'vs infonce':>12}{'peak MiB':>10}")
    for m in names:
        speed = res[m]["sentences_per_s"]
        print(f"{m:12}{speed:14.1f}{speed / base:11.2f}x{res[m]['peak_mb']:10.0f}")


if __name__ == "__main__":
    main()
