"""`embeval export`: results as MTEB per-task result files."""

from __future__ import annotations

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    fail,
)


@main.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mteb"]), default="mteb", show_default=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for one JSON per task (e.g. results/<model>/<revision>/ of an MTEB tree).",
)
def export(results, fmt, out):
    """Write RESULTS (a full `embeval score --protocol mteb` run) as MTEB per-task result JSON."""
    import json

    from embeval.eval.report.mteb_export import export_mteb, not_exported
    from embeval.results.files import load_run

    try:
        run = load_run(results)
        paths = export_mteb(run, out)
    except USER_ERRORS as exc:
        fail(exc)
    for task in not_exported(run):
        click.echo(f"skipped {task}: no MTEB counterpart", err=True)
    meta = json.loads(paths[-1].read_text())  # model_meta.json: named after the folders
    click.echo(
        f"wrote {len(paths) - 1} MTEB result files and model_meta.json (model {meta['name']}, "
        f"revision {meta['revision']}, from the folder names) to {out}"
    )
