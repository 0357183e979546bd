"""The CLI's help pages: the quick start is shown and no command summary is cut short."""

from __future__ import annotations

import inspect

import pytest
from click.testing import CliRunner

from embeval.cli import main


def help_text(*args: str) -> str:
    res = CliRunner().invoke(main, [*args, "--help"], terminal_width=80)
    assert res.exit_code == 0, res.output
    return res.output


def command_lines(text: str) -> list[str]:
    """The lines of the 'Commands:' section (summaries wrapped over several lines included)."""
    lines = text.split("Commands:\n", 1)[1].splitlines()
    return lines[: lines.index("")] if "" in lines else lines


def test_main_help_shows_the_quick_start():
    text = help_text()
    assert "Quick start:" in text
    lines = [ln.strip() for ln in text.splitlines()]
    # One command per line, as written (click re-wraps an epilog into one paragraph unless told).
    assert any(ln.startswith("embeval score  ") and ln.endswith("STS suite") for ln in lines)
    assert any(ln.startswith("embeval report reports/runs/*.json  ") for ln in lines)
    assert max(map(len, text.splitlines())) <= 80
    assert "Run `embeval COMMAND --help` for options." in text


@pytest.mark.parametrize("group", [(), ("data",)])
def test_command_summaries_are_whole(group):
    lines = command_lines(help_text(*group))
    assert lines, "no Commands: section"
    for line in lines:
        assert not line.rstrip().endswith(("…", "...")), line
    # Each summary is the docstring's whole first paragraph, wrapped, not a prefix of it.
    grp = main if not group else main.commands[group[0]]
    joined = " ".join(" ".join(lines).split())
    for name, cmd in grp.commands.items():
        first = " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split())
        assert f"{name} {first}" in joined, name
