"""Run the README's marked commands in order, as a new user would type them after `make demo`.

A code block runs when the line before its ``` fence is `<!-- readme-check -->`; unmarked blocks
(internet, a GPU, your own checkpoint, long minutes) are left alone and say so beside them. The
commands run in one bash session in the project root, so `source .venv/bin/activate` carries over
to the commands after it, as in a terminal; the first that fails stops the run and is named by
its README line. CI runs this after `make test` on a fresh clone with ../shared beside it.

    python3 tests/readme_commands.py [--list] [README]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MARK = "<!-- readme-check -->"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Command:
    line: int  # 1-based README line where the command starts
    text: str


def strip_comment(line: str) -> str:
    """`line` without a trailing shell comment: a # at a word start, outside quotes."""
    quote, escaped = None, False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def extract(text: str) -> list[Command]:
    """The commands of the marked blocks, in order: comments dropped, `\\` continuations joined."""
    lines, commands, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README line {i + 1}: {MARK} must come right before a ``` fence")
        i += 2
        pending, start = "", 0
        while not lines[i].startswith("```"):
            code = strip_comment(lines[i])
            start = start or i + 1
            if code.endswith("\\"):
                pending += code[:-1].strip() + " "
            elif (full := (pending + code.strip()).strip()) or pending:
                commands.append(Command(start, full))
                pending, start = "", 0
            else:
                start = 0  # a blank or comment line
            i += 1
            if i >= len(lines):
                raise ValueError(f"README: the block marked at line {start} has no closing ```")
        if pending:
            raise ValueError(f"README line {start}: the block ends inside a `\\` continuation")
    return commands


def script(commands: list[Command], readme: str = "README.md") -> str:
    """One bash script: each command announced, then run; the first failure exits 1, named."""
    out = [
        "set -o pipefail",
        'fail() { echo "readme: FAILED (exit $1) at $2: $3" >&2; exit 1; }',
    ]
    for c in commands:
        where = f"{readme}:{c.line}"
        out.append(f"echo {shlex.quote(f'readme: {where}: $ {c.text}')} >&2")
        out.append(f"{c.text} || fail $? {shlex.quote(where)} {shlex.quote(c.text)}")
    out.append(f"echo 'readme: all {len(commands)} commands of {readme} passed' >&2")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("readme", nargs="?", default=str(ROOT / "README.md"))
    ap.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    commands = extract(readme.read_text(encoding="utf-8"))
    if not commands:
        print(f"readme: no block of {readme} is marked {MARK}", file=sys.stderr)
        return 1
    if args.list:
        print("\n".join(f"{readme.name}:{c.line}: {c.text}" for c in commands))
        return 0
    # Offline as CI: a command that needs the network belongs in an unmarked block.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = subprocess.run(
        ["bash", "-c", script(commands, readme.name)], cwd=readme.parent, env=env
    ).returncode
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
