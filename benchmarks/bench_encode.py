"""Encode rate vs the machine's matmul rate, token-budget batching, and int8 vs float32: one run.

On the packaged model (all-MiniLM-L6-v2), CPU, same torch thread count throughout:

1. matmul rate: plain float32 `torch.matmul` of the encoder's linear shapes, (N, 384) x (384,
   1152) (Q, K, V), (N, 384) x (384, 384), (N, 384) x (384, 1536), (N, 1536) x (1536, 384), with
   N the mean tokens per batch (padded) of the encode below; their FLOP-weighted rate is "peak".
2. encode FLOPs from the model config (layers, hidden, intermediate, heads) and the real token
   counts: per sequence of T tokens and per layer 2*T*(4*H*H + 2*H*I) for the linear layers plus
   2*2*T*T*H for attention (QK^T and AV); embeddings, LayerNorm, softmax, GELU and pooling are
   left out (under 2 % here). "padded" counts every batch at its longest sentence (the work the
   CPU does), "real" only the sentences' own tokens (the useful work).
3. batching: fixed batches of --batch-size sentences vs a token budget (batch-size x the mean
   length: short sentences in larger batches, long ones in smaller), forward passes only, sorted
   longest first as the encoder does; interleaved, best of --repeats.
4. `score()` cold (empty embedding cache) float32 vs `--quantize int8` on the same tasks: wall
   time and per-task Spearman differences. The int8 export is made (and timed) beforehand: it is
   done once per checkpoint and cached.

    python benchmarks/bench_encode.py [--tasks sts|STSBenchmark] [--batch-size 64] [--repeats 2]

Figures are ratios measured side by side; absolute times depend on the load (printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import data_root


def layer_flops(t: int, h: int, inter: int) -> int:
    """FLOPs of one encoder layer on one sequence of t tokens (multiply-add = 2)."""
    return 2 * t * (4 * h * h + 2 * h * inter) + 2 * 2 * t * t * h


def encode_flops(lengths, batches, cfg) -> tuple[float, float]:
    """(padded, real) FLOPs of encoding sentences of `lengths` in `batches` (lists of rows)."""
    h, inter, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    real = sum(layer_flops(t, h, inter) for t in lengths) * n
    padded = sum(len(b) * layer_flops(max(lengths[i] for i in b), h, inter) for b in batches) * n
    return float(padded), float(real)


def fixed_batches(order, batch_size):
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def budget_batches(order, lengths, budget):
    """Fill each batch (longest first) while batch size x its longest length fits the budget."""
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[cur[0]] > budget:
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def matmul_rate(n: int, h: int, inter: int, repeats: int = 10) -> tuple[float, dict]:
    """FLOP-weighted float32 matmul rate on the encoder's linear shapes with n tokens."""
    import torch

    shapes = {"qkv": (h, 3 * h), "out": (h, h), "ffn up": (h, inter), "ffn down": (inter, h)}
    rates, tot_f, tot_t = {}, 0.0, 0.0
    for name, (k, m) in shapes.items():
        a, w = torch.randn(n, k), torch.randn(k, m)
        torch.matmul(a, w)
        best = min(_timed(lambda a=a, w=w: torch.matmul(a, w)) for _ in range(repeats))
        f = 2.0 * n * k * m
        rates[name] = f / best
        tot_f, tot_t = tot_f + f, tot_t + best  # each shape once per layer: FLOP-weighted
    return tot_f / tot_t, rates


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def forward_time(model, tok, ids, batches) -> float:
    import torch

    t = time.perf_counter()
    with torch.inference_mode():
        for rows in batches:
            batch = tok.pad({k: [ids[k][r] for r in rows] for k in ids.keys()}, return_tensors="pt")
            model(**batch)
    return time.perf_counter() - t


