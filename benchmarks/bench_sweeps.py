"""A layer sweep costs one encode, not one per layer: timed side by side in one run.

On the packaged model (all-MiniLM-L6-v2, 6 layers: hidden states 0-6), CPU by default, the
distinct sentences of STS-B test (or --limit of them), no embedding cache:
  1. one plain encode (`--pooler avg`);
  2. the layer sweep (`score --layers all`'s encoder: one forward pass per sentence, every
     layer pooled from it), all L+1 layers' vectors;
  3. L+1 plain encodes, one per `--pooler layers:K`: what the sweep replaces.
Also checks that the sweep's vectors equal the single encodes' exactly.

    python benchmarks/bench_sweeps.py [--limit 1000] [--batch-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

from common import data_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()))
    ap.add_argument("--limit", type=int, default=1000, help="distinct sentences (0: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import torch

    from embeval.core.model import load_model
    from embeval.core.poolers import POOLERS
    from embeval.eval.data.sts import load_sts
    from embeval.eval.encoders.transformer import TransformerEncoder
    from embeval.eval.scoring.layer_sweep import LayerSweep

    d = load_sts("STSBenchmark", "test", args.data)
    sentences = list(dict.fromkeys([*d.s1, *d.s2]))
    sentences = sentences[: args.limit] if args.limit else sentences
    kw = dict(device=args.device, batch_size=args.batch_size, progress=False)
    model, tok, info = load_model(pooler="avg")  # loaded once, shared: load time left out

    def plain(pooler: str) -> tuple[float, np.ndarray]:
        model._pool = POOLERS.get(pooler)
        enc = TransformerEncoder(model, tok, info, **kw)
        t = time.perf_counter()
        vecs = enc.encode(sentences)
        return time.perf_counter() - t, vecs

    plain("avg")  # warm-up: first-call allocations and thread start-up
    t_one, _ = plain("avg")
    sweep = LayerSweep(None, "all", **kw)
    sweep.encoder.model, sweep.encoder.tokenizer = model, tok
    views = sweep.views()
    t = time.perf_counter()
    swept = {k: v.encode(sentences) for k, v in views.items()}
    t_sweep = time.perf_counter() - t
    t_each, exact = 0.0, True
    for k in views:
        dt, vecs = plain(f"layers:{k}")
        t_each += dt
        exact &= bool(np.array_equal(vecs, swept[k]))
    n = len(views)
    print(
        f"all-MiniLM-L6-v2, {len(sentences)} sentences, batch {args.batch_size}, "
        f"{args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'one plain encode (avg)':34}{t_one:8.2f} s   1.00x")
    print(f"{f'layer sweep, {n} layers':34}{t_sweep:8.2f} s {t_sweep / t_one:6.2f}x")
    print(f"{f'{n} plain encodes (layers:K)':34}{t_each:8.2f} s {t_each / t_one:6.2f}x")
    print(f"sweep vectors equal the single encodes' exactly: {exact}")


if __name__ == "__main__":
    main()
