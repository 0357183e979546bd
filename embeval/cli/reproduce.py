"""`embeval reproduce`: train and score every cell of an experiment card, then summarise."""

from __future__ import annotations

from pathlib import Path

import click

from embeval.cli.app import main
from embeval.cli.common import USER_ERRORS, bootstrap_options, fail


@main.command()
@click.argument("card_file", metavar="CARD.toml", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Experiment folder: cells/ (one per model, method, seed), report.html, summary.md, "
    "summary.csv. Rerunning continues it: finished cells are kept, interrupted ones resume.",
)
@click.option("--dry-run", is_flag=True, help="List the cells and what is done; run nothing.")
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Cells run side by side (one GPU each when there are GPUs).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: each cell a Ray task on the cluster RAY_ADDRESS names, else a local one "
    "(pip install 'embeval[ray]').",
)
@bootstrap_options("Hierarchical bootstrap resamples (seeds, then pairs).", seed_dest="boot_seed")
def reproduce(card_file, out, dry_run, jobs, executor, n_boot, boot_seed):
    """Train and score every (model, method, seed) cell of CARD.toml, then write the report
    and tables with seed means, bootstrap intervals and tests against the baseline.

    \b
    embeval reproduce cards/focal-vs-simcse-minilm-cpu.toml --out runs/focal --dry-run
    embeval reproduce cards/focal-vs-simcse-minilm-cpu.toml --out runs/focal --jobs 2
    """
    from embeval.reproduce import cells as cl
    from embeval.reproduce.card import CardError, fetch_data, load_card

    try:
        card = load_card(card_file)
        fetch_data(card, out, download=not dry_run)
        plans = [cl.plan(card, out, c) for c in card.cells()]
        states = {p.cell.key: cl.cell_state(Path(p.folder), p.meta) for p in plans}
    except (CardError, *USER_ERRORS) as exc:
        fail(exc)
    stale = [k for k, s in states.items() if s == "stale"]
    click.echo(f"card {card.name}: {len(plans)} cells in {out}/cells")
    for p in plans:
        click.echo(f"  {states[p.cell.key]:8s} {p.cell.key}")
    if stale:
        fail(
            ValueError(
                f"{len(stale)} cell(s) hold results made with other settings ({', '.join(stale)})"
                ": move them away, or give the card another --out"
            )
        )
    if dry_run:
        return
    todo = [p for p in plans if states[p.cell.key] != "done"]

    def on_done(key, result):
        click.echo(f"  {'FAILED' if isinstance(result, Exception) else 'done':8s} {key}")

    try:
        results = cl.run_plans(todo, jobs, executor, on_done) if todo else {}
    except (cl.CellError, *USER_ERRORS) as exc:
        fail(exc)
    failed = {k: r for k, r in results.items() if isinstance(r, Exception)}
    for key, exc in failed.items():
        click.echo(f"embeval: cell {key}: {exc}", err=True)
    if failed:
        fail(RuntimeError(f"{len(failed)} cell(s) failed; rerun to retry them"), 1)
    from embeval.reproduce.summary import write_outputs

    try:
        paths = write_outputs(card, out, [Path(p.folder) for p in plans], n_boot, boot_seed)
    except USER_ERRORS as exc:
        fail(exc)
    for path in paths:
        click.echo(f"wrote {path}")
