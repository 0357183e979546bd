"""`embeval score` in 1 process vs 2 (torchrun, gloo on CPU), side by side, in one run.

Both score the packaged all-MiniLM-L6-v2 with an empty cache (--no-cache), the same tasks,
--limit and batch size, as fresh processes (imports and model loading included, as a user runs
them). Each configuration is run --repeats times, interleaved (1, 2, 1, 2, ...) so that a
change in the machine's load hits both alike. Prints the wall times, the encode times the
results record, their ratios and the largest difference between the two runs' figures.

torchrun gives each process OMP_NUM_THREADS=1 unless set: on C cores, 1 process has C threads
and 2 processes C/2 each (this script sets that explicitly), so the comparison uses the same
cores. Sharding pays on several GPUs; on one CPU the processes share the same cores.

Measured (2-core shared machine, load 7.7 before, 10.7 after; --limit 300, 3626 sentences, best
of 2): 1 process 87.7 s wall / 80.0 s encode, 2 processes 45.7 s / 33.3 s, i.e. 1.92x wall and
2.40x encode; largest figure difference 1.75e-06 (STS12 pearson). The gain is the load's doing:
two single-threaded processes get more of a contended machine, and a two-thread process stalls
when one of its threads is descheduled. Expect little gain on an idle CPU.

    python benchmarks/bench_shard.py [--tasks sts] [--limit 500] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_root


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}{res.stderr[-3000:]}")
    return time.perf_counter() - t


def figures(path: Path) -> dict[tuple[str, str], float]:
    tasks = json.loads(path.read_text())["tasks"]
    return {(t, k): v for t, m in tasks.items() for k, v in m.items() if isinstance(v, float)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--tasks", default="sts")
    ap.add_argument("--limit", type=int, default=500, help="pairs per task (0: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0))
    score = ["-m", "embeval.cli", "score", "--tasks", args.tasks, "--data", args.data]
    score += ["--batch-size", str(args.batch_size), "--device", "cpu", "--no-cache"]
    score += ["--limit", str(args.limit)] if args.limit else []
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    one = [sys.executable, *score]
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *score]
    configs = {
        "1 process": (one, {**env, "OMP_NUM_THREADS": str(cores)}),
        "2 processes": (two, {**env, "OMP_NUM_THREADS": str(max(cores // 2, 1))}),
    }
    print(
        f"embeval score --tasks {args.tasks} --limit {args.limit or 'none'} --batch-size "
        f"{args.batch_size}, cold (--no-cache), CPU: {cores} cores, load before "
        f"{os.getloadavg()[0]:.1f}; {args.repeats} interleaved repeats"
    )
    wall: dict[str, list[float]] = {k: [] for k in configs}
    encode: dict[str, list[float]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {k: Path(tmp) / f"{i}.json" for i, k in enumerate(configs)}
        for _ in range(args.repeats):
            for k, (cmd, cenv) in configs.items():
                wall[k].append(run([*cmd, "--out", str(outs[k]), "--overwrite"], cenv))
                meta = json.loads(outs[k].read_text())["meta"]
                encode[k].append(meta["timings"]["encode_s"])
        f1, f2 = figures(outs["1 process"]), figures(outs["2 processes"])
        n = json.loads(outs["1 process"].read_text())["meta"]["n_sentences"]
    diff = max(abs(f1[k] - f2[k]) for k in f1)
    worst = max(f1, key=lambda k: abs(f1[k] - f2[k]))

    print(f"{n} distinct sentences; best of {args.repeats}")
    print(f"{'':12}  {'wall s':>8}  {'encode s':>9}")
    for k in configs:
        print(f"{k:12}  {min(wall[k]):8.1f}  {min(encode[k]):9.1f}")
    w = min(wall["1 process"]) / min(wall["2 processes"])
    e = min(encode["1 process"]) / min(encode["2 processes"])
    print(f"speed-up of 2 processes: wall {w:.2f}x, encode {e:.2f}x")
    same = "same" if f1.keys() == f2.keys() else "DIFFERENT"
    print(f"largest figure difference: {diff:.2e} ({worst[0]} {worst[1]}); {same} figure keys")
    print(f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
