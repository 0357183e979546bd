"""A finished card's figures: seed means, hierarchical-bootstrap intervals, tests against the
baseline and against the best, training geometry per cell; written as summary.md, summary.csv
and report.html (the `embeval report` page of every cell, with a section for the card).

Statistics (per model and STS task, and for the Avg over them):
- mean and sample sd (ddof=1) over seeds of each seed's Spearman x100 on the full test set;
- a 95 % percentile interval from the hierarchical bootstrap
  (`embeval.eval.metrics.hierarchical`: seeds drawn, then pairs, shared across methods);
- method - baseline: the paired difference of seed means on the same resamples, its interval,
  and the two-sided paired bootstrap p-value (`stats.paired_p_value`), Holm-adjusted over the
  card's non-baseline methods;
- tied with the best: the same test of each method against the method with the highest mean,
  Holm-adjusted over the other methods; tied when the adjusted p >= 0.05 (the best is "best").
Transfer tasks (no per-pair data) get mean and sd only.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeval.eval.metrics.hierarchical import hierarchical_spearman, holm, seed_resamples
from embeval.eval.metrics.stats import paired_p_value, percentile_ci, task_seed
from embeval.reproduce.card import Card
from embeval.results.files import RunResult, load_run

log = logging.getLogger(__name__)
AVG = "Avg"
ALPHA = 0.05
COLLAPSE_RANK = 0.5  # final effective rank below half its peak ...
COLLAPSE_ANISOTROPY = 0.9  # ... or a mean cosine between sentences above 0.9: a collapse warning
GEOMETRY = ("stsb_dev", "alignment", "uniformity", "anisotropy", "effective_rank")


@dataclass
class CellRun:
    model: str
    method: str
    seed: int
    run: RunResult
    log_path: Path


@dataclass
class Row:
    """One (model, method, task) line of the tables."""

    model: str
    method: str
    task: str
    seeds: list[int]
    per_seed: list[float]
    mean: float
    sd: float | None
    lo: float | None = None
    hi: float | None = None
    diff: float | None = None  # - baseline
    diff_lo: float | None = None
    diff_hi: float | None = None
    p: float | None = None
    p_holm: float | None = None
    vs_best_p_holm: float | None = None
    standing: str = ""  # best / tied / below (STS tasks and Avg)


@dataclass
class Geometry:
    """A cell's training trajectory read from its train_log.jsonl."""

    cell: str
    steps: list[int]
    series: dict[str, list[float | None]]
    peak_rank_step: int | None = None
    best_dev_step: int | None = None
    warnings: list[str] = field(default_factory=list)


def load_cells(card: Card, folders: list[Path]) -> list[CellRun]:
    out = []
    for cell, folder in zip(card.cells(), folders, strict=True):
        run = load_run(folder / "results.json")
        log_path = folder / "train" / "train_log.jsonl"
        out.append(CellRun(cell.model, cell.method, cell.seed, run, log_path))
    return out


def summarise(cells: list[CellRun], baseline: str, n_boot: int = 1000, seed: int = 0) -> list[Row]:
    rows: list[Row] = []
    for model in dict.fromkeys(c.model for c in cells):
        rows += _model_rows([c for c in cells if c.model == model], model, baseline, n_boot, seed)
    return rows


