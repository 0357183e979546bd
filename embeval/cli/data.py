"""`embeval data download|verify`: the benchmark data and its checksum manifest."""

from __future__ import annotations

import sys

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    fail,
)
from embeval.eval.data.paths import DATA_GROUPS


@main.group("data")
def data_group() -> None:
    """Get the benchmark data (SentEval downloads) and check it against data/MANIFEST.sha256."""


def data_options(f):
    f = click.option(
        "--only",
        multiple=True,
        type=click.Choice(DATA_GROUPS),
        help="sts: SentEval-preprocessed STS; sts-raw: SemEval releases; transfer: SentEval "
        "classification tasks; evalrank: EvalRank's pairs and pool. Repeatable. Default: all.",
    )(f)
    return click.option(
        "--data",
        type=click.Path(file_okay=False),
        help="Data root. Default: $EMBEVAL_DATA, else data/ in the project (verify: "
        "../shared/data beside the project when data/ holds none; download never writes there).",
    )(f)


@data_group.command("download")
@data_options
@click.option("--mirror", metavar="URL", help="Fetch each file as URL/<file name> instead.")
def data_download(data, only, mirror):
    """Fetch the SentEval downloads from their original sources and rebuild SentEval's layout.

    Skips files already present and verified; the sts/ preprocessing needs
    `pip install 'embeval[download]'` (sacremoses), MRPC needs cabextract.
    """
    from embeval.eval.data.download import MANIFEST, download, verify
    from embeval.eval.data.paths import data_root

    try:
        status = download(data, only, mirror)
        mismatched = verify(data, only)[1] if MANIFEST.is_file() else []
    except USER_ERRORS as exc:
        fail(exc)
    for name, state in status.items():
        click.echo(f"{name:<18} {state}")
    for rel in mismatched:
        click.echo(f"warning: {rel} differs from the reference copy ({MANIFEST.name})", err=True)
    click.echo(f"data: {data_root(data)}")
    sys.exit(1 if any(s.startswith("failed") for s in status.values()) else 0)


@data_group.command("verify")
@data_options
def data_verify(data, only):
    """Check the data files against data/MANIFEST.sha256; exit 1 naming each bad file."""
    from embeval.eval.data.download import verify
    from embeval.eval.data.paths import data_root

    try:
        missing, mismatched, checked = verify(data, only)
    except USER_ERRORS as exc:
        fail(exc)
    root = data_root(data)
    for rel in missing:
        click.echo(f"missing   {root / rel}")
    for rel in mismatched:
        click.echo(f"mismatch  {root / rel}")
    bad = len(missing) + len(mismatched)
    hint = f"; run `embeval data download --data {root}`" if bad else ""
    click.echo(f"{checked - bad} of {checked} files OK under {root}{hint}")
    sys.exit(1 if bad else 0)
