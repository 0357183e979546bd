"""Encode the whole STS suite (7 test sets) with embeval and with sentence-transformers, one run.

Same model (packaged all-MiniLM-L6-v2), batch size, device and machine. Prints wall times side by
side and their ratio:
  - sentence-transformers: `SentenceTransformer.encode` on each task's first and second sentences,
    as MTEB's STS evaluator and a SentEval batcher do;
  - embeval cold: `score()` with an empty embedding cache (load data, encode, metrics, cache write);
  - embeval warm: `embeval score` run as a fresh process over a warm cache (imports included).

    python benchmarks/bench_score.py [--data ../shared/data] [--batch-size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from embeval.core.model import default_checkpoint_path
    from embeval.eval.data.sts import load_sts
    from embeval.eval.data.tasks import simcse_avg_tasks
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.encoders.transformer import pick_device
    from embeval.eval.scoring.score import score

    device = str(pick_device(args.device))
    data = [load_sts(t, "test", Path(args.data)) for t in simcse_avg_tasks()]
    n_sent = sum(2 * len(d) for d in data)
    n_unique = len({s for d in data for s in (*d.s1, *d.s2)})
    print(
        f"STS suite: 7 test sets, {n_sent} sentences ({n_unique} distinct); "
        f"batch {args.batch_size}, device {device}, torch threads {torch.get_num_threads()}"
    )

    st = SentenceTransformer(str(default_checkpoint_path()), device=device)
    st.encode(["warm up"])  # both sides start with a loaded model and warm kernels
    t = time.perf_counter()
    for d in data:
        st.encode(d.s1, batch_size=args.batch_size, convert_to_numpy=True)
        st.encode(d.s2, batch_size=args.batch_size, convert_to_numpy=True)
    t_st = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as cache:
        enc = build_encoder(
            batch_size=args.batch_size, device=args.device, progress=False, cache_dir=cache
        )
        enc.encode(["warm up"])
        t = time.perf_counter()
        run = score(enc, root=Path(args.data))
        t_cold = time.perf_counter() - t

        cmd = [
            sys.executable,
            "-m",
            "embeval.cli",
            "score",
            "--data",
            args.data,
            "--cache-dir",
            cache,
            "--out",
            str(Path(cache) / "warm.json"),
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        t_warm = time.perf_counter() - t

    print(f"\n{'':38}{'wall s':>8}{'vs ST':>8}")
    print(f"{'sentence-transformers encode':38}{t_st:8.1f}{1:8.2f}x")
    print(f"{'embeval score, cold cache':38}{t_cold:8.1f}{t_st / t_cold:8.2f}x")
    print(f"{'embeval score CLI, warm cache':38}{t_warm:8.1f}{t_st / t_warm:8.2f}x")
    print(f"\nembeval Avg. {run.avg:.2f} (STS-B {run.tasks['STSBenchmark']['spearman']:.2f})")


if __name__ == "__main__":
    main()