def _model_rows(cells, model, baseline, n_boot, seed) -> list[Row]:
    methods = list(dict.fromkeys(c.method for c in cells))
    seeds = sorted({c.seed for c in cells})
    grid = {(c.method, c.seed): c.run for c in cells}
    missing = [f"{m}/seed {s}" for m in methods for s in seeds if (m, s) not in grid]
    if missing:
        raise ValueError(f"model {model}: no results for {', '.join(missing)}")
    first = grid[methods[0], seeds[0]]
    tasks = list(first.tasks)
    sts = [t for t in tasks if "spearman" in first.tasks[t]]
    drawn = seed_resamples(len(seeds), n_boot, [seed, 0x5EED])
    boots: dict[str, np.ndarray] = {}  # task -> (M, B)
    for task in sts:
        pairs = [[grid[m, s].load_pairs()[task] for s in seeds] for m in methods]
        gold = pairs[0][0]["gold"]
        for row in pairs:
            for p in row:
                if not np.array_equal(p["gold"], gold):
                    raise ValueError(f"{task}: the cells were scored on different pairs")
        pred = np.stack([[p["sim"] for p in row] for row in pairs])  # (M, S, N)
        boots[task] = hierarchical_spearman(pred, gold, drawn, n_boot, task_seed(seed, task))
    figures = {  # task -> (M, S) observed figures
        t: np.array(
            [
                [
                    grid[m, s].tasks[t].get("spearman", grid[m, s].tasks[t].get("accuracy"))
                    for s in seeds
                ]
                for m in methods
            ]
        )  # fmt: skip
        for t in tasks
    }
    if len(sts) > 1:
        figures[AVG] = np.mean([figures[t] for t in sts], axis=0)
        boots[AVG] = np.mean([boots[t] for t in sts], axis=0)
    rows = []
    for task, fig in figures.items():
        means = fig.mean(axis=1)
        task_rows = [
            Row(model, m, task, seeds, fig[i].tolist(), float(means[i]),
                float(fig[i].std(ddof=1)) if len(seeds) > 1 else None)
            for i, m in enumerate(methods)
        ]  # fmt: skip
        if task in boots:
            _test(task_rows, boots[task], means, methods, baseline)
        rows += task_rows
    return rows


def _test(rows: list[Row], boot: np.ndarray, means: np.ndarray, methods, baseline) -> None:
    """Intervals, paired tests against the baseline and against the best (Holm each)."""
    for r, b in zip(rows, boot, strict=True):
        r.lo, r.hi = percentile_ci(b)
    ib = methods.index(baseline)
    others = [i for i in range(len(methods)) if i != ib]
    ps = []
    for i in others:
        d = boot[i] - boot[ib]
        rows[i].diff = float(means[i] - means[ib])
        rows[i].diff_lo, rows[i].diff_hi = percentile_ci(d)
        rows[i].p = paired_p_value(boot[i], boot[ib], rows[i].diff)
        ps.append(rows[i].p)
    for i, p in zip(others, holm(ps) if ps else [], strict=True):
        rows[i].p_holm = float(p)
    best = int(np.argmax(means))
    rest = [i for i in range(len(methods)) if i != best]
    p_best = [paired_p_value(boot[i], boot[best], float(means[i] - means[best])) for i in rest]
    rows[best].standing = "best"
    for i, p in zip(rest, holm(p_best) if rest else [], strict=True):
        rows[i].vs_best_p_holm = float(p)
        rows[i].standing = "tied" if p >= ALPHA else "below"


def read_geometry(path: Path, cell: str) -> Geometry:
    """The evaluation lines of a training log (those with stsb_dev) and its warnings."""
    steps, series = [], {k: [] for k in GEOMETRY}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("stsb_dev"), int | float):
                steps.append(int(rec.get("step", len(steps))))
                for k in GEOMETRY:
                    series[k].append(rec.get(k))
    g = Geometry(cell, steps, series)
    dev = [(v, s) for s, v in zip(steps, series["stsb_dev"], strict=True) if v is not None]
    if dev:
        g.best_dev_step = max(dev)[1]
    rank = [(v, s) for s, v in zip(steps, series["effective_rank"], strict=True) if v is not None]
    if rank:
        peak, g.peak_rank_step = max(rank)
        final = rank[-1][0]
        if final < COLLAPSE_RANK * peak:
            g.warnings.append(
                f"collapse: effective rank {final:.1f} at step {steps[-1]}, under half its peak "
                f"{peak:.1f} (step {g.peak_rank_step})"
            )
    aniso = [v for v in series["anisotropy"] if v is not None]
    if aniso and aniso[-1] > COLLAPSE_ANISOTROPY:
        g.warnings.append(f"collapse: anisotropy {aniso[-1]:.3f} > {COLLAPSE_ANISOTROPY}")
    return g


# ------------------------------------------------------------------ rendering
def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_p(p: float | None) -> str:
    return "—" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def cell_text(r: Row) -> str:
    sd = "" if r.sd is None else f" ± {r.sd:.2f}"
    ci = "" if r.lo is None else f" [{r.lo:.2f}, {r.hi:.2f}]"
    return f"{r.mean:.2f}{sd}{ci}"


