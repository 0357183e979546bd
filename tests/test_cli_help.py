"""The CLI's help pages and argument checks: the quick start is shown, no command summary is cut
short, and arguments that would silently do something else are refused before any encoding."""

from __future__ import annotations

import inspect

import click
import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.cli.common import run_slug, split_tasks


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


def test_split_tasks_joins_commas_and_repeats():
    assert split_tasks(("STS12, stsb", "sick")) == ["STS12", "stsb", "sick"]
    assert split_tasks(()) == []  # no --tasks: the caller's defaults


@pytest.mark.parametrize("value", ["", " ", "STS12,,stsb", "STS12,"])
def test_split_tasks_refuses_empty_names(value):
    with pytest.raises(click.BadParameter) as exc:
        split_tasks((value,))
    assert "--tasks" in exc.value.format_message()


def test_score_with_empty_tasks_is_an_error_not_the_defaults(tmp_path):
    # An empty data root: were `--tasks ""` taken as "all STS tasks", this would fail on the
    # missing data instead of naming --tasks.
    res = CliRunner().invoke(main, ["score", "--tasks", "", "--data", str(tmp_path)])
    assert res.exit_code == 2
    assert "--tasks" in res.output and "no STS data" not in res.output


@pytest.mark.parametrize("command", ["score", "check"])
@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..", "."])
def test_name_with_a_path_is_refused(tmp_path, command, name):
    args = [command, "--name", name, "--data", str(tmp_path), "--no-cache"]
    if command == "check":
        args += ["--baseline", str(tmp_path / "base.json")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert "--name" in res.output and "--out" in res.output, res.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, slug",
    [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("my run (v2)", "my_run_v2"),
        (".hidden", "hidden"),
        ("..", "run"),
        ("ü", "run"),
    ],
)
def test_run_slug_is_a_visible_file_name(name, slug):
    assert run_slug(name) == slug
