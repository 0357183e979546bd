"""Comparison tables of `embeval report`: Spearman per task, deltas, best marks, CIs, p-values.

Separate from `embeval.eval.report.build` (collecting runs, run cards, training logs, HTML) because
these tables are what every output shows: the HTML template and the Markdown/CSV exports
(`embeval.eval.report.export`) all read them, so nothing here knows about HTML or files.

Runs are only compared with runs measured the same way: a table holds runs of one protocol, one
split and one `--limit` (partial runs are never mixed with full ones); each table has its own
baseline row. A task a run lacks stays None (shown as missing, never as 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embeval.eval.data import tasks as task_registry
from embeval.eval.metrics import stats
from embeval.results.files import ResultsError, RunResult

AVG = "Avg"


@dataclass
class Cell:
    value: float | None  # None: the run lacks this task (shown as missing, never as 0)
    delta: float | None = None  # value - baseline value
    ci: tuple[float, float] | None = None  # 95 % percentile bootstrap interval
    p: float | None = None  # paired bootstrap p-value vs the baseline
    note: str = ""  # why there is no p-value / CI
    best: bool = False


@dataclass
class Row:
    label: str
    run: RunResult
    baseline: bool
    cells: dict[str, Cell]


@dataclass
class Table:
    title: str
    key: tuple  # (protocol, split, limit)
    partial: bool
    columns: list[str]
    rows: list[Row]
    baseline: str
    notes: list[str] = field(default_factory=list)
    subsets: dict[str, tuple[list[str], list[Row]]] = field(default_factory=dict)
    other: Table | None = None  # non-STS tasks (transfer: entries with an "accuracy" key)
    pearson: Table | None = None  # the same STS tasks' Pearson r (values only)
    ranking: list[Table] = field(default_factory=list)  # one per ranking task (EvalRank)
    task: str | None = None  # a ranking table's task (its columns are metrics)

    @property
    def compared(self) -> bool:
        """A baseline only means something when there is another row to compare with it."""
        return len(self.rows) > 1


# ---------------------------------------------------------------- grouping
def run_key(run: RunResult) -> tuple[str, str, int | None]:
    """(protocol, split, limit): runs are only compared within the same key."""
    meta = run.meta or {}
    split = meta.get("split") or next(
        (t.get("split") for t in run.tasks.values() if isinstance(t, dict) and "split" in t), "?"
    )
    limit = meta.get("limit") if meta.get("partial", bool(meta.get("limit"))) else None
    return meta.get("protocol", "simcse"), split, limit


# ---------------------------------------------------------------- statistics
def same_pairs(a: dict | None, b: dict | None) -> bool:
    """True when two runs' per-pair arrays are the same pairs: same gold, same sentences."""
    keys = ("gold", "s1", "s2")
    if not a or not b or not all(k in a and k in b for k in keys):
        return False
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in keys)


def _pairs_of(run: RunResult, notes: dict[str, str], label: str) -> dict:
    try:
        return run.load_pairs()
    except ResultsError as exc:
        notes[label] = str(exc)
        return {}


def _task_stats(rows: list[Row], task: str, pairs: dict[str, dict], n_boot: int, seed: stats.Seed):
    """Fill CI and p-value of `task` in each row. Returns {label: (B,) bootstrap samples}."""
    base = rows[0]  # rows are ordered baseline first
    samples: dict[str, np.ndarray] = {}
    have = [r for r in rows if r.cells[task].value is not None and task in pairs.get(r.label, {})]
    ref = pairs.get(base.label, {}).get(task) if base.cells[task].value is not None else None
    paired = [r for r in have if ref is not None and same_pairs(pairs[r.label][task], ref)]
    paired_labels = {r.label for r in paired}
    if paired:
        sims = np.stack([pairs[r.label][task]["sim"] for r in paired])  # (R, N)
        rho = stats.bootstrap_spearman(sims, ref["gold"], n_boot, seed)  # (R, B)
        samples.update({r.label: rho[i] for i, r in enumerate(paired)})
    for r in have:
        if r.label not in samples:
            p = pairs[r.label][task]
            samples[r.label] = stats.bootstrap_spearman(p["sim"], p["gold"], n_boot, seed)
    for r in rows:
        cell = r.cells[task]
        if cell.value is None:
            continue
        if r.label not in samples:
            cell.note = "no per-pair file: no confidence interval"
            continue
        cell.ci = stats.percentile_ci(samples[r.label])
        if r.baseline:
            continue
        if r.label in paired_labels and base.label in paired_labels:
            cell.p = stats.paired_p_value(samples[r.label], samples[base.label], cell.delta)
        else:
            cell.note = "not the same pairs as the baseline: no paired test"
    return samples


