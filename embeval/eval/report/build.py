"""embeval report: compare runs from results files in one self-contained HTML page.

collect (load results files, name them uniquely) -> build (tables, statistics, figures as data
URIs) -> render (ONE autoescaped jinja2 template, `templates/report.html.j2`). The comparison
tables and their statistics live in `embeval.eval.report.tables`; Markdown and CSV exports of the
main tables live in `embeval.eval.report.export`.
"""

from __future__ import annotations

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
from embeval.eval.data import tasks as task_registry
from embeval.eval.metrics import stats
from embeval.eval.metrics.diagnostics import DIAGNOSTICS, formatted
from embeval.eval.report import plots
from embeval.eval.report.formatting import format_p, num, signed  # noqa: F401  (format_p: API)
from embeval.eval.report.tables import AVG, Table, group_tables
from embeval.registry import closest
from embeval.results.files import ResultsError, RunResult, load_runs, path_list

log = logging.getLogger(__name__)
DIST_TASK = "STSBenchmark"  # similarity distributions and worst pairs; else the first task
N_WORST = 10
DEV_KEYS = ("stsb_dev", "dev_spearman", "eval_stsb_spearman")


class ReportError(ResultsError):
    """Results that cannot be put in one report; the message says which and why."""


@dataclass
class RunCard:
    label: str
    run: RunResult
    facts: list[tuple[str, str]]
    diagnostics: list[tuple[str, str]]
    has_sts: bool = True  # False: a transfer-only run, with no pairs to plot
    dist_task: str | None = None
    dist_plot: str | None = None
    dist_n: int = 0
    dist_pairs: dict | None = field(default=None, repr=False)  # the plotted task's arrays
    dist_ylim: tuple[float, float] | None = None  # shared by every card of the report
    worst: list[dict] = field(default_factory=list)
    audit: tuple | None = None  # `embeval audit`: (header, rows, notes) of meta.audit


@dataclass
class TrainLog:
    label: str
    path: str
    points: int
    skipped: int
    trajectory: plots.Trajectory | None
    dev: list[tuple[int, float]]  # (step, STS-B dev Spearman) when logged
    run: str | None = None  # the report's run scored from a checkpoint of this training
    bad_lines: list[int] = field(default_factory=list)  # 1-based numbers of the skipped lines


@dataclass
class SweepPlot:
    """A sweep's figure: Avg and STS-B Spearman against the swept value (dims, layer)."""

    axis: str
    of: str  # the base run's name
    labels: list[str]  # the runs (points) it draws, in value order
    series: list[plots.SweepSeries]
    plot: str | None = None  # data URI


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
    sweeps: list[SweepPlot] = field(default_factory=list)  # --dims / --layers sweeps drawn
    # (label, what it measures, direction) of each registered diagnostic: the cards' legend
    diagnostics: list[tuple[str, str, str]] = field(default_factory=list)


# ---------------------------------------------------------------- collect
def collect(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
) -> tuple[list[tuple[str, RunResult]], list[str]]:
    """Load results files; return (unique label, run) pairs and notes about renamed runs
    (`embeval.results.files.load_runs`: a repeated name gets its file path in brackets)."""
    paths = path_list(paths)
    if not paths:
        raise ReportError(
            "no results files given: pass one or more results JSON files written by "
            "`embeval score` (e.g. reports/runs/*.json)"
        )
    return load_runs(paths)


