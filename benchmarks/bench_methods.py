"""Every training method of embeval on one checkpoint: STS-B dev before and after a short
fine-tune, training speed relative to InfoNCE and peak memory, with the paper's figure beside.

Each method (bench_train.py's METHODS) trains the same model (default: the packaged
all-MiniLM-L6-v2, its own mean pooling for training and evaluation, Normalize kept) for --steps
steps from the same seed, batch size, max length and learning rate, in its own process (so peak
memory is its own: max RSS on CPU, max allocated on CUDA). The unsupervised methods read
wiki1m; the supervised ones (SUPERVISED below) SimCSE's NLI triplets. STS-B dev Spearman x100 is
scored at step 0 and after the last step with `embeval train`'s evaluator. Throughput counts
batch-size examples per step over the steps after 3 warm-up ones, scoring excluded.

Methods that need another model get what is available offline: DistilCSE's teacher is the
starting checkpoint itself (queue 1024); GCSE's and DCLR's frozen reference model is `initial`
(a frozen copy of the starting weights; DCLR's paper uses an unsupervised SimCSE); DiffCSE's
generator is a BertForMaskedLM built from the checkpoint's encoder and tokenizer (the packaged
model has no MLM head: the head's transform is freshly initialised, its decoder tied to the
word embeddings).

The paper column is each paper's BERT-base STS average (seven tasks) at full scale, from
/work/shared/PROTOCOL.md: not comparable in absolute terms with a few dozen steps of MiniLM.

    nice python benchmarks/bench_methods.py [--steps 30] [--batch-size 32] [--methods a,b]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import DATA as WIKI
from bench_train import METHODS, NLI, SUPERVISED, WARMUP, method_fields, mlm_generator, peak_mb
from common import data_root

# Paper's BERT-base STS avg (STS12-16, STS-B, SICK-R), PROTOCOL.md; None: none given there.
PAPER = {
    "infonce": "76.25 (unsup. SimCSE)",
    "focal-infonce": "77.32",
    "align-uniform": None,
    "sup-simcse": "81.57",
    "esimcse": "78.27",
    "consert": "72.74 (transductive)",
    "distilcse": None,
    "promptbert": "78.54 (67.85 untrained)",
    "promcse-hinge": None,
    "gcse": "81.98 (its LLM data)",
    "dclr": None,
    "matryoshka": None,
    "2dmse": None,
    "sbert-nli": None,
    "diffcse": "78.49",
}


def child(args) -> None:
    import torch

    from embeval.cli.train import stsb_dev_evaluator
    from embeval.core.model import load_model, read_pooling_config
    from embeval.core.train_config import pooler_to_load
    from embeval.core.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pooler = read_pooling_config(Path(args.model))[0] or "cls_before_pooler"
    # as `embeval train`: PromptBERT's [MASK] state trains through the MLP pooling layer
    load_as = pooler_to_load(METHODS[args.method].get("view"), pooler)
    model, tok, info = load_model(args.model, pooler=load_as)
    backbone = model.backbone
    fields = method_fields(args.method, args.model, backbone.config.hidden_size, args.gen)
    fields.setdefault("pooler", pooler)
    fields.setdefault("eval_pooler", fields["pooler"])
    cfg = TrainConfig(
        **fields,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=args.lr,
        steps=args.steps,
        eval_steps=args.steps,
        save_steps=10**9,
        log_steps=10**9,
        normalize=info.normalize,
        seed=args.seed,
    )
    evaluator = stsb_dev_evaluator(tok, args.eval_data, str(device), 128, normalize=info.normalize)
    marks: dict[str, list[float]] = {"step": [], "eval": [], "first": []}

    def evaluate(m):
        marks["eval"].append(time.perf_counter())  # the last step ends where scoring starts
        if args.before is not None and len(marks["eval"]) == 1:  # step 0, scored already
            return {"stsb_dev": args.before}
        return evaluator(m)

    with tempfile.TemporaryDirectory() as out:
        tr = Trainer(backbone, tok, args.data, cfg, out, evaluate, device, progress=False)
        loss_fn = tr.compute_loss

        def compute_loss(examples):
            if not marks["first"]:
                marks["first"].append(time.perf_counter())
            return loss_fn(examples)

        tr.compute_loss = compute_loss
        tr.on_step_end.append(lambda t, s: marks["step"].append(time.perf_counter()))
        tr.train()
        log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").open()]
    dev = {r["step"]: r["stsb_dev"] for r in log if "stsb_dev" in r}
    ends = [*marks["step"][:-1], marks["eval"][-1]]  # step k ends at ends[k - 1]
    timed = ends[-1] - ends[WARMUP - 1]
    print(
        json.dumps(
            {
                "before": dev[0],
                "after": dev[args.steps],
                "train_s": ends[-1] - marks["first"][0],
                "sentences_per_s": (args.steps - WARMUP) * args.batch_size / timed,
                "peak_mb": peak_mb(tr.device),
                "device": str(tr.device),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: packaged MiniLM)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default=None)
    ap.add_argument("--eval-data", default=str(data_root()))
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--gen", help=argparse.SUPPRESS)
    ap.add_argument("--before", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None:
        from embeval.core.checkpoint import default_checkpoint_path

        args.model = str(default_checkpoint_path())
    if args.method:
        return child(args)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        sys.exit(f"--methods: unknown {unknown}; choose among {list(METHODS)}")
    if args.steps <= WARMUP:
        sys.exit(f"--steps must exceed the {WARMUP} warm-up steps")
    res, before = {}, {}  # STS-B dev of the starting weights, by evaluation pooler
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "generator"
        if "diffcse" in names:
            mlm_generator(args.model, gen)
        for m in names:
            cmd = [sys.executable, __file__, "--method", m, "--gen", str(gen)]
            cmd += ["--data", str(NLI if m in SUPERVISED else WIKI)]
            for k in ("model", "steps", "batch_size", "max_length", "lr", "seed", "eval_data"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            if args.device:
                cmd += ["--device", args.device]
            scorer = METHODS[m].get("eval_pooler")  # None: the model's own (PromptBERT: its own)
            if scorer in before:  # the same weights and scorer as a method already run
                cmd += ["--before", repr(before[scorer])]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode:
                res[m] = {"error": run.stderr.strip().splitlines()[-1]}
                print(f"{m}: failed: {res[m]['error']}", file=sys.stderr)
                continue
            res[m] = json.loads(run.stdout.strip().splitlines()[-1])
            before[scorer] = res[m]["before"]
            print(f"{m}: {res[m]}", file=sys.stderr, flush=True)
            if args.json:  # after each method: a long run that is cut keeps what it measured
                Path(args.json).write_text(json.dumps(res, indent=1))
    print_table(args, res)


def print_table(args, res: dict) -> None:
    ok = [r for r in res.values() if "error" not in r]
    base = res.get("infonce", {}).get("sentences_per_s")
    device = ok[0]["device"] if ok else "?"
    print(
        f"model {args.model}  steps {args.steps}  batch {args.batch_size}  max_length "
        f"{args.max_length}  lr {args.lr}  seed {args.seed}  device {device}"
    )
    print(
        "| method | data | STS-B dev before | after | delta | train s | examples/s | vs infonce "
        "| peak MiB | paper (BERT-base STS avg) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for m, r in res.items():
        data = "NLI triplets" if m in SUPERVISED else "wiki1m"
        paper = PAPER.get(m) or "-"
        if "error" in r:
            print(f"| {m} | {data} | failed: {r['error']} |  |  |  |  |  |  | {paper} |")
            continue
        rel = f"{r['sentences_per_s'] / base:.2f}x" if base else "-"
        print(
            f"| {m} | {data} | {r['before']:.2f} | {r['after']:.2f} | "
            f"{r['after'] - r['before']:+.2f} | {r['train_s']:.1f} | {r['sentences_per_s']:.1f} "
            f"| {rel} | {r['peak_mb']:.0f} | {paper} |"
        )


if __name__ == "__main__":
    main()