def _avg_stats(rows: list[Row], samples: dict[str, dict[str, np.ndarray]], paired_all: set):
    """Bootstrap the SimCSE average: each task's resamples come from its own stream
    (`stats.task_seed`), so sample b of the average is the mean of independent task samples."""
    for r in rows:
        cell = r.cells.get(AVG)
        if cell is None or cell.value is None:
            continue
        per = samples.get(r.label, {})
        avg_tasks = task_registry.simcse_avg_tasks()  # the tasks run.avg is the mean of
        if not all(t in per for t in avg_tasks):
            continue
        avg = np.mean([per[t] for t in avg_tasks], axis=0)  # (B,)
        cell.ci = stats.percentile_ci(avg)
        base = rows[0]
        if not r.baseline and r.label in paired_all and base.cells[AVG].value is not None:
            base_avg = np.mean([samples[base.label][t] for t in avg_tasks], axis=0)
            cell.p = stats.paired_p_value(avg, base_avg, cell.delta)


# ---------------------------------------------------------------- tables
def _sts_names() -> list[str]:
    """The registered STS tasks, in registry order: the main table's columns."""
    return [t.name for t in task_registry.group("sts")]


def _mark_best(rows: list[Row], columns: list[str], lower: tuple[str, ...] = ()) -> None:
    """Mark each column's best value: the highest, or the lowest for the `lower` columns."""
    for col in columns:
        vals = [r.cells[col].value for r in rows if r.cells[col].value is not None]
        if len(vals) > 1:
            top = round(min(vals) if col in lower else max(vals), 2)
            for r in rows:
                v = r.cells[col].value
                r.cells[col].best = v is not None and round(v, 2) == top


def _fill_deltas(rows: list[Row], columns: list[str]) -> None:
    base = rows[0]
    for r in rows[1:]:
        for col in columns:
            v, b = r.cells[col].value, base.cells[col].value
            r.cells[col].delta = None if v is None or b is None else v - b


def sts_table(
    title, key, group: list[tuple[str, RunResult]], baseline: str, n_boot: int, seed: int
) -> Table:
    """Main table of one group: STS tasks only, baseline row first."""
    group = sorted(group, key=lambda lr: lr[0] != baseline)  # stable: baseline first
    columns = [t for t in _sts_names() if any(t in r.tasks for _, r in group)]
    if any(r.avg is not None for _, r in group):
        columns.append(AVG)
    rows = []
    for label, run in group:
        cells = {t: Cell(_spearman(run, t)) for t in columns if t != AVG}
        if AVG in columns:
            cells[AVG] = Cell(run.avg)
        rows.append(Row(label, run, label == baseline, cells))
    _fill_deltas(rows, columns)
    _mark_best(rows, columns)
    table = Table(title, key, bool(key[2]), columns, rows, baseline)
    if n_boot > 0:
        _fill_stats(table, n_boot, seed)
    table.subsets = subset_tables(rows)
    table.other = other_table(rows)
    table.ranking = ranking_tables(rows)
    table.pearson = pearson_table(rows, [c for c in columns if c != AVG])
    return table


def _fill_stats(table: Table, n_boot: int, seed: int) -> None:
    """CIs and paired p-values of every cell, from the runs' per-pair files."""
    rows, columns = table.rows, table.columns
    missing: dict[str, str] = {}
    pairs = {r.label: _pairs_of(r.run, missing, r.label) for r in rows}
    table.notes += [f"{lab}: {msg}" for lab, msg in missing.items()]
    samples: dict[str, dict[str, np.ndarray]] = {}
    paired_all = {r.label for r in rows}
    for t in columns:
        if t == AVG:
            continue
        task_seed = stats.task_seed(seed, t)  # own stream per task: Avg averages independents
        for lab, s in _task_stats(rows, t, pairs, n_boot, task_seed).items():
            samples.setdefault(lab, {})[t] = s
        paired_all &= {r.label for r in rows if r.baseline or r.cells[t].p is not None}
    if AVG in columns:
        _avg_stats(rows, samples, paired_all)


def _spearman(run: RunResult, task: str) -> float | None:
    entry = run.tasks.get(task)
    return entry.get("spearman") if isinstance(entry, dict) else None


def pearson_table(rows: list[Row], tasks: list[str]) -> Table | None:
    """Pearson r x100 of the STS tasks, which results files store beside Spearman: the
    linear fit of cosine to gold that SentEval also prints (no intervals: Spearman is primary)."""
    if not tasks:
        return None
    out = []
    for r in rows:
        cells = {}
        for t in tasks:
            m = r.run.tasks.get(t)
            cells[t] = Cell(m.get("pearson") if isinstance(m, dict) else None)
        out.append(Row(r.label, r.run, r.baseline, cells))
    _fill_deltas(out, tasks)
    _mark_best(out, tasks)
    return Table("Pearson ×100", (), False, tasks, out, rows[0].label)