def pick_baseline(labelled: Sequence[tuple[str, RunResult]], name: str | None) -> str | None:
    """The label `--baseline NAME` designates (exact label, else a unique run name): matched on
    the runs' names, not parsed back out of labels that add marks and results files to them."""
    if name is None:
        return None
    labels = [lab for lab, _ in labelled]
    if name in labels:
        return name
    matches = [lab for lab, run in labelled if run.name == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ReportError(
            f"--baseline {name!r} is ambiguous: {len(matches)} runs have that name; "
            f"use one of: {', '.join(matches)}"
        )
    close = closest(name, labels)
    hint = f"; did you mean {close!r}?" if close else f"; runs: {', '.join(labels)}"
    raise ReportError(f"--baseline {name!r} is not one of the runs{hint}")


# ---------------------------------------------------------------- per-run cards
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


def run_card(label: str, run: RunResult) -> RunCard:
    """Facts, diagnostics and worst pairs of one run; its figure is drawn by `draw_cards`."""
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
    diag = [("measured on", str(d.get("source", "—"))), *formatted(d)]  # registry order
    sts_tasks = [t.name for t in task_registry.group("sts")]
    has_sts = any(t in sts_tasks for t in run.tasks)
    card = RunCard(label, run, facts, diag if d else [], has_sts)
    if m.get("audit"):
        from embeval.eval.scoring.audit import audit_table

        card.audit = audit_table(m["audit"])
    if not has_sts:  # nothing per pair to show (and no per-pair file to warn about)
        return card
    try:
        pairs = run.load_pairs()
    except ResultsError as exc:
        log.warning("%s", exc)
        return card
    task = DIST_TASK if DIST_TASK in pairs else next((t for t in sts_tasks if t in pairs), None)
    if task is not None and len(pairs[task].get("gold", ())) > 1:
        p = pairs[task]
        card.dist_task, card.dist_n, card.dist_pairs = task, len(p["gold"]), p
        card.worst = worst_pairs(p)
    return card


def draw_cards(cards: list[RunCard], fmt: str) -> None:
    """Similarity-by-gold figures on ONE y-range, so that runs compare at a glance."""
    shown = [c for c in cards if c.dist_pairs is not None]
    if not shown:
        return
    ylim = plots.shared_ylim([c.dist_pairs["sim"] for c in shown])
    for c in shown:
        p, title = c.dist_pairs, f"{c.label}: {c.dist_task}"
        c.dist_ylim = ylim
        c.dist_plot = plots.similarity_by_gold(p["sim"], p["gold"], title, fmt, ylim)


def link_logs(logs: list[TrainLog], labelled: list[tuple[str, RunResult]]) -> None:
    """Name a training log's trajectory after the run scored from its checkpoints.

    `embeval train --out DIR` writes DIR/train_log.jsonl beside DIR/best and DIR/last, so a run
    whose checkpoint lies in DIR came from that training; its point and the trajectory then
    share a name and a colour. Only DIR itself or a folder directly in it counts."""
    for lg in logs:
        folder = Path(lg.path).resolve().parent
        for label, run in labelled:
            ckpt = (run.meta or {}).get("checkpoint_path") or (run.meta or {}).get("checkpoint")
            if ckpt and folder in (Path(str(ckpt)).resolve(), Path(str(ckpt)).resolve().parent):
                lg.run = label
                if lg.trajectory is not None:
                    lg.trajectory.label, lg.trajectory.run = f"{label} (training)", label
                break


# ---------------------------------------------------------------- training logs
def read_train_log(path: str | os.PathLike) -> TrainLog:
    """Read a JSON-lines training log defensively.

    Lines that are not JSON objects (e.g. a truncated last line while training still runs) are
    skipped with a warning naming the file and line, and listed; points need numeric
    `alignment` and `uniformity` (step: the `step` key, else the line number). STS-B dev
    figures are taken from any of DEV_KEYS.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ReportError(f"training log {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"training log {path} is unreadable: {exc}") from exc
    steps, align, unif, dev, bad = [], [], [], [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            rec = exc
        if not isinstance(rec, dict):
            why = f"not JSON ({rec})" if isinstance(rec, Exception) else "not a JSON object"
            log.warning("training log %s line %d skipped: %s", path, i, why)
            bad.append(i)
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
    return TrainLog(label, str(path), len(steps), len(bad), traj, dev, bad_lines=bad)


# ---------------------------------------------------------------- build + render
def build(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    baseline: str | None = None,
    train_logs: Sequence[str | os.PathLike] | str | os.PathLike = (),
    n_boot: int = stats.N_BOOT,
    seed: int = stats.SEED,
    figures: bool = True,
    fmt: str = "svg",
) -> Report:
    """Everything the template (or an export) needs; no HTML here."""
    labelled, notes = collect(paths)
    base = pick_baseline(labelled, baseline)
    tables = group_tables(labelled, base, n_boot, seed)
    if len(tables) > 1:
        notes.append(
            "runs use different protocols, splits or --limit: they are shown in separate "
            "tables, each compared with its own baseline"
        )
    logs = [read_train_log(p) for p in path_list(train_logs)]
    link_logs(logs, labelled)
    for lg in logs:
        if lg.trajectory is None:
            notes.append(f"training log {lg.path}: no line with both alignment and uniformity")
        if lg.skipped:
            where = ", ".join(map(str, lg.bad_lines[:10])) + (", ..." if lg.skipped > 10 else "")
            notes.append(
                f"training log {lg.path}: skipped {lg.skipped} line(s) that are not JSON "
                f"objects (line {where})"
            )
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
        diagnostics=[(u.label, u.summary, u.direction) for _, u in DIAGNOSTICS.items()],
    )
    if figures:
        report.cards = [run_card(lab, run) for lab, run in labelled]
        draw_cards(report.cards, fmt)
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
        report.sweeps = sweep_plots(labelled, tables, fmt)
    return report


SWEEP_SERIES = (AVG, "STSBenchmark")  # the figures a sweep plot draws, when the runs have them


def sweep_plots(labelled, tables: list[Table], fmt: str = "svg") -> list[SweepPlot]:
    """A figure per sweep of at least two points (runs with the same `meta.sweep` axis and
    base, see `embeval.eval.scoring.sweeps`): each SWEEP_SERIES figure against the value, with
    the tables' bootstrap intervals as bands (the same intervals the tables print)."""
    from embeval.eval.scoring.sweeps import sweep_points

    cells = {r.label: r.cells for t in tables for r in t.rows}
    out = []
    for (axis, of), pts in sweep_points(labelled).items():
        if len(pts) < 2:
            continue
        series = []
        for name in SWEEP_SERIES:
            s = plots.SweepSeries(name, [], [], [], [])
            for value, label, run in pts:
                y = run.avg if name == AVG else (run.tasks.get(name) or {}).get("spearman")
                if y is None:
                    continue
                ci = getattr(cells.get(label, {}).get(name), "ci", None)
                s.x.append(value)
                s.y.append(y)
                s.low.append(ci[0] if ci else None)
                s.high.append(ci[1] if ci else None)
            if len(s.x) >= 2:
                series.append(s)
        if series:
            plot = SweepPlot(axis, of, [lab for _, lab, _ in pts], series)
            plot.plot = plots.sweep_figure(axis, of, series, fmt)
            out.append(plot)
    return out


def render_html(report: Report) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("embeval.eval.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.filters["signed"] = signed
    env.filters["pval"] = format_p
    return env.get_template("report.html.j2").render(r=report, AVG=AVG)


def write(text: str, out: str | os.PathLike) -> Path:
    """Write atomically (temporary file + rename): a reader never sees half a page."""
    from embeval.core.fileio import atomic_write_text

    out = Path(out)
    try:
        atomic_write_text(out, text)
    except OSError as exc:  # its file name would be the temporary file's, not the user's
        raise ReportError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out
