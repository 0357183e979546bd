"""Every worked example of docs/extending.md runs as written and its own assertions hold.

An example is a ```python block right after an `<!-- example: NAME -->` line. Each runs in a
fresh interpreter (a registration must not leak into other tests), in a temporary folder, with
`DATA` (a Path) bound to the benchmark data root; a failed assertion fails the test with the
example's output.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def examples(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in EXAMPLE.finditer(text)}


EXAMPLES = examples(DOC.read_text(encoding="utf-8"))


def test_every_kind_of_unit_has_an_example():
    """The page shows how to add each kind the registries hold."""
    kinds = {"loss", "view", "negatives", "pooler", "postprocess", "task", "diagnostic"}
    assert kinds <= EXAMPLES.keys(), f"missing: {sorted(kinds - EXAMPLES.keys())}"


def test_examples_are_found_only_after_their_marker():
    text = "```python\nx = 1\n```\n<!-- example: a -->\n```python\ny = 2\n```\n"
    assert examples(text) == {"a": "y = 2\n"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, shared_data, tmp_path):
    code = f"from pathlib import Path\nDATA = Path({str(shared_data)!r})\n" + EXAMPLES[name]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"example {name!r} failed:\n{done.stdout}\n{done.stderr}"
