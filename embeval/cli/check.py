"""`embeval check`: the regression gate CI runs."""

from __future__ import annotations

import sys

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    bootstrap_options,
    check_run_name,
    encoder_options,
    fail,
    overwrite_option,
)
from embeval.cli.scoring import run_score
from embeval.eval.data.sts import SPLITS


@main.command()
@click.argument("target", required=False, metavar="[RESULT.json | CHECKPOINT]")
@click.option(
    "--baseline",
    required=True,
    type=click.Path(dir_okay=False),
    help="Baseline results JSON, e.g. reports/baselines/all-MiniLM-L6-v2-stsb-dev.json.",
)
@click.option("--task", default="STSBenchmark", show_default=True)
@click.option("--split", type=click.Choice(SPLITS), default="dev", show_default=True)
@click.option(
    "--tolerance",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Allowed drop below the baseline, in Spearman points (x100).",
)
@bootstrap_options("Bootstrap resamples of pairs for the drop's interval and p-value.")
@click.option("--name", callback=check_run_name, help="Run name when scoring a checkpoint.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Results JSON when scoring a checkpoint. Default: reports/runs/NAME-SPLIT.json",
)
@click.option(
    "--allow-quantized",
    is_flag=True,
    help="Compare an int8 (--quantize) run with a float32 one (refused by default).",
)
@click.option(
    "--allow-postprocess",
    is_flag=True,
    help="Compare runs post-processed differently, e.g. --whiten vs none (refused by default).",
)
@overwrite_option
@encoder_options
def check(
    target,
    baseline,
    task,
    split,
    tolerance,
    n_boot,
    seed,
    name,
    out,
    allow_quantized,
    allow_postprocess,
    **enc,
):
    """Regression gate: exit 1 if TARGET's Spearman falls below the baseline's by > tolerance.

    TARGET is a results JSON, or a checkpoint (default: the packaged model) scored first on the
    task, with the baseline's protocol and --limit. Exit 2 on unusable input.
    """
    from embeval.eval.data.tasks import resolve
    from embeval.eval.scoring.check import check as run_check
    from embeval.results.files import load_run

    try:
        task = resolve(task, kinds=("sts",)).name
        base = load_run(baseline)
        if target and target.endswith(".json"):
            result = load_run(target)
        else:
            meta = base.meta or {}
            limit = meta.get("limit") if meta.get("partial") else None
            protocol = meta.get("protocol", "simcse")
            result, path = run_score(target, (task,), split, protocol, limit, name, out, **enc)
            if result is None:  # not rank 0 of a sharded run
                return
            click.echo(f"results: {path}")
        verdict = run_check(
            result, base, task, split, tolerance, n_boot, seed, allow_quantized, allow_postprocess
        )
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(verdict.line())
    sys.exit(0 if verdict.ok else 1)
