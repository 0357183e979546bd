"""`embeval score`: a checkpoint on STS and transfer tasks, printed as a table."""

from __future__ import annotations

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    check_jobs,
    check_run_name,
    encoder_options,
    fail,
    overwrite_option,
)
from embeval.cli.scoring import run_layer_sweep, run_score
from embeval.eval.data.sts import PROTOCOLS, SPLITS


def check_dims(ctx, param, value):
    """--dims LIST parsed at parse time (distinct positive integers)."""
    if value is None:
        return None
    from embeval.eval.scoring.sweeps import SweepError, parse_dims

    try:
        return parse_dims(value)
    except SweepError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("checkpoint", required=False)
@click.option(
    "--tasks",
    multiple=True,
    help="Comma-separated task names or groups: sts, transfer, ranking, STSBenchmark, MR, "
    "EvalRank, …, or your own Task record as package.module:NAME. Repeatable. Default: all STS "
    "tasks of the split.",
)
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="simcse",
    show_default=True,
    help="simcse: SentEval text, SICK-R test; mteb: raw text, SICK-R all pairs.",
)
@click.option("--limit", type=click.IntRange(2), help="First N pairs per task (partial run).")
@click.option(
    "--name",
    callback=check_run_name,
    help="Run name in reports. Default: the checkpoint folder name. The default results file "
    "is named after it (other characters than letters, digits, . _ - become _).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Results JSON. Default: reports/runs/NAME-SPLIT.json",
)
@overwrite_option
@click.option(
    "--jobs",
    type=int,
    default=-1,
    show_default=True,
    callback=check_jobs,
    help="Processes for the transfer-task classifiers (-1: every core). Results do not depend "
    "on it.",
)
@click.option(
    "--truncate",
    type=click.IntRange(1),
    metavar="D",
    help="Keep the first D coordinates of every vector (Matryoshka), below any post-processing.",
)
@click.option(
    "--dims",
    callback=check_dims,
    metavar="LIST",
    help="Dimension sweep, e.g. 32,64,128,256: one encode, scored truncated to each size; one "
    "results file per size (NAME-dimsD-SPLIT.json, or OUT-dimsD.json).",
)
@click.option(
    "--layers",
    metavar="all|LIST",
    help="Layer sweep: score the masked mean of each of these hidden states (0 = embeddings; "
    "all = 0 to the last), each as --pooler layers:K, from one encode. One results file per "
    "layer: NAME-layersK-SPLIT.json (or OUT's stem + -layersK.json).",
)
@encoder_options
def score(checkpoint, tasks, split, protocol, limit, name, out, layers, **enc):
    """Score CHECKPOINT (default: packaged all-MiniLM-L6-v2) on STS, transfer and ranking tasks."""
    if enc.get("dims") and enc.get("truncate"):
        fail(ValueError("--truncate and --dims exclude each other (a sweep truncates each point)"))
    if layers is not None and (enc.get("dims") or enc.get("truncate")):
        fail(ValueError("--layers sweeps full-width vectors: drop --dims/--truncate"))
    if layers is not None:
        try:
            done = run_layer_sweep(
                checkpoint, layers, tasks, split, protocol, limit, name, out, **enc
            )
        except USER_ERRORS as exc:
            fail(exc)
        click.echo(format_sweep([run for _, run, _ in done]))
        click.echo("\nresults: " + ", ".join(str(path) for _, _, path in done))
        return
    try:
        run, path = run_score(checkpoint, tasks, split, protocol, limit, name, out, **enc)
    except USER_ERRORS as exc:
        fail(exc)
    if run is None:  # not rank 0 of a sharded run
        return
    if isinstance(run, list):  # a --dims sweep
        click.echo(format_sweep(run))
        click.echo("\nresults: " + ", ".join(map(str, path)))
        return
    click.echo(format_table(run))
    click.echo(f"\nresults: {path}")


def format_sweep(runs) -> str:
    """One row per sweep point: each STS task's Spearman, the Avg, each ranking task's MRR."""
    tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
    sts = [t for t in tasks if any("spearman" in r.tasks.get(t, {}) for r in runs)]
    rank = [t for t in tasks if any("mrr" in r.tasks.get(t, {}) for r in runs)]
    clf = [t for t in tasks if any("accuracy" in r.tasks.get(t, {}) for r in runs)]
    head = [runs[0].meta["sweep"]["axis"], *sts]
    head += ["Avg"] if any(r.avg is not None for r in runs) else []
    head += [f"{t} MRR" for t in rank] + clf
    rows = [tuple(head)]
    for r in runs:
        cells = [str(r.meta["sweep"]["value"])]
        cells += [f"{r.tasks[t]['spearman']:.2f}" if t in r.tasks else "" for t in sts]
        if "Avg" in head:
            cells.append(f"{r.avg:.2f}" if r.avg is not None else "")
        cells += [f"{r.tasks[t]['mrr']:.2f}" if t in r.tasks else "" for t in rank]
        cells += [f"{r.tasks[t]['accuracy']:.2f}" if t in r.tasks else "" for t in clf]
        rows.append(tuple(cells))
    return "\n".join(align_rows(rows))


def align_rows(rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def format_table(run) -> str:
    from embeval.eval.metrics import diagnostics  # scipy: not for `embeval --help`

    rows = [("task", "split", "pairs", "spearman", "pearson")]
    for task, m in run.tasks.items():
        if "spearman" in m:
            rows.append(
                (task, m["split"], str(m["n"]), f"{m['spearman']:.2f}", f"{m['pearson']:.2f}")
            )
    if run.avg is not None:
        rows.append(("Avg. (SimCSE)", "", "", f"{run.avg:.2f}", ""))
    lines = align_rows(rows) if len(rows) > 1 else []
    clf = [("transfer task", "split", "n", "accuracy", "f1")]
    for task, m in run.tasks.items():
        if "accuracy" in m:
            f1 = f"{m['f1']:.2f}" if "f1" in m else ""
            clf.append((task, m["split"], str(m["n"]), f"{m['accuracy']:.2f}", f1))
    if getattr(run, "transfer_avg", None) is not None:
        clf.append(("Avg. (transfer)", "", "", f"{run.transfer_avg:.2f}", ""))
    if len(clf) > 1:
        lines += ["", *align_rows(clf)] if lines else align_rows(clf)
    rank = [("ranking task", "pairs", "pool", "MR", "MRR", "Hits@1", "Hits@3", "Hits@10")]
    for task, m in run.tasks.items():
        if "mrr" in m:
            hits = [f"{m[k]:.2f}" if k in m else "" for k in ("hits@1", "hits@3", "hits@10")]
            rank.append(
                (
                    task,
                    str(m["n"]),
                    str(m.get("pool", "")),
                    f"{m['mr']:.2f}",
                    f"{m['mrr']:.2f}",
                    *hits,
                )
            )
    if len(rank) > 1:
        lines += ["", *align_rows(rank)] if lines else align_rows(rank)
    d = run.diagnostics_record()
    if d is not None and d.values:
        shown = "  ".join(f"{label} {v}" for label, v in diagnostics.formatted(run.diagnostics))
        lines.append(f"\n{d.source}: {shown}")
    t = run.meta["timings"]
    lines.append(
        f"{run.meta['n_sentences']} distinct sentences, encode {t['encode_s']:.1f}s, "
        f"total {t['total_s']:.1f}s"
    )
    return "\n".join(lines)
