"""The protocol audit: one checkpoint's STS figures under every protocol choice that makes
published numbers differ, and which choices reproduce the figures a paper reports.

The grid (`audit_grid`, the one place it is defined, from the registries):
- pooler: the checkpoint's own, then SimCSE's family as far as `POOLERS` has it
  (`AUDIT_POOLERS`: cls, cls_before_pooler, avg, avg_first_last, avg_first_last_old);
- protocol (the text variant): every protocol of `embeval.eval.data.sts.PROTOCOLS`; simcse reads
  SentEval's tokenized `sts/`, mteb the raw SemEval release `sts-raw/` (and SICK-R's all pairs);
- max_length: the checkpoint's own, 128 (a common sentence-transformers limit) and 512 (BERT's
  positions; SimCSE's evaluation does not truncate), capped at the model's positions. Lengths
  that cut exactly the same sentences give the same vectors and are scored once (the row says
  which lengths it stands for);
- normalize: on and off (cosines do not change; whitening after it does);
- whiten: off, or fitted on each task's scored pairs (transductive) keeping every direction that
  has variance (K = the covariance's rank, at most D);
- aggregation of STS12-16: all, mean, wmean (from the same scoring: `tasks[T]["aggregates"]`).

Cost: one forward pass per (protocol, max length) for all poolers together (`MultiPoolEncoder`
runs the backbone once and applies every pooler to its hidden states), written into each
pooler's own embedding cache, so a later `embeval score --pooler P` finds them and a second
audit encodes nothing. Normalize, whitening and aggregation are computed on those vectors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeval.core.checkpoint import checkpoint_info, position_limit
from embeval.core.poolers import POOLERS
from embeval.eval.data import tasks as task_registry
from embeval.eval.data.paths import DataError, data_root
from embeval.eval.data.sts import PROTOCOLS
from embeval.eval.encoders.cache import CachedEncoder, text_key
from embeval.eval.encoders.postprocess import (
    TARGET,
    PostProcessed,
    Whiten,
    covariance_rank,
)
from embeval.eval.encoders.transformer import TransformerEncoder
from embeval.eval.metrics.similarity import simcse_average
from embeval.eval.scoring.score import score

log = logging.getLogger(__name__)

AUDIT_POOLERS = ("cls", "cls_before_pooler", "avg", "avg_first_last", "avg_first_last_old")
AUDIT_MAX_LENGTHS = (128, 512)  # besides the checkpoint's own
AGGREGATIONS = ("all", "mean", "wmean")  # SentEval's and SimCSE's STS12-16 figures
TOLERANCE = 0.01  # a figure reproduces an expected one when within this many points
AXES = ("pooler", "protocol", "max_length", "normalize", "whiten", "aggregation")


def audit_grid(checkpoint: str | os.PathLike | None = None) -> dict[str, list]:
    """Each axis's values, the checkpoint's own setting first (so the first row is what
    `embeval score CKPT` reports)."""
    info = checkpoint_info(checkpoint)
    limit = position_limit(json.loads((Path(info.path) / "config.json").read_text("utf-8")))
    lengths = [info.max_length, *AUDIT_MAX_LENGTHS]
    return {
        "pooler": list(dict.fromkeys([info.pooler, *(p for p in AUDIT_POOLERS if p in POOLERS)])),
        "protocol": list(PROTOCOLS),
        "max_length": list(dict.fromkeys(min(n, limit) for n in lengths)),
        "normalize": [info.normalize, not info.normalize],
        "whiten": [False, True],
        "aggregation": list(AGGREGATIONS),
    }


class RankWhiten(Whiten):
    """The audit's whitening: fitted on the target, keeping every direction with variance."""

    def __init__(self):
        super().__init__(TARGET, None)

    def fit(self, x: np.ndarray) -> Whiten:
        unit = Whiten(TARGET, min(covariance_rank(x), x.shape[1]))
        unit.cache_dir = self.cache_dir
        return unit.fit(x)

    def params(self) -> dict:
        return {"dim": "rank"}


class MultiPoolEncoder(TransformerEncoder):
    """The backbone once per batch, every pooler of `poolers` on its hidden states: (N, P * H),
    pooler i's vectors in columns [i * H, (i + 1) * H). Same tokenization, batching and pooling
    functions as `TransformerEncoder`, so each block equals that pooler's own encoding."""

    def __init__(self, poolers: Sequence[str], info, **kw):
        super().__init__(None, None, info, **kw)
        self.poolers = list(poolers)

    def _forward(self, model, batch: dict):  # (b, P * H) float32
        import torch

        out = model.backbone(**batch, output_hidden_states=True, return_dict=True)
        mask, pooled = batch["attention_mask"], getattr(out, "pooler_output", None)
        parts = [POOLERS.get(p)(mask, out.hidden_states, pooled).float() for p in self.poolers]
        return torch.cat(parts, dim=1)


