"""embeval report: compare runs from results files in one self-contained HTML page.

collect (load results files, name them uniquely) -> build (tables, statistics, figures as data
URIs) -> render (ONE autoescaped jinja2 template, `templates/report.html.j2`). Markdown and CSV
exports of the main tables live in `embeval.eval.export`.

Runs are only compared with runs measured the same way: a table holds runs of one protocol, one
split and one `--limit` (partial runs are never mixed with full ones); each table has its own
baseline row.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

import embeval
from embeval.eval import plots, stats
from embeval.eval.datasets import STS_TASKS, STS_YEARS
from embeval.eval.results import ResultsError, RunResult, load_run

log = logging.getLogger(__name__)
AVG = "Avg"
DIST_TASK = "STSBenchmark"  # similarity distributions and worst pairs; else the first task
N_WORST = 10
DEV_KEYS = ("stsb_dev", "dev_spearman", "eval_stsb_spearman")


class ReportError(ResultsError):
    """Results that cannot be put in one report; the message says which and why."""


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


@dataclass
class RunCard:
    label: str
    run: RunResult
    facts: list[tuple[str, str]]
    diagnostics: list[tuple[str, str]]
    dist_task: str | None = None
    dist_plot: str | None = None
    dist_n: int = 0
    worst: list[dict] = field(default_factory=list)


@dataclass
class TrainLog:
    label: str
    path: str
    points: int
    skipped: int
    trajectory: plots.Trajectory | None
    dev: list[tuple[int, float]]  # (step, STS-B dev Spearman) when logged


@dataclass
class Report:
    title: str
    generated: str
    version: str
    tables: list[Table]
    cards: list[RunCard]
    logs: list[TrainLog]
    notes: list[str]
    n_boot: int
    seed: int
    runs: list[str] = field(default_factory=list)
    align_plot: str | None = None


# ---------------------------------------------------------------- collect
def collect(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, RunResult]], list[str]]:
    """Load results files; return (unique label, run) pairs and notes about renamed runs.

    Two runs with the same name are kept and disambiguated by their file path (a note says so);
    the same file given twice is refused.
    """
    if not paths:
        raise ReportError(
            "no results files given: pass one or more results JSON files written by "
            "`embeval score` (e.g. reports/runs/*.json)"
        )
    seen: dict[Path, str] = {}
    for p in paths:
        real = Path(p).resolve()
        if real in seen:
            raise ReportError(f"results file {p} is given twice (also as {seen[real]})")
        seen[real] = str(p)
    runs = [load_run(p) for p in paths]
    names = [r.name for r in runs]
    labels, notes = [], []
    for p, r in zip(paths, runs, strict=True):
        if names.count(r.name) > 1:
            labels.append(f"{r.name} [{p}]")
        else:
            labels.append(r.name)
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        notes.append(
            f"{names.count(name)} runs are named {name!r}; they are told apart by their "
            "results file in brackets (use `embeval score --name` to name runs)"
        )
    return list(zip(labels, runs, strict=True)), notes


def pick_baseline(labels: Sequence[str], name: str | None) -> str | None:
    """The label `--baseline NAME` designates (exact label, else a unique run name)."""
    if name is None:
        return None
    if name in labels:
        return name
    matches = [lab for lab in labels if lab.split(" [", 1)[0] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ReportError(
            f"--baseline {name!r} is ambiguous: {len(matches)} runs have that name; "
            f"use one of: {', '.join(matches)}"
        )
    close = difflib.get_close_matches(name, labels, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; runs: {', '.join(labels)}"
    raise ReportError(f"--baseline {name!r} is not one of the runs{hint}")


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


def _task_stats(rows: list[Row], task: str, pairs: dict[str, dict], n_boot: int, seed: int):
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
    """Bootstrap the SimCSE average: task resamples are independent, so average sample b."""
    for r in rows:
        cell = r.cells.get(AVG)
        if cell is None or cell.value is None:
            continue
        per = samples.get(r.label, {})
        if not all(t in per for t in STS_TASKS):
            continue
        avg = np.mean([per[t] for t in STS_TASKS], axis=0)  # (B,)
        cell.ci = stats.percentile_ci(avg)
        base = rows[0]
        if not r.baseline and r.label in paired_all and base.cells[AVG].value is not None:
            base_avg = np.mean([samples[base.label][t] for t in STS_TASKS], axis=0)
            cell.p = stats.paired_p_value(avg, base_avg, cell.delta)


# ---------------------------------------------------------------- tables
def _mark_best(rows: list[Row], columns: list[str]) -> None:
    for col in columns:
        vals = [r.cells[col].value for r in rows if r.cells[col].value is not None]
        if len(vals) > 1:
            top = round(max(vals), 2)
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
    columns = [t for t in STS_TASKS if any(t in r.tasks for _, r in group)]
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
        missing: dict[str, str] = {}
        pairs = {r.label: _pairs_of(r.run, missing, r.label) for r in rows}
        table.notes += [f"{lab}: {msg}" for lab, msg in missing.items()]
        samples: dict[str, dict[str, np.ndarray]] = {}
        paired_all = {r.label for r in rows}
        for t in columns:
            if t == AVG:
                continue
            for lab, s in _task_stats(rows, t, pairs, n_boot, seed).items():
                samples.setdefault(lab, {})[t] = s
            paired_all &= {r.label for r in rows if r.baseline or r.cells[t].p is not None}
        if AVG in columns:
            _avg_stats(rows, samples, paired_all)
    table.subsets = subset_tables(rows)
    table.other = other_table(rows)
    return table


def _spearman(run: RunResult, task: str) -> float | None:
    entry = run.tasks.get(task)
    return entry.get("spearman") if isinstance(entry, dict) else None


def subset_tables(rows: list[Row]) -> dict[str, tuple[list[str], list[Row]]]:
    """Per-subset Spearman of STS12–16 (MSRpar, headlines, ...): {task: (subsets, rows)}."""
    out = {}
    for task in STS_YEARS:
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
            if t not in STS_TASKS and isinstance(m, dict) and "accuracy" in m
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


def group_tables(
    labelled: list[tuple[str, RunResult]], baseline: str | None, n_boot: int, seed: int
) -> list[Table]:
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


# ---------------------------------------------------------------- per-run cards
def _fmt(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def worst_pairs(p: dict[str, np.ndarray], k: int = N_WORST) -> list[dict]:
    """Pairs with the largest |rank(pred) - rank(gold)| (average ranks, as Spearman uses)."""
    rp, rg = rankdata(p["sim"]), rankdata(p["gold"])
    gap = np.abs(rp - rg)
    order = np.argsort(-gap, kind="stable")[:k]
    return [
        {
            "gap": float(gap[i]),
            "rank_pred": float(rp[i]),
            "rank_gold": float(rg[i]),
            "sim": float(p["sim"][i]),
            "gold": float(p["gold"][i]),
            "subset": str(p["subset"][i]) if "subset" in p else "",
            "s1": str(p["s1"][i]),
            "s2": str(p["s2"][i]),
        }
        for i in order
    ]


def run_card(label: str, run: RunResult, fmt: str) -> RunCard:
    m, d = run.meta or {}, run.diagnostics or {}
    facts = [
        ("checkpoint", str(m.get("checkpoint", "?"))),
        ("pooler", str(m.get("pooler", "?"))),
        ("protocol / split", f"{m.get('protocol', '?')} / {m.get('split', '?')}"),
        ("partial", f"first {m.get('limit')} pairs" if m.get("partial") else "no"),
        ("created", str(m.get("created", "?"))),
        ("embeval", str(m.get("embeval_version", "?"))),
        ("results file", str(run.path)),
    ]
    diag = [
        ("measured on", str(d.get("source", "—"))),
        ("alignment", _fmt(d.get("alignment"))),
        ("uniformity", _fmt(d.get("uniformity"))),
        ("anisotropy", _fmt(d.get("anisotropy"))),
        ("effective rank", _fmt(d.get("effective_rank"), 1)),
    ]
    card = RunCard(label, run, facts, diag)
    try:
        pairs = run.load_pairs()
    except ResultsError as exc:
        log.warning("%s", exc)
        return card
    task = DIST_TASK if DIST_TASK in pairs else next((t for t in STS_TASKS if t in pairs), None)
    if task is not None and len(pairs[task].get("gold", ())) > 1:
        p = pairs[task]
        card.dist_task, card.dist_n = task, len(p["gold"])
        card.dist_plot = plots.similarity_by_gold(p["sim"], p["gold"], f"{label}: {task}", fmt)
        card.worst = worst_pairs(p)
    return card


# ---------------------------------------------------------------- training logs
def read_train_log(path: str | os.PathLike) -> TrainLog:
    """Read a JSON-lines training log defensively.

    Lines that are not JSON objects (e.g. a truncated last line while training still runs) are
    skipped and counted; points need numeric `alignment` and `uniformity` (step: the `step` key,
    else the line number). STS-B dev figures are taken from any of DEV_KEYS.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ReportError(f"training log {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"training log {path} is unreadable: {exc}") from exc
    steps, align, unif, dev, skipped = [], [], [], [], 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(rec, dict):
            skipped += 1
            continue
        step = rec.get("step", i)
        step = step if isinstance(step, int | float) else i
        dv = next((rec[k] for k in DEV_KEYS if isinstance(rec.get(k), int | float)), None)
        if dv is not None:
            dev.append((int(step), float(dv)))
        a, u = rec.get("alignment"), rec.get("uniformity")
        if isinstance(a, int | float) and isinstance(u, int | float):
            steps.append(step), align.append(a), unif.append(u)
    traj = None
    label = path.stem if path.stem not in ("train_log", "log", "train") else path.parent.name
    if steps:
        traj = plots.Trajectory(label, np.array(steps), np.array(align), np.array(unif))
    return TrainLog(label, str(path), len(steps), skipped, traj, dev)


# ---------------------------------------------------------------- build + render
def build(
    paths: Sequence[str | os.PathLike],
    baseline: str | None = None,
    train_logs: Sequence[str | os.PathLike] = (),
    n_boot: int = stats.N_BOOT,
    seed: int = stats.SEED,
    figures: bool = True,
    fmt: str = "svg",
) -> Report:
    """Everything the template (or an export) needs; no HTML here."""
    labelled, notes = collect(paths)
    base = pick_baseline([lab for lab, _ in labelled], baseline)
    tables = group_tables(labelled, base, n_boot, seed)
    if len(tables) > 1:
        notes.append(
            "runs use different protocols, splits or --limit: they are shown in separate "
            "tables, each compared with its own baseline"
        )
    logs = [read_train_log(p) for p in train_logs]
    for lg in logs:
        if lg.trajectory is None:
            notes.append(f"training log {lg.path}: no line with both alignment and uniformity")
        if lg.skipped:
            notes.append(f"training log {lg.path}: skipped {lg.skipped} line(s) that are not JSON")
    report = Report(
        title="embeval report: "
        + ", ".join(lab for lab, _ in labelled[:4])
        + (f" and {len(labelled) - 4} more" if len(labelled) > 4 else ""),
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=embeval.__version__,
        tables=tables,
        cards=[],
        logs=logs,
        notes=notes,
        n_boot=n_boot,
        seed=seed,
        runs=[lab for lab, _ in labelled],
    )
    if figures:
        report.cards = [run_card(lab, run, fmt) for lab, run in labelled]
        points = [
            (lab, r.diagnostics["alignment"], r.diagnostics["uniformity"])
            for lab, r in labelled
            if {"alignment", "uniformity"} <= set(r.diagnostics or {})
        ]
        sources = {(r.diagnostics or {}).get("source") for _, r in labelled} - {None}
        if len(sources) > 1:
            notes.append(
                "alignment/uniformity were measured on different sets "
                f"({', '.join(sorted(sources))}): compare points with care"
            )
        trajs = [lg.trajectory for lg in logs if lg.trajectory is not None]
        if points or trajs:
            report.align_plot = plots.alignment_uniformity(points, trajs, fmt)
    return report


def render_html(report: Report) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("embeval.eval", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"
    env.filters["signed"] = lambda v, d=2: "" if v is None else f"{v:+.{d}f}"
    env.filters["pval"] = format_p
    return env.get_template("report.html.j2").render(r=report, AVG=AVG)


def format_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def write(text: str, out: str | os.PathLike) -> Path:
    """Write atomically (temporary file + rename): a reader never sees half a page."""
    from embeval.eval.results import _atomic_write

    out = Path(out)
    _atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    return out