def profile_ops(model, tok, ids, batches, top: int = 8) -> list[tuple[str, float]]:
    """Share of self CPU time per op over `batches`; matrix products summed as one line."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward_time(model, tok, ids, batches)
    by_op: dict[str, float] = {}
    for e in prof.key_averages():
        name = e.key
        if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
            name = "matrix products (mm/addmm/bmm)"
        by_op[name] = by_op.get(name, 0.0) + e.self_cpu_time_total
    total = sum(by_op.values())
    return sorted(((k, v / total) for k, v in by_op.items()), key=lambda x: -x[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(data_root()), help="data root (default: $EMBEVAL_DATA)")
    ap.add_argument("--tasks", default="sts", help="sts (the 7 test sets) or task names")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="batching comparison: best of N")
    args = ap.parse_args()

    import numpy as np
    import torch

    from embeval.core.model import load_model
    from embeval.eval.data.sts import load_sts
    from embeval.eval.encoders import int8
    from embeval.eval.encoders.cache import CachedEncoder
    from embeval.eval.encoders.transformer import TransformerEncoder
    from embeval.eval.scoring.score import score, select_tasks

    root = Path(args.data)
    tasks = select_tasks(args.tasks.split(","), "test", "simcse")
    data = [load_sts(t, "test", root) for t in tasks]
    sents = list(dict.fromkeys(s for d in data for s in (*d.s1, *d.s2)))
    load = os.getloadavg()[0]
    print(
        f"{', '.join(tasks)}: {len(sents)} distinct sentences; batch {args.batch_size}, cpu, "
        f"torch threads {torch.get_num_threads()}, load average {load:.1f} on "
        f"{os.cpu_count()} cores"
    )

    model, tok, info = load_model()
    cfg = model.backbone.config
    ids = tok(sents, truncation=True, max_length=info.max_length)
    lengths = [len(x) for x in ids["input_ids"]]
    order = list(np.argsort([-n for n in lengths], kind="stable"))
    fixed = fixed_batches(order, args.batch_size)
    budget = args.batch_size * int(np.mean(lengths))
    by_budget = budget_batches(order, lengths, budget)
    padded, real = encode_flops(lengths, fixed, cfg)
    n_tok = int(round(np.mean([len(b) * lengths[b[0]] for b in fixed])))
    forward_time(model, tok, ids, fixed[-2:])  # warm kernels

    # Batching, interleaved with the matmul rate (a loaded machine's rate drifts: each share is
    # against the rate measured just before); then the whole encode (tokenise, pad, forward,
    # pool) of the encoder. Best of --repeats throughout.
    t_fixed, t_budget, peaks = [], [], []
    for _ in range(args.repeats):
        peak, rates = matmul_rate(n_tok, cfg.hidden_size, cfg.intermediate_size)
        peaks.append(peak)
        t_fixed.append(forward_time(model, tok, ids, fixed))
        t_budget.append(forward_time(model, tok, ids, by_budget))
    enc = TransformerEncoder(model, tok, info, batch_size=args.batch_size, progress=False)
    t_encode = _timed(lambda: enc.encode(sents))
    peak = max(peaks)  # the machine's best: shares below are conservative
    pb, _ = encode_flops(lengths, by_budget, cfg)

    gf = 1e9
    print(f"\nmatmul float32, N={n_tok} tokens per batch (mean, padded), last repeat:")
    for name, r in rates.items():
        print(f"  {name:10}{r / gf:8.1f} GFLOP/s")
    print(
        f"  {'weighted':10}{peak / gf:8.1f} GFLOP/s  = peak below (best of "
        f"{', '.join(f'{p / gf:.1f}' for p in peaks)})"
    )
    print(
        f"\nencode FLOPs: {padded / 1e12:.3f} TFLOP padded, {real / 1e12:.3f} TFLOP real tokens "
        f"({100 * (padded - real) / padded:.1f} % padding)"
    )
    rows = [
        ("forward, fixed batches", min(t_fixed), padded),
        (f"forward, token budget {budget}", min(t_budget), pb),
        ("TransformerEncoder.encode (all)", t_encode, padded),
    ]
    print(f"\n{'':36}{'s':>7}{'GFLOP/s pad':>13}{'% peak':>8}{'GFLOP/s real':>14}{'% peak':>8}")
    for label, t, f in rows:
        print(
            f"{label:36}{t:7.1f}{f / t / gf:13.1f}{100 * f / t / peak:8.0f}"
            f"{real / t / gf:14.1f}{100 * real / t / peak:8.0f}"
        )
    print(
        f"token budget vs fixed: {min(t_fixed) / min(t_budget):.2f}x "
        f"({len(by_budget)} vs {len(fixed)} batches; all repeats fixed {t_fixed}, "
        f"budget {t_budget})"
    )

    print("\nwhere torch's forward time goes (profiler, 3 mid-length batches, self CPU time):")
    for name, share in profile_ops(model, tok, ids, fixed[len(fixed) // 2 : len(fixed) // 2 + 3]):
        print(f"  {name:34}{100 * share:6.1f} %")

    # int8 vs float32, cold embedding cache, same tasks, interleaved; ONNX Runtime float32
    # (the same exported graph, not quantized) separates the runtime's gain from int8's.
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(batch_size=args.batch_size, progress=False, quantize="int8")
        q8 = TransformerEncoder(model, tok, info, onnx_dir=Path(tmp) / "onnx", **kw)
        t_export = _timed(lambda: q8.encode(["warm up"]))
        ort32 = TransformerEncoder(model, tok, info, **kw)
        ort32.fingerprint += ";onnx-float32"
        f32_path = int8.export_int8(model, tok, Path(tmp) / "f32.onnx", quantize=False)
        ort32._int8 = int8.Int8Session(f32_path, torch.get_num_threads())
        res, times = {}, {}
        encoders = (("torch float32", enc), ("ORT float32", ort32), ("ORT int8", q8))
        for r in range(args.repeats):
            for label, e in encoders:
                t = time.perf_counter()
                cache = CachedEncoder(e, Path(tmp) / f"{label}-{r}".replace(" ", "_"))
                res[label] = score(cache, list(tasks), root=root)
                times.setdefault(label, []).append(time.perf_counter() - t)
    print(f"\nint8 export + quantization (once per checkpoint, cached): {t_export:.1f} s")
    base = min(times["torch float32"])
    print(f"score cold, {', '.join(tasks)}, best of {args.repeats} (all: {times}):")
    for label, _ in encoders:
        print(f"  {label:14}{min(times[label]):7.1f} s  {base / min(times[label]):5.2f}x")
    print(f"  ORT int8 vs ORT float32: {min(times['ORT float32']) / min(times['ORT int8']):.2f}x")
    f, q = res["torch float32"], res["ORT int8"]
    print(f"\n{'task':18}{'float32':>9}{'int8':>9}{'diff':>8}   (ORT float32)")
    for t in tasks:
        a, b = f.tasks[t]["spearman"], q.tasks[t]["spearman"]
        o = res["ORT float32"].tasks[t]["spearman"]
        print(f"{t:18}{a:9.2f}{b:9.2f}{b - a:+8.2f}   ({o:.2f})")
    if f.avg is not None:
        a, b = f.avg, q.avg
        print(f"{'Avg. (SimCSE)':18}{a:9.2f}{b:9.2f}{b - a:+8.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
