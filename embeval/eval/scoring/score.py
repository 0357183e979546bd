"""score(encoder, tasks) -> RunResult: load pairs, encode every distinct sentence once, measure.

The encoder sees one list of all distinct sentences of all requested tasks (STS sets repeat
many sentences across pairs and years), so nothing is encoded twice in a run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import embeval
from embeval.core.checkpoint import DEFAULT_CHECKPOINT
from embeval.eval.data import tasks as task_registry
from embeval.eval.data.paths import DataError, checksum, data_root
from embeval.eval.data.sts import STSData
from embeval.eval.encoders import postprocess
from embeval.eval.encoders.transformer import Encoder
from embeval.eval.metrics import similarity as metrics
from embeval.eval.metrics.diagnostics import measure as measure_diagnostics
from embeval.eval.scoring import ranking, transfer
from embeval.results.files import RunResult

log = logging.getLogger(__name__)
DIAGNOSTIC_TASK = "STSBenchmark"


def select_tasks(names: Sequence[str] | None, split: str, protocol: str = "simcse") -> list[str]:
    """Canonical task names (groups `sts`, `transfer` expand); default: STS tasks with `split`
    (MTEB's SICK-R is one test set, so it has no dev or train split there). The records:
    `embeval.eval.data.tasks.select`."""
    return [t.name for t in task_registry.select(names, split, protocol)]


def _check_correlatable(task: str, d, limit: int) -> None:
    """A cut (--limit) must leave every subset two pairs with different gold scores."""
    subsets = np.asarray(d.subset)
    gold = np.asarray(d.gold)
    for name in dict.fromkeys(d.subset):
        g = gold[subsets == name]
        if len(g) < 2 or g.min() == g.max():
            where = task if name == task else f"{task} subset {name}"
            raise DataError(
                f"--limit {limit} leaves {where} with {len(g)} pair(s) and gold scores "
                f"{sorted(set(g.tolist()))}: a correlation needs two different gold scores; "
                "raise --limit"
            )


def score(
    encoder: Encoder,
    tasks: Sequence[str] | None = None,
    split: str = "test",
    root: str | os.PathLike | None = None,
    protocol: str = "simcse",
    limit: int | None = None,
    name: str | None = None,
    diagnostics: bool = True,
    transfer_config: transfer.TransferConfig | None = None,
) -> RunResult | None:
    """Score `encoder` on STS, SentEval transfer and ranking (EvalRank) tasks; the output
    contract is in `embeval.results.files`. Transfer tasks follow SentEval's own splits
    (`split` must be test).

    With a `ShardedEncoder` (torchrun) every process calls this, encodes its share, and only
    rank 0 measures and gets the RunResult; the other ranks get None."""
    t0 = time.perf_counter()
    root = data_root(root)
    if limit is not None and limit < 2:
        raise DataError(f"--limit must be at least 2 pairs (a correlation needs two), got {limit}")
    specs = {t.name: t for t in task_registry.select(tasks, split, protocol)}
    if other := [t.name for t in specs.values() if t.kind not in ("sts", "transfer", "ranking")]:
        raise DataError(f"{', '.join(other)}: score has no scorer for their kind yet")
    clf_names = [t.name for t in specs.values() if t.kind == "transfer"]
    if clf_names and split != "test":
        raise DataError(
            f"transfer tasks ({', '.join(clf_names)}) use SentEval's own train/dev/test or "
            f"cross-validation; score them with --split test, not {split!r}"
        )
    load = task_registry.load
    data = {n: load(t, split, root, protocol) for n, t in specs.items() if t.kind == "sts"}
    clf_data = {n: load(t, split, root, protocol) for n, t in specs.items() if n in clf_names}
    rank_data = {n: load(t, split, root, protocol) for n, t in specs.items() if t.kind == "ranking"}
    cut: list[str] = []  # tasks --limit actually shortened: only those make a run partial
    if limit:
        full = {**data, **clf_data, **rank_data}
        data = {t: d.head(limit) for t, d in data.items()}
        clf_data = {t: d.head(limit) for t, d in clf_data.items()}
        rank_data = {t: d.head(limit) for t, d in rank_data.items()}
        cut = [
            t for t, d in {**data, **clf_data, **rank_data}.items() if _sizes(d) != _sizes(full[t])
        ]
        for task, d in data.items():
            _check_correlatable(task, d, limit)
    diag = _diagnostic_data(data) if diagnostics else None

    # Fitted post-processors (the tail of the chain) are fitted and applied per task below.
    head, fitted = postprocess.split_fitted(encoder)
    sentences = list(
        dict.fromkeys(
            [
                *(s for d in data.values() for s in (*d.s1, *d.s2)),  # diag is one of them
                *(s for d in clf_data.values() for s in d.sentences()),
                *(s for d in rank_data.values() for s in d.sentences()),
                *postprocess.fit_sentences(fitted),  # fit files: in the one encode call
            ]
        )
    )
    t1 = time.perf_counter()
    emb = head.encode(sentences)  # (U, D); sharded: every process encodes its share
    t2 = time.perf_counter()
    if getattr(head, "rank", 0) != 0:  # a sharded run is measured and saved by rank 0 alone
        return None
    row = {s: i for i, s in enumerate(sentences)}

    def all_vectors(texts: list[str]) -> np.ndarray:
        return emb[[row[s] for s in texts]]

    task_vectors = postprocess.TaskVectors(fitted, all_vectors)  # task -> its vectors(texts)
    results, pairs = {}, {}
    for task, d in data.items():
        vectors = task_vectors(task, [*d.s1, *d.s2])
        sim = metrics.pair_cosine(vectors(d.s1), vectors(d.s2))
        results[task] = _task_metrics(specs[task], d, sim)
        pairs[task] = {
            "sim": sim,
            "gold": d.gold,
            "subset": np.array(d.subset),
            "s1": np.array(d.s1),
            "s2": np.array(d.s2),
        }
    for task, d in clf_data.items():  # SentEval transfer: a classifier on frozen embeddings
        vectors = task_vectors(task, d.sentences())
        results[task] = transfer.evaluate(d, vectors, transfer_config)
    for task, d in rank_data.items():  # EvalRank: each positive's rank among the pool
        results[task] = ranking.evaluate(d, task_vectors(task, d.sentences()))
    avg = None  # over the tasks flagged in the registry, when all of them ran: a new task
    avg_tasks = task_registry.simcse_avg_tasks()  # cannot move the figure papers compare
    if avg_tasks and all(t in results for t in avg_tasks) and split == "test":
        avg = metrics.simcse_average([results[t]["spearman"] for t in avg_tasks])
    diag_vectors = task_vectors(diag.task, [*diag.s1, *diag.s2]) if diag else None
    diag_metrics = _diagnostics(diag, diag_vectors) if diag else {}
    t3 = time.perf_counter()

    describe = getattr(encoder, "describe", dict)()
    meta = {
        "embeval_version": embeval.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **describe,
        **({"postprocess": task_vectors.record(describe["postprocess"])} if fitted else {}),
        # fitted on the scored sentences themselves: not comparable with inductive figures
        **({"transductive": True} if any(s.fit_on == postprocess.TARGET for s in fitted) else {}),
        "protocol": protocol,
        "split": split,
        "limit": limit,
        "partial": bool(cut),
        "data_root": str(root),
        "data_checksums": {
            t: checksum(d.files) for t, d in [*data.items(), *clf_data.items(), *rank_data.items()]
        },
        "n_sentences": len(sentences),
        "world_size": getattr(encoder, "world_size", 1),  # processes that shared the encoding
        "timings": {
            "load_s": t1 - t0,
            "encode_s": t2 - t1,
            "metrics_s": t3 - t2,
            "total_s": time.perf_counter() - t0,
        },
    }
    run_name = name or default_run_name(describe.get("checkpoint"))
    if clf_data:
        meta["transfer"] = dataclasses.asdict(transfer_config or transfer.TransferConfig())
    return RunResult(
        name=run_name,
        meta=meta,
        tasks=results,
        avg=avg,
        transfer_avg=transfer.transfer_average(results),
        diagnostics=diag_metrics,
        pairs=pairs,
    )


def default_run_name(checkpoint: str | None) -> str:
    """The checkpoint folder's name (the packaged default is called by its model name)."""
    if not checkpoint or checkpoint == DEFAULT_CHECKPOINT:
        return "all-MiniLM-L6-v2"
    return Path(str(checkpoint).rstrip("/")).name or "run"


def _sizes(d) -> list[int]:
    """Examples per split of a task (STS: one split; ranking: pairs, background), to tell
    whether --limit cut it."""
    if hasattr(d, "background"):
        return [len(d), len(d.background)]
    return [len(s) for s in d.splits.values()] if hasattr(d, "splits") else [len(d)]


def _task_metrics(task: task_registry.Task, d: STSData, sim: np.ndarray) -> dict:
    out = {"split": d.split, "n": len(d)}
    if task.subsets:  # STS12-16: primary = `all`, as SimCSE tables and MTEB report
        agg = metrics.sts_aggregates(sim, d.gold, d.subset)
        return {**out, **agg["aggregates"]["all"], **agg}
    return {**out, **metrics.correlations(sim, d.gold)}


def _diagnostic_data(data: dict[str, STSData]) -> STSData | None:
    """The STS-B pairs this run scored (SimCSE measures alignment and uniformity there), as
    `diagnostics.source` records. A run without STS-B has no diagnostics: STS-B is not loaded
    and encoded just for them, and a transfer-only run stays free of STS data."""
    if DIAGNOSTIC_TASK not in data:
        log.info("no alignment/uniformity: %s was not scored in this run", DIAGNOSTIC_TASK)
    return data.get(DIAGNOSTIC_TASK)


def _diagnostics(d: STSData, vectors) -> dict:
    """Every registered diagnostic (`embeval.eval.metrics.diagnostics`) on these pairs."""
    return measure_diagnostics(d.s1, d.s2, d.gold, vectors, source=f"{d.task}/{d.split}")
