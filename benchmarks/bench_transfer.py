"""Wall time of the seven SentEval transfer tasks on all-MiniLM-L6-v2, cold and warm cache.

One run each, same process:
  - cold: `score(tasks=transfer)` with an empty embedding cache (load data, encode every distinct
    sentence of the seven tasks, the classifiers, cache write);
  - warm: the same call again over the now warm cache (embeddings read back; classifiers only).
Prints both wall times, their encode/classifier split, each task's accuracy and the average, and
writes the cold run's results JSON (`--out`).

    nice python benchmarks/bench_transfer.py [--data ../shared/data] [--batch-size 64]
        [--n-jobs -1] [--out reports/runs/all-MiniLM-L6-v2-transfer.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import data_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n-jobs", type=int, default=-1, help="joblib workers (-1: every core)")
    ap.add_argument("--out", default="reports/runs/all-MiniLM-L6-v2-transfer.json")
    args = ap.parse_args()

    import joblib
    import torch

    from embeval.cli import format_table
    from embeval.eval.cache import CachedEncoder
    from embeval.eval.encode import TransformerEncoder
    from embeval.eval.results import save_run
    from embeval.eval.score import score
    from embeval.eval.transfer import TransferConfig

    cfg = TransferConfig(n_jobs=args.n_jobs)
    print(
        f"7 transfer tasks; batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"joblib n_jobs {args.n_jobs} ({joblib.cpu_count()} cores)"
    )
    with tempfile.TemporaryDirectory() as cache:
        runs = {}
        for label in ("cold", "warm"):
            enc = CachedEncoder(
                TransformerEncoder.from_checkpoint(
                    batch_size=args.batch_size, device=args.device, progress=True
                ),
                cache,
            )
            t = time.perf_counter()
            runs[label] = score(
                enc, ["transfer"], root=Path(args.data), diagnostics=False, transfer_config=cfg
            )
            wall = time.perf_counter() - t
            tm = runs[label].meta["timings"]
            print(
                f"{label}: wall {wall:.1f}s = load {tm['load_s']:.1f}s + encode "
                f"{tm['encode_s']:.1f}s ({runs[label].meta['n_sentences']} distinct sentences) "
                f"+ classifiers {tm['metrics_s']:.1f}s"
            )
    print(format_table(runs["cold"]))
    assert runs["cold"].tasks == runs["warm"].tasks, "warm run differs from cold run"
    print(f"results: {save_run(runs['cold'], args.out)}")


if __name__ == "__main__":
    main()
