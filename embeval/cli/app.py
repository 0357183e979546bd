"""The `embeval` command group; each subcommand lives in its own module of this package."""

from __future__ import annotations

import logging

import click

import embeval

QUICK_START = """\b
Quick start:
  embeval score                         # packaged all-MiniLM-L6-v2, STS suite
  embeval score CHECKPOINT --split dev  # STS-B dev + SICK trial
  embeval report reports/runs/*.json    # compare runs: reports/index.html

Run `embeval COMMAND --help` for options."""


class Command(click.Command):
    def get_short_help_str(self, limit: int = 45) -> str:
        """The docstring's whole first sentence, wrapped by the help formatter: click's default
        cuts it at `limit` characters with "...", which hid what most commands do."""
        return super().get_short_help_str(limit=10**6)


class Group(Command, click.Group):
    command_class = Command
    group_class = type  # subgroups (`embeval data`) are Groups too


@click.group(cls=Group, epilog=QUICK_START)
@click.version_option(version=embeval.__version__, prog_name="embeval")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Train and evaluate sentence embeddings, faithful to SentEval/SimCSE."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Encoding progress when no bar is drawn (output piped): shown without -v.
    logging.getLogger("embeval.progress").setLevel(min(level, logging.INFO))
