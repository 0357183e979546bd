"""Report figures (matplotlib, Agg backend). Each function returns a data URI string.
matplotlib loads at the first figure (`pyplot()`): Markdown and CSV reports never import it.

Figures go into the page as ``<img src="data:image/svg+xml;base64,...">``: the HTML stays one
self-contained file, and because an image cannot run or inject markup, run names drawn in a
figure never need HTML escaping. `fmt="png"` gives base64 PNG instead (smaller for huge scatters).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeval.eval.metrics.diagnostics import DIAGNOSTICS

GOLD_BUCKETS = ("0–1", "1–2", "2–3", "3–4", "4–5")


@dataclass
class Trajectory:
    """Alignment/uniformity measured during training (from a training log)."""

    label: str
    step: np.ndarray  # (T,)
    alignment: np.ndarray  # (T,)
    uniformity: np.ndarray  # (T,)
    run: str | None = None  # label of the run scored from this training: drawn in its colour


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    # Deterministic SVG ids and no timestamp: the same runs give byte-identical pages.
    matplotlib.rcParams.update({"svg.hashsalt": "embeval", "svg.fonttype": "path"})
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig, fmt: str = "svg") -> str:
    """The figure as a base64 data URI; the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    meta = {"Date": None} if fmt == "svg" else {}
    fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=meta, dpi=110)
    plt.close(fig)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def alignment_uniformity(
    points: Sequence[tuple[str, float, float]],
    trajectories: Sequence[Trajectory] = (),
    fmt: str = "svg",
) -> str:
    """SimCSE Figure 2 style: x = uniformity, y = alignment, both lower is better.

    points: (label, alignment, uniformity) per run; trajectories are drawn as lines from the
    first logged step (hollow circle) to the last (arrow head), in the colour of their run.
    """
    fig, ax = pyplot().subplots(figsize=(6.4, 4.6))
    colour = {label: f"C{i % 10}" for i, (label, _, _) in enumerate(points)}
    spare = (f"C{i % 10}" for i in range(len(points), len(points) + len(trajectories)))
    for tr in trajectories:
        c = colour[tr.run] if tr.run in colour else next(spare)
        ax.plot(tr.uniformity, tr.alignment, "-", lw=1.2, alpha=0.8, color=c, label=tr.label)
        ax.plot(tr.uniformity[0], tr.alignment[0], "o", mfc="none", mec=c, ms=7)
        if len(tr.step) > 1:  # arrow head on the last segment: the direction of training
            ax.annotate(
                "",
                xy=(tr.uniformity[-1], tr.alignment[-1]),
                xytext=(tr.uniformity[-2], tr.alignment[-2]),
                arrowprops={"arrowstyle": "-|>", "color": c, "lw": 1.2},
            )
    markers = "os^DvP*X"
    for i, (label, align, unif) in enumerate(points):
        ax.plot(unif, align, markers[i % len(markers)], ms=9, color=colour[label], label=label)
    _min_span(ax, x=0.5, y=0.1)  # near-identical runs must not look far apart
    for tr in trajectories:  # after the limits: closeness is judged on the drawn scale
        for text, xy in step_labels(tr, ax.get_xlim(), ax.get_ylim()):
            ax.annotate(text, xy, xytext=(4, 4), textcoords="offset points", fontsize=8)
    for axis, name in ((ax.set_xlabel, "uniformity"), (ax.set_ylabel, "alignment")):
        unit = DIAGNOSTICS.get(name)
        axis(f"{unit.label} ({unit.direction})")
    ax.set_title("Alignment–uniformity (SimCSE Fig. 2)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return to_data_uri(fig, fmt)


def step_labels(
    tr: Trajectory, xlim: tuple[float, float], ylim: tuple[float, float], close: float = 0.06
) -> list[tuple[str, tuple[float, float]]]:
    """(text, xy) of the first and last step labels of a trajectory.

    When training barely moved the point (ends within `close` of the axes span), the two labels
    would print over each other: one label "steps A–B" is drawn instead."""
    first = (float(tr.uniformity[0]), float(tr.alignment[0]))
    if len(tr.step) < 2:
        return [(f"step {int(tr.step[0])}", first)]
    last = (float(tr.uniformity[-1]), float(tr.alignment[-1]))
    dx = abs(last[0] - first[0]) / (xlim[1] - xlim[0])
    dy = abs(last[1] - first[1]) / (ylim[1] - ylim[0])
    if max(dx, dy) < close:
        return [(f"steps {int(tr.step[0])}–{int(tr.step[-1])}", last)]
    return [(f"step {int(tr.step[0])}", first), (f"step {int(tr.step[-1])}", last)]


def _min_span(ax, x: float, y: float) -> None:
    """Widen the axes limits around their centre to at least (x, y) data units, plus margins."""
    for get, set_, span in ((ax.get_xlim, ax.set_xlim, x), (ax.get_ylim, ax.set_ylim, y)):
        lo, hi = get()
        mid, half = (lo + hi) / 2, max(hi - lo, span) / 2 * 1.1
        set_(mid - half, mid + half)


def gold_bucket(gold: np.ndarray) -> np.ndarray:  # (N,) -> (N,) int in 0..4
    """0 for gold in [0, 1), ..., 4 for [4, 5]. Gold scaled to [0, 1] (MTEB) is scaled back."""
    g = np.asarray(gold, dtype=np.float64)
    if len(g) and g.max() <= 1.0:
        g = g * 5
    return np.clip(np.floor(g), 0, 4).astype(int)


def shared_ylim(sims: Sequence[np.ndarray], pad: float = 0.05) -> tuple[float, float]:
    """One y-range for every run's similarity plot, so the runs compare at a glance."""
    lo = min(float(np.min(s)) for s in sims)
    hi = max(float(np.max(s)) for s in sims)
    margin = pad * max(hi - lo, 1e-3)
    return lo - margin, hi + margin


def similarity_by_gold(
    sim: np.ndarray,
    gold: np.ndarray,
    title: str,
    fmt: str = "svg",
    ylim: tuple[float, float] | None = None,
) -> str:
    """Box plots of predicted cosine per gold bucket: a good model's boxes climb left to right.
    `ylim`: the range shared by all runs of a report (`shared_ylim`); else matplotlib's own."""
    bucket = gold_bucket(gold)
    groups = [np.asarray(sim)[bucket == b] for b in range(5)]
    fig, ax = pyplot().subplots(figsize=(4.6, 3.2))
    pos = [b for b in range(5) if len(groups[b])]
    ax.boxplot([groups[b] for b in pos], positions=pos, widths=0.6, showfliers=False)
    for b in pos:  # jittered points behind the boxes show the mass, not just quartiles
        jitter = np.random.default_rng(b).uniform(-0.22, 0.22, len(groups[b]))
        ax.plot(b + jitter, groups[b], ".", ms=2, alpha=0.25, color="tab:blue", zorder=0)
    ax.set_xticks(range(5), [f"{GOLD_BUCKETS[b]}\nn={len(groups[b])}" for b in range(5)])
    ax.set_xlim(-0.6, 4.6)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("gold score", fontsize=8)
    ax.set_ylabel("predicted cosine", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig, fmt)


@dataclass
class SweepSeries:
    """One line of a sweep figure: a figure per point, with its 95 % bootstrap band."""

    label: str  # "Avg" or a task name
    x: list[int]  # the sweep values that have this figure
    y: list[float]
    low: list[float | None]  # None: no interval for that point (no per-pair file, n_boot 0)
    high: list[float | None]


AXIS_LABEL = {"dims": "embedding dimensions (first d kept)", "layers": "layer"}


def sweep_figure(axis: str, of: str, series: Sequence[SweepSeries], fmt: str = "svg") -> str:
    """Spearman x100 against the sweep value (dims on a log2 axis), one line per series, its
    bootstrap interval drawn as a band where the points have one."""
    fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
    for i, s in enumerate(series):
        colour = f"C{i % 10}"
        ax.plot(s.x, s.y, marker="o", color=colour, label=s.label)
        band = [(x, lo, hi) for x, lo, hi in zip(s.x, s.low, s.high, strict=True) if lo is not None]
        if band:
            bx, lo, hi = (list(v) for v in zip(*band, strict=True))
            ax.fill_between(bx, lo, hi, color=colour, alpha=0.2, linewidth=0)
    if axis == "dims":
        ax.set_xscale("log", base=2)
    xs = sorted({x for s in series for x in s.x})
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(AXIS_LABEL.get(axis, axis))
    ax.set_ylabel("Spearman ×100")
    ax.set_title(f"{of}: {axis} sweep (bands: 95% bootstrap CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    return to_data_uri(fig, fmt)
