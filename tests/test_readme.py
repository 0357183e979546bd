"""The README's command runner (tests/readme_commands.py) and the README's marked commands.

Running the marked commands is CI's job (`.ci/run`, after `make test`: it needs `make demo`'s
venv); here: the extractor, the runner's stop-at-first-failure, and that the marked commands can
work as written on a fresh clone (venv activated first, no placeholders).
"""

from __future__ import annotations

import subprocess

import pytest
from readme_commands import ROOT, Command, extract, script, strip_comment

SAMPLE = """\
# Title

```bash
embeval score CKPT   # not marked: never run
```

<!-- readme-check -->
```bash
# a comment line
make demo   # sets up .venv
embeval score --tasks stsb \\
  --limit 200 && \\
  echo "a # in quotes" # a comment

echo 'it''s'
```
"""


def test_extract_marked_blocks_only_joining_continuations():
    assert extract(SAMPLE) == [
        Command(10, "make demo"),
        Command(11, 'embeval score --tasks stsb --limit 200 && echo "a # in quotes"'),
        Command(15, "echo 'it''s'"),
    ]


@pytest.mark.parametrize(
    "line, code",
    [
        ("a # b", "a"),
        ("# all comment", ""),
        ("echo a#b", "echo a#b"),
        ("echo '# x' # y", "echo '# x'"),
        ('echo "\\" # x" # y', 'echo "\\" # x"'),
    ],
)
def test_strip_comment(line, code):
    assert strip_comment(line) == code


@pytest.mark.parametrize(
    "text, error",
    [
        ("<!-- readme-check -->\n\n```bash\nx\n```\n", "right before"),
        ("<!-- readme-check -->\n```bash\nx\n", "no closing"),
        ("<!-- readme-check -->\n```bash\nx \\\n```\n", "continuation"),
    ],
)
def test_malformed_marks_are_errors(text, error):
    with pytest.raises(ValueError, match=error):
        extract(text)


def test_runner_stops_at_the_first_failure_and_names_it(tmp_path):
    cmds = [Command(3, "cd /"), Command(4, "test $PWD = /"), Command(7, "false")]
    cmds.append(Command(9, "echo ran"))
    res = subprocess.run(["bash", "-c", script(cmds)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1
    assert "readme: FAILED (exit 1) at README.md:7: false" in res.stderr
    assert "ran" not in res.stdout  # stopped; and `cd` carried over like in one terminal


def test_readme_marked_commands_can_run_on_a_fresh_clone():
    cmds = extract((ROOT / "README.md").read_text(encoding="utf-8"))
    texts = [c.text for c in cmds]
    assert texts[:2] == ["make demo", "source .venv/bin/activate"]  # `embeval` on PATH after
    for c in cmds:
        for placeholder in ("CKPT", "CHECKPOINT", "path/to", "A.json", "[--", "DIR"):
            assert placeholder not in c.text, f"README.md:{c.line}: {placeholder} in {c.text}"
        assert "make test" not in c.text  # CI runs it right before the README's commands
    assert any(t.startswith("embeval train --model random-tiny") for t in texts)