def markdown(card: Card, rows: list[Row], geo: list[Geometry], n_boot: int) -> str:
    out = [f"# {card.name}", ""]
    if card.description:
        out += [card.description, ""]
    seeds = ", ".join(map(str, card.seeds))
    out += [
        f"Seeds {seeds}; {card.steps} steps; baseline {card.baseline}. Spearman x100: mean ± sd "
        f"over seeds [95 % hierarchical bootstrap interval, {n_boot} resamples of seeds then "
        "pairs]. Δ: method - baseline, paired on the same resamples, two-sided bootstrap p, "
        "Holm-adjusted over the methods. Standing: best, tied (Holm-adjusted p >= 0.05 against "
        "the best) or below.",
        "",
    ]
    for model in dict.fromkeys(r.model for r in rows):
        mrows = [r for r in rows if r.model == model]
        methods = list(dict.fromkeys(r.method for r in mrows))
        tasks = list(dict.fromkeys(r.task for r in mrows))
        by = {(r.method, r.task): r for r in mrows}
        out += [f"## {model}", "", "| task | " + " | ".join(methods) + " |"]
        out.append("|---|" + "---:|" * len(methods))
        for t in tasks:
            cells = []
            for m in methods:
                r = by[m, t]
                mark = {"best": " **best**", "tied": " (tied)"}.get(r.standing, "")
                cells.append(cell_text(r) + mark)
            out.append(f"| {t} | " + " | ".join(cells) + " |")
        out += ["", f"### vs {card.baseline}", "", "| task | method | Δ | 95 % interval | p | "
                "p (Holm) | vs best p (Holm) |", "|---|---|---:|---|---:|---:|---:|"]  # fmt: skip
        for t in tasks:
            for m in methods:
                r = by[m, t]
                if r.diff is None:
                    continue
                out.append(
                    f"| {t} | {m} | {r.diff:+.2f} | [{fmt(r.diff_lo)}, {fmt(r.diff_hi)}] | "
                    f"{fmt_p(r.p)} | {fmt_p(r.p_holm)} | {fmt_p(r.vs_best_p_holm)} |"
                )
        out += [
            "",
            "### Per seed",
            "",
            "| task | method | "
            + " | ".join(f"seed {s}" for s in mrows[0].seeds)
            + " |",  # fmt: skip
            "|---|---|" + "---:|" * len(mrows[0].seeds),
        ]
        for t in tasks:
            for m in methods:
                r = by[m, t]
                out.append(f"| {t} | {m} | " + " | ".join(f"{v:.2f}" for v in r.per_seed) + " |")
        out.append("")
    out += ["## Training geometry (STS-B dev evaluations of each cell)", ""]
    out += [
        "| cell | dev at 0 | best dev (step) | final dev | eff. rank 0 → peak (step) → final "
        "| anisotropy 0 → final | warnings |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for g in geo:
        d, k, a = g.series["stsb_dev"], g.series["effective_rank"], g.series["anisotropy"]
        if not g.steps:
            out.append(f"| {g.cell} | — | — | — | — | — | no evaluations logged |")
            continue
        best = max(v for v in d if v is not None)
        ranks = [v for v in k if v is not None]
        rank = (f"{ranks[0]:.1f} → {max(ranks):.1f} ({g.peak_rank_step}) → {ranks[-1]:.1f}"
                if ranks else "—")  # fmt: skip
        an = [v for v in a if v is not None]
        aniso = f"{an[0]:.3f} → {an[-1]:.3f}" if an else "—"
        out.append(
            f"| {g.cell} | {fmt(d[0])} | {best:.2f} ({g.best_dev_step}) | {fmt(d[-1])} | {rank} "
            f"| {aniso} | {'; '.join(g.warnings)} |"
        )
    return "\n".join(out) + "\n"


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "method", "task", "n_seeds", "mean", "sd", "ci_low", "ci_high",
                "diff_vs_baseline", "diff_low", "diff_high", "p", "p_holm", "vs_best_p_holm",
                "standing", "per_seed"])  # fmt: skip
    r6 = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    for r in rows:
        w.writerow([r.model, r.method, r.task, len(r.seeds), r6(r.mean), r6(r.sd), r6(r.lo),
                    r6(r.hi), r6(r.diff), r6(r.diff_lo), r6(r.diff_hi), r6(r.p), r6(r.p_holm),
                    r6(r.vs_best_p_holm), r.standing, per_seed_text(r)])  # fmt: skip
    return buf.getvalue()


