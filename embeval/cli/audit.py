"""`embeval audit`: a checkpoint under the protocol choices that make published figures differ."""

from __future__ import annotations

from pathlib import Path

import click

from embeval.cli.app import main
from embeval.cli.common import (
    RUNS_DIR,
    USER_ERRORS,
    check_run_name,
    fail,
    run_slug,
    split_tasks,
)


def parse_expect(ctx, param, values: tuple[str, ...]) -> dict[str, float]:
    """TASK=FIGURE pairs (Spearman x100; TASK may be Avg)."""
    out = {}
    for v in values:
        task, sep, fig = v.partition("=")
        try:
            out[task.strip()] = float(fig)
        except ValueError:
            sep = ""
        if not sep or not task.strip():
            raise click.BadParameter(f"{v!r}: expected TASK=FIGURE, e.g. STSBenchmark=76.85")
    return out


@main.command()
@click.argument("checkpoint", required=False)
@click.option(
    "--expect",
    multiple=True,
    callback=parse_expect,
    metavar="TASK=FIGURE",
    help="A published Spearman x100 to reproduce (TASK: a task name or Avg). Repeatable.",
)
@click.option("--tasks", multiple=True, help="Comma-separated STS tasks. Default: all seven.")
@click.option("--limit", type=click.IntRange(2), help="First N pairs per task (partial run).")
@click.option("--name", callback=check_run_name, help="Run name. Default: the checkpoint's.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Results JSON (the checkpoint's own setting, the audit under meta.audit). "
    "Default: reports/runs/NAME-audit.json",
)
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--device", help="cpu, cuda, cuda:1 … Default: cuda when present.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Embedding cache.")
@click.option("--data", type=click.Path(file_okay=False), help="Data root.")
@click.option("--all-rows", is_flag=True, help="Print every row, not only the distinct ones.")
def audit(
    checkpoint, expect, tasks, limit, name, out, batch_size, device, cache_dir, data, all_rows
):
    """Score CHECKPOINT under every pooler, text variant, max length, Normalize, whitening and
    STS12-16 aggregation choice, and name the choices that reproduce each --expect figure."""
    from embeval.eval.scoring.audit import AuditSpec, run_audit
    from embeval.eval.scoring.score import default_run_name
    from embeval.results.files import save_run

    if out and not str(out).endswith(".json"):
        fail(ValueError(f"output path {out} must end in .json"))
    spec = AuditSpec(
        checkpoint=checkpoint,
        tasks=split_tasks(tasks) or None,
        expect=expect,
        limit=limit,
        root=data,
        cache_dir=cache_dir,
        batch_size=batch_size,
        device=device,
        name=name,
    )
    try:
        run, _ = run_audit(spec)
        run.name = name or default_run_name(run.meta.get("checkpoint"))
        path = save_run(run, Path(out) if out else RUNS_DIR / f"{run_slug(run.name)}-audit.json")
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(format_audit(run.meta["audit"], all_rows))
    click.echo(f"\nresults: {path}")


def format_audit(audit: dict, all_rows: bool = False) -> str:
    from embeval.cli.score import align_rows
    from embeval.eval.scoring.audit import audit_table

    header, rows, notes = audit_table(audit, all_rows)
    return "\n".join([*align_rows([header, *rows]), *(f"\n{n}" for n in notes)])
