"""Wall time of the seven SentEval transfer tasks on all-MiniLM-L6-v2, and their spread over
batch sizes.

In one process:
  - cold: `score(tasks)` at the first of --batch-sizes with an empty embedding cache (load data,
    encode every distinct sentence, the classifiers, cache write);
  - warm: the same call again over the now warm cache (embeddings read back; classifiers only);
  - every further batch size: the same tasks encoded again without a cache (the cache key does
    not hold the batch size, so a cache would serve the first run's vectors).
Prints the wall times, each task's accuracy per batch size side by side with its spread
(max - min), and writes the cold run's results JSON (`--out`). The spread is reported, not
promised to be 0: a batch of other lengths changes the float32 embeddings by ~1e-7, which can
flip a test prediction that sits on the decision boundary (0.2 points on TREC's 500 questions).

--compare: the warm path only, before vs after, side by side. Each task's embeddings are
encoded once (through the cache at --cache, if given), then per task, interleaved: the
reference path (SentEval's loop: one joblib job per (fold, C), library thread defaults), the
reference with every fit on one thread (change 1: no oversubscribed BLAS/OpenMP threads in the
main process's fits), and the fast path (change 2 on top: one job per fold, its rows gathered
once for all C's). Prints per task and phase (search for C, final fit) the seconds of each and
the speed-up, checks that the three give equal results, and the load average (a shared
machine inflates absolute times; read the ratios).

    nice python benchmarks/bench_transfer.py [--data ../shared/data] [--batch-sizes 64,16,128]
        [--tasks transfer] [--limit N] [--n-jobs -1]
        [--out reports/runs/all-MiniLM-L6-v2-transfer.json]
    nice python benchmarks/bench_transfer.py --compare [--tasks TREC,MRPC,SST2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import data_root


def batch_sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 16,64,128, got {text}")
    return list(dict.fromkeys(sizes))


def spread_table(runs: dict[int, object]) -> str:
    """Accuracy (F1 for MRPC too) per task and batch size, and max - min across batch sizes."""
    from embeval.cli.score import align_rows

    first = next(iter(runs.values()))
    head = ["task", *(f"batch {b}" for b in runs), "spread"]
    rows = [head]
    for task, m in first.tasks.items():
        for key in ("accuracy", "f1"):
            if key in m:
                vals = [r.tasks[task][key] for r in runs.values()]
                label = task if key == "accuracy" else f"{task} F1"
                rows.append([label, *(f"{v:.2f}" for v in vals), f"{max(vals) - min(vals):.2f}"])
    if first.transfer_avg is not None:
        vals = [r.transfer_avg for r in runs.values()]
        rows.append(["Avg.", *(f"{v:.2f}" for v in vals), f"{max(vals) - min(vals):.2f}"])
    return "\n".join(align_rows(rows))


def _warm_worker() -> None:
    """Start a joblib worker and import scikit-learn in it before any timing."""
    import sklearn.linear_model  # noqa: F401


def compare(args) -> None:
    """Warm path before vs after on the same vectors; see the module docstring."""
    from threadpoolctl import threadpool_limits

    from embeval.cli.score import align_rows
    from embeval.eval.data import tasks as registry
    from embeval.eval.data.transfer import load_transfer
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.scoring.transfer import TransferConfig, evaluate

    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    one = lambda n: [registry.resolve(n, kinds=("transfer",))]  # noqa: E731
    tasks = [t.name for n in names for t in (registry.group(n) if n == "transfer" else one(n))]
    with tempfile.TemporaryDirectory() as tmp:
        cached = build_encoder(batch_size=args.batch_sizes[0], cache_dir=args.cache or tmp)
        data, vecs = {}, {}
        for task in tasks:
            d = load_transfer(task, Path(args.data))
            data[task] = d.head(args.limit) if args.limit else d
            sents = list(dict.fromkeys(data[task].sentences()))
            vecs[task] = dict(zip(sents, cached.encode(sents), strict=True))
    ref = TransferConfig(n_jobs=args.n_jobs, fast=False)
    variants = {  # name -> (config, threads per fit in this process)
        "before": (ref, None),
        "1 thread": (ref, 1),
        "after": (TransferConfig(n_jobs=args.n_jobs), None),
    }
    rows = [["task", "phase", *(f"{v} s" for v in variants), "x 1 thread", "x after"]]
    totals = dict.fromkeys(variants, 0.0)
    from joblib import Parallel, delayed

    Parallel(n_jobs=args.n_jobs)(delayed(_warm_worker)() for _ in range(8))  # not timed
    for task in tasks:
        emb = lambda xs, t=task: np.stack([vecs[t][s] for s in xs])  # noqa: E731
        res, tim = {}, {}
        for name, (cfg, threads) in variants.items():
            tim[name] = {}
            with threadpool_limits(threads):
                res[name] = evaluate(data[task], emb, cfg, tim[name])
            totals[name] += sum(tim[name].values())
        same = all(r == res["before"] for r in res.values())
        for phase in ("search_s", "final_s"):
            t = [tim[v][phase] for v in variants]
            rows.append(
                [
                    task,
                    phase[:-2],
                    *(f"{x:.1f}" for x in t),
                    f"{t[0] / t[1]:.1f}",
                    f"{t[0] / t[2]:.1f}",
                ]
            )
        print("  ".join(f"{k} {v:.1f}s" for k, t in tim.items() for v in [sum(t.values())]))
        m = res["after"]
        f1 = f" F1 {m['f1']:.2f}" if "f1" in m else ""
        print(
            f"{task}: accuracy {m['accuracy']:.2f}{f1} C {m['C']}; results equal: {same}",
            flush=True,
        )
        assert same, f"{task}: fast path differs from the reference: {res}"
    t = list(totals.values())
    rows.append(["all", "", *(f"{x:.1f}" for x in t), f"{t[0] / t[1]:.1f}", f"{t[0] / t[2]:.1f}"])
    print("\n".join(align_rows(rows)))
    print(
        f"load average at the end {os.getloadavg()}, {os.cpu_count()} cores, n_jobs {args.n_jobs}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        default=[64, 16, 128],
        help="comma-separated; the first is timed cold and warm (default: 64,16,128)",
    )
    ap.add_argument("--tasks", default="transfer", help="comma-separated (default: all seven)")
    ap.add_argument("--limit", type=int, default=None, help="examples per split (smoke runs)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--n-jobs", type=int, default=-1, help="joblib workers (-1: every core)")
    ap.add_argument("--out", default="reports/runs/all-MiniLM-L6-v2-transfer.json")
    ap.add_argument("--compare", action="store_true", help="warm path: before vs after")
    ap.add_argument("--cache", default=None, help="--compare: embedding cache (default: temp)")
    args = ap.parse_args()
    if args.compare:
        return compare(args)

    import joblib
    import torch

    from embeval.cli import format_table
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.encoders.transformer import TransformerEncoder
    from embeval.eval.scoring.score import score
    from embeval.eval.scoring.transfer import TransferConfig
    from embeval.results.files import save_run

    cfg = TransferConfig(n_jobs=args.n_jobs)
    tasks = [t for t in args.tasks.split(",") if t.strip()]
    print(
        f"tasks {','.join(tasks)}; batch sizes {args.batch_sizes}, torch threads "
        f"{torch.get_num_threads()}, joblib n_jobs {args.n_jobs} ({joblib.cpu_count()} cores)"
    )
    model = TransformerEncoder.from_checkpoint(device=args.device, progress=True)

    def encoder(batch_size: int, cache: str | None = None):  # one loaded model for all sizes
        return build_encoder(
            model=model._ensure_loaded(),
            tokenizer=model.tokenizer,
            info=model.info,
            batch_size=batch_size,
            device=args.device,
            progress=True,
            cache_dir=cache,
            no_cache=cache is None,
        )

    def run(enc, label: str):
        t = time.perf_counter()
        r = score(
            enc,
            tasks,
            root=Path(args.data),
            limit=args.limit,
            diagnostics=False,
            transfer_config=cfg,
        )
        tm = r.meta["timings"]
        print(
            f"{label}: wall {time.perf_counter() - t:.1f}s = load {tm['load_s']:.1f}s + encode "
            f"{tm['encode_s']:.1f}s ({r.meta['n_sentences']} distinct sentences) "
            f"+ classifiers {tm['metrics_s']:.1f}s"
        )
        return r

    first, *others = args.batch_sizes
    with tempfile.TemporaryDirectory() as cache:
        cold = run(encoder(first, cache), f"batch {first} cold")
        warm = run(encoder(first, cache), f"batch {first} warm")
    assert cold.tasks == warm.tasks, "warm run differs from cold run"
    runs = {first: cold, **{b: run(encoder(b), f"batch {b} uncached") for b in others}}
    print(format_table(cold))
    print(f"\naccuracy by batch size (spread = max - min):\n{spread_table(runs)}")
    print(f"results (batch {first}): {save_run(cold, args.out)}")


if __name__ == "__main__":
    main()
