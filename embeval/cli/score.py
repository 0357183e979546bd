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


@main.command()
@click.argument("checkpoint", required=False)
@click.option(
    "--tasks",
    multiple=True,
    help="Comma-separated task names or groups: sts, transfer, STSBenchmark, MR, …, or your "
    "own Task record as package.module:NAME. Repeatable. Default: all STS tasks of the split.",
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
    "--layers",
    metavar="all|LIST",
    help="Layer sweep: score the masked mean of each of these hidden states (0 = embeddings; "
    "all = 0 to the last), each as --pooler layers:K, from one encode. One results file per "
    "layer: NAME-layerK-SPLIT.json (or OUT's stem + -layerK.json).",
)
@encoder_options
def score(checkpoint, tasks, split, protocol, limit, name, out, layers, **enc):
    """Score CHECKPOINT (default: packaged all-MiniLM-L6-v2) on STS and transfer tasks."""
    if layers is not None:
        try:
            done = run_layer_sweep(
                checkpoint, layers, tasks, split, protocol, limit, name, out, **enc
            )
        except USER_ERRORS as exc:
            fail(exc)
        click.echo(format_sweep(done))
        return
    try:
        run, path = run_score(checkpoint, tasks, split, protocol, limit, name, out, **enc)
    except USER_ERRORS as exc:
        fail(exc)
    if run is None:  # not rank 0 of a sharded run
        return
    click.echo(format_table(run))
    click.echo(f"\nresults: {path}")


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


def format_sweep(done) -> str:
    """One row per layer: each STS task's Spearman and the average, then the files."""
    tasks = [t for t, m in done[0][1].tasks.items() if "spearman" in m]
    rows = [("layer", *tasks, "Avg.")]
    for k, run, _ in done:
        cells = [f"{run.tasks[t]['spearman']:.2f}" for t in tasks]
        rows.append((str(k), *cells, "" if run.avg is None else f"{run.avg:.2f}"))
    files = [f"layer {k}: {path}" for k, _, path in done]
    return "\n".join([*align_rows(rows), "", "results:", *files])