@dataclass
class AuditSpec:
    checkpoint: str | None = None
    tasks: Sequence[str] | None = None  # default: the STS test sets
    expect: dict[str, float] = dataclasses.field(default_factory=dict)  # task or "Avg" -> figure
    limit: int | None = None
    root: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    batch_size: int = 128
    device: str | None = None
    progress: bool = True
    name: str | None = None


def _sentences(tasks, protocol, root, limit) -> tuple[list[str], list[str]]:
    """(task names, the distinct sentences they score) under `protocol`."""
    specs = task_registry.select(tasks, "test", protocol)
    if other := [t.name for t in specs if t.kind != "sts"]:
        raise DataError(f"audit: {', '.join(other)} are not STS tasks; the audit covers STS")
    data = [task_registry.load(t, "test", root, protocol) for t in specs]
    data = [d.head(limit) if limit else d for d in data]
    return [t.name for t in specs], list(dict.fromkeys(s for d in data for s in (*d.s1, *d.s2)))


def _length_groups(checkpoint, sentences, lengths) -> dict[int, list[int]]:
    """Max lengths that cut the same sentences give the same vectors: {kept: [all it stands
    for]}, the first of each group kept."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint_info(checkpoint).path)
    n = np.array([len(ids) for ids in tok(sentences)["input_ids"]])  # tokens, untruncated
    groups: dict[tuple, list[int]] = {}
    for length in lengths:
        groups.setdefault(tuple(np.flatnonzero(n > length)), []).append(length)
    return {g[0]: g for g in groups.values()}


def _warm(spec: AuditSpec, poolers, max_length, sentences) -> None:
    """Encode what any pooler's cache lacks, in one pass for all poolers."""
    caches = {p: _cached(spec, p, max_length) for p in poolers}
    known = {p: c._load() for p, c in caches.items()}
    missing = [s for s in sentences if any(text_key(s) not in known[p] for p in poolers)]
    if not missing:
        return
    info = checkpoint_info(spec.checkpoint, "cls" if "cls" in poolers else None, max_length)
    multi = MultiPoolEncoder(
        poolers, info, batch_size=spec.batch_size, device=spec.device, progress=spec.progress
    )
    vecs = multi.encode(missing)  # (M, P * H)
    keys = np.array([text_key(s) for s in missing], dtype="S64")
    for p, block in zip(poolers, np.split(vecs, len(poolers), axis=1), strict=True):
        caches[p]._write(keys, np.ascontiguousarray(block))


def _cached(spec: AuditSpec, pooler: str, max_length: int) -> CachedEncoder:
    enc = TransformerEncoder.from_checkpoint(
        spec.checkpoint,
        pooler=pooler,
        max_length=max_length,
        batch_size=spec.batch_size,
        device=spec.device,
        progress=spec.progress,
    )
    return CachedEncoder(enc, spec.cache_dir)


class _Memo:
    """The wrapped encoder's last answer, kept: every post-hoc variant re-asks the same list."""

    def __init__(self, inner):
        self.inner, self.fingerprint, self._last = inner, inner.fingerprint, None

    def describe(self) -> dict:
        return self.inner.describe()

    def encode(self, sentences):
        key = tuple(sentences)
        if self._last is None or self._last[0] != key:
            self._last = (key, self.inner.encode(sentences))
        return self._last[1]


def _figures(run, task_names, aggregation) -> dict[str, float]:
    out = {}
    for t in task_names:
        entry = run.tasks[t]
        agg = entry.get("aggregates", {}).get(aggregation)
        out[t] = float((agg or entry)["spearman"])
    avg_tasks = task_registry.simcse_avg_tasks()
    if all(t in out for t in avg_tasks):
        out["Avg"] = simcse_average([out[t] for t in avg_tasks])
    return out


def matches(rows: list[dict], expect: dict[str, float]) -> tuple[dict[str, list[int]], list[int]]:
    """(per expected figure, the rows within TOLERANCE of it; the rows that reproduce all)."""
    per = {
        k: [i for i, r in enumerate(rows) if abs(r["figures"].get(k, np.inf) - v) <= TOLERANCE]
        for k, v in expect.items()
    }
    every = [i for i in range(len(rows)) if all(i in ids for ids in per.values())]
    return per, every if expect else []


