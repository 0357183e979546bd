"""`embeval report`: compare results files in one HTML page, or as Markdown/CSV."""

from __future__ import annotations

from pathlib import Path

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    bootstrap_options,
    fail,
)


@main.command()
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file, '-' for stdout. Default: reports/index.html (.md, .csv).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md", "csv"]), default="html", show_default=True
)
@click.option("--baseline", help="Run NAME for deltas and p-values. Default: the first run.")
@click.option(
    "--train-log",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Training log (JSON lines) for alignment-uniformity trajectories; repeatable.",
)
@bootstrap_options("Bootstrap resamples of pairs (0: no intervals or p-values).", minimum=0)
def report(results, out, fmt, baseline, train_log, n_boot, seed):
    """Compare RESULTS files of `embeval score`: one HTML page, or Markdown/CSV tables."""
    from embeval.eval.report import build as rep
    from embeval.eval.report import export

    try:
        r = rep.build(results, baseline, train_log, n_boot, seed, figures=fmt == "html")
        render = {"html": rep.render_html, "md": export.to_markdown, "csv": export.to_csv}
        text = render[fmt](r)
        if out == "-":
            click.echo(text, nl=False)
            return
        path = rep.write(text, out or Path("reports") / f"index.{fmt}")
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(f"report: {path}")