def per_seed_text(r: Row) -> str:
    return " ".join(f"{s}:{v:.4f}" for s, v in zip(r.seeds, r.per_seed, strict=True))


def seed_figure(rows: list[Row]) -> str:
    """Per-seed points beside each method's mean and interval, one panel per task."""
    from embeval.eval.report.plots import pyplot, to_data_uri

    tasks = list(dict.fromkeys(r.task for r in rows))
    fig, axes = pyplot().subplots(1, len(tasks), figsize=(2.2 * len(tasks) + 1, 3), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        trs = [r for r in rows if r.task == t]
        for i, r in enumerate(trs):
            ax.scatter(np.full(len(r.per_seed), i - 0.12), r.per_seed, s=12, alpha=0.7)
            if r.lo is not None:
                ax.errorbar(i + 0.12, r.mean, yerr=[[r.mean - r.lo], [r.hi - r.mean]], fmt="o",
                            color="black", capsize=3)  # fmt: skip
            else:
                ax.plot(i + 0.12, r.mean, "o", color="black")
        ax.set_xticks(range(len(trs)), [f"{r.method}" for r in trs], rotation=30, fontsize=7)
        ax.set_title(t, fontsize=9)
    fig.tight_layout()
    return to_data_uri(fig, "svg")


def geometry_figure(geo: list[Geometry]) -> str | None:
    from embeval.eval.report.plots import pyplot, to_data_uri

    keys = [k for k in GEOMETRY if any(v is not None for g in geo for v in g.series[k])]
    if not keys:
        return None
    fig, axes = pyplot().subplots(1, len(keys), figsize=(3 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for g in geo:
            pts = [(s, v) for s, v in zip(g.steps, g.series[k], strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", lw=1, label=g.cell)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    if len(geo) <= 12:
        axes[0][-1].legend(fontsize=5)
    fig.tight_layout()
    return to_data_uri(fig, "svg")


def html_section(md: str, rows: list[Row], geo: list[Geometry]) -> str:
    """The card's section of report.html: the Markdown tables as preformatted text (they read
    as they are) and the two figures."""
    parts = ['<section id="reproduce"><h2>Experiment card: seeds, intervals, tests</h2>']
    parts.append(f'<p><img alt="per-seed figures" src="{seed_figure(rows)}"></p>')
    g = geometry_figure(geo)
    if g:
        parts.append(f'<p><img alt="training geometry" src="{g}"></p>')
    parts.append(f"<pre>{html.escape(md)}</pre></section>")
    return "\n".join(parts)


def write_outputs(
    card: Card, out: str | os.PathLike, folders: list[Path], n_boot: int = 1000, seed: int = 0
) -> list[Path]:
    """summary.md, summary.csv and report.html in OUT; returns their paths."""
    from embeval.core.fileio import atomic_write_text
    from embeval.eval.report import build as rep

    out = Path(out)
    cells = load_cells(card, folders)
    rows = summarise(cells, card.baseline, n_boot, seed)
    geo = [read_geometry(c.log_path, c.run.name) for c in cells]
    md = markdown(card, rows, geo, n_boot)
    paths = [atomic_write_text(out / "summary.md", md), atomic_write_text(out / "summary.csv",
             to_csv(rows))]  # fmt: skip
    base = next(c.run.name for c in cells if c.method == card.baseline)
    logs = [str(c.log_path) for c in cells if c.log_path.exists()]
    report = rep.build([str(c.run.path) for c in cells], base, logs, n_boot, seed)
    page = rep.render_html(report)
    section = html_section(md, rows, geo)
    page = page.replace("</body>", section + "\n</body>") if "</body>" in page else page + section
    paths.append(rep.write(page, out / "report.html"))
    return paths