def subset_tables(rows: list[Row]) -> dict[str, tuple[list[str], list[Row]]]:
    """Per-subset Spearman of STS12–16 (MSRpar, headlines, ...): {task: (subsets, rows)}."""
    out = {}
    for task in [t.name for t in task_registry.group("sts") if t.subsets]:
        names = list(
            dict.fromkeys(
                s for r in rows for s in (r.run.tasks.get(task) or {}).get("subsets", {}) or {}
            )
        )
        if not names:
            continue
        sub_rows = []
        for r in rows:
            subs = (r.run.tasks.get(task) or {}).get("subsets") or {}
            cells = {s: Cell(subs[s]["spearman"]) if s in subs else Cell(None) for s in names}
            sub_rows.append(Row(r.label, r.run, r.baseline, cells))
        _fill_deltas(sub_rows, names)
        _mark_best(sub_rows, names)
        out[task] = (names, sub_rows)
    return out


def other_table(rows: list[Row]) -> Table | None:
    """Hook for non-STS tasks (e.g. SentEval transfer): every task entry with an "accuracy" key.

    Rendered by the template's `other_tasks` block as a second table; None when no run has one.
    """
    columns = list(
        dict.fromkeys(
            t
            for r in rows
            for t, m in r.run.tasks.items()
            if t not in _sts_names() and isinstance(m, dict) and "accuracy" in m
        )
    )
    if not columns:
        return None
    if any(getattr(r.run, "transfer_avg", None) is not None for r in rows):
        columns.append(AVG)
    out = []
    for r in rows:
        cells = {AVG: Cell(getattr(r.run, "transfer_avg", None))}
        for t in columns:
            m = r.run.tasks.get(t)
            if t != AVG:
                cells[t] = Cell(m["accuracy"] if isinstance(m, dict) and "accuracy" in m else None)
        out.append(Row(r.label, r.run, r.baseline, cells))
    _fill_deltas(out, columns)
    _mark_best(out, columns)
    return Table("Other tasks (accuracy)", (), False, columns, out, rows[0].label)


RANKING_COLUMNS = {"mr": "MR", "mrr": "MRR"}  # then Hits@k, in the files' order


def ranking_tables(rows: list[Row]) -> list[Table]:
    """One table per ranking task (entries with an "mrr" key, EvalRank): MR (lower is better),
    MRR x100, Hits@k x100 per run; values only (no per-pair intervals for ranks yet)."""
    names = dict.fromkeys(
        t for r in rows for t, m in r.run.tasks.items() if isinstance(m, dict) and "mrr" in m
    )
    tables = []
    for task in names:
        entries = [r.run.tasks.get(task) or {} for r in rows]
        hits = dict.fromkeys(k for e in entries for k in e if str(k).startswith("hits@"))
        keys = [*RANKING_COLUMNS, *hits]
        label = {**RANKING_COLUMNS, **{k: "Hits@" + k[5:] for k in hits}}
        columns = [label[k] for k in keys]
        out = []
        for r, e in zip(rows, entries, strict=True):
            cells = {label[k]: Cell(e.get(k) if "mrr" in e else None) for k in keys}
            out.append(Row(r.label, r.run, r.baseline, cells))
        _fill_deltas(out, columns)
        _mark_best(out, columns, lower=("MR",))
        pool = next((e["pool"] for e in entries if "pool" in e), None)
        title = f"{task} (ranking: MR, MRR ×100, Hits@k ×100" + (
            f"; pool of {pool} sentences)" if pool else ")"
        )
        tables.append(Table(title, (), False, columns, out, rows[0].label, task=task))
    return tables


def group_tables(
    labelled: list[tuple[str, RunResult]], baseline: str | None, n_boot: int, seed: int
) -> list[Table]:
    """One STS table per (protocol, split, limit), in order of first appearance."""
    groups: dict[tuple, list[tuple[str, RunResult]]] = {}
    for label, run in labelled:
        groups.setdefault(run_key(run), []).append((label, run))
    tables = []
    for key, group in groups.items():
        protocol, split, limit = key
        title = f"protocol {protocol} · {split} split"
        if limit:
            title += f" · PARTIAL: first {limit} pairs per task"
        labels = [lab for lab, _ in group]
        base = baseline if baseline in labels else labels[0]
        table = sts_table(title, key, group, base, n_boot, seed)
        if baseline is not None and baseline not in labels:
            table.notes.append(
                f"baseline {baseline!r} is not in this table (different protocol, split or "
                f"--limit); deltas here are against {base!r}"
            )
        if limit:
            table.notes.append(
                "partial runs (--limit) score only the first pairs of each task: not comparable "
                "with full runs or published figures"
            )
        tables.append(table)
    return tables