def run_audit(spec: AuditSpec):
    """Score every grid point; returns (the RunResult of the checkpoint's own setting with the
    audit under `meta.audit`, the rows)."""
    root = data_root(spec.root)
    grid = audit_grid(spec.checkpoint)
    rows, first = [], None
    for protocol in grid["protocol"]:
        task_names, sentences = _sentences(spec.tasks, protocol, root, spec.limit)
        avg = ["Avg"] if set(task_registry.simcse_avg_tasks()) <= set(task_names) else []
        if unknown := [k for k in spec.expect if k not in (*task_names, *avg)]:
            raise DataError(
                f"--expect {', '.join(unknown)}: not a scored task; expected one of "
                f"{', '.join([*task_names, *avg])} (Avg needs all seven STS tasks)"
            )
        for length, same in _length_groups(spec.checkpoint, sentences, grid["max_length"]).items():
            _warm(spec, grid["pooler"], length, sentences)
            for pooler in grid["pooler"]:
                base = _Memo(_cached(spec, pooler, length))
                for normalize in grid["normalize"]:
                    for whiten in grid["whiten"]:
                        enc = PostProcessed(base, "normalize") if normalize else base
                        enc = PostProcessed(enc, "whiten", RankWhiten()) if whiten else enc
                        run = score(
                            enc, task_names, root=root, protocol=protocol, limit=spec.limit,
                            name=spec.name, diagnostics=False,
                        )  # fmt: skip
                        first = first or run
                        choice = {
                            "pooler": pooler,
                            "protocol": protocol,
                            "max_length": length,
                            "max_length_same": same,
                            "normalize": normalize,
                            "whiten": whiten,
                        }
                        for agg in grid["aggregation"]:
                            figs = _figures(run, task_names, agg)
                            rows.append({**choice, "aggregation": agg, "figures": figs})
    per, every = matches(rows, spec.expect)
    first.meta["audit"] = {
        "grid": grid,
        "tolerance": TOLERANCE,
        "expected": dict(spec.expect),
        "rows": [{**r, "figures": {k: round(v, 4) for k, v in r["figures"].items()}} for r in rows],
        "matches": per,
        "reproduces_all": every,
    }
    return first, rows


def choice_label(row: dict) -> str:
    """One row's choices, compactly: 'avg, mteb, len 256 (=128,512), norm, whiten, wmean'."""
    same = row.get("max_length_same") or [row["max_length"]]
    others = [str(n) for n in same if n != row["max_length"]]
    length = f"len {row['max_length']}" + (f" (={','.join(others)})" if others else "")
    return ", ".join(
        [
            row["pooler"],
            row["protocol"],
            length,
            "norm" if row["normalize"] else "no-norm",
            "whiten" if row["whiten"] else "no-whiten",
            row["aggregation"],
        ]
    )


def summarize(rows: list[dict]) -> str:
    """Matched rows in words: when they are every combination of their values on each axis (the
    usual case: choices that cannot matter, such as Normalize without whitening), one line
    'a or b, c, ...' in `choice_label`'s order; otherwise each row's label, '; '-separated."""
    if not rows:
        return "none"
    labels = [choice_label(r).split(", ") for r in rows]
    values = [list(dict.fromkeys(col)) for col in zip(*labels, strict=True)]
    if len({tuple(x) for x in labels}) == int(np.prod([len(v) for v in values])):
        return ", ".join(" or ".join(v) for v in values)
    return "; ".join(", ".join(x) for x in labels)


def audit_table(
    audit: dict, all_rows: bool = False
) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, lines naming the matches) of a results file's `meta.audit`, for the CLI
    and the report. Without `all_rows`, a row whose figures equal an earlier row's is left out
    (Normalize alone never changes a cosine), and a line says how many there were."""
    rows = audit["rows"]
    keys = list(rows[0]["figures"]) if rows else []
    seen, table = set(), []
    for r in rows:
        figs = tuple(f"{r['figures'][k]:.2f}" for k in keys)
        if all_rows or figs not in seen:
            table.append([choice_label(r), *figs])
        seen.add(figs)
    notes = []
    if len(table) < len(rows):
        notes.append(f"{len(rows)} choices, {len(table)} with distinct figures shown")
    for task, ids in audit["matches"].items():
        found = summarize([rows[i] for i in ids])
        notes.append(f"{task} = {audit['expected'][task]:.2f} (±{audit['tolerance']}): {found}")
    if audit["expected"]:
        every = summarize([rows[i] for i in audit["reproduces_all"]])
        notes.append(f"reproduces every expected figure: {every}")
    return ["choice", *keys], table, notes
