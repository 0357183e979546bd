"""One version, in pyproject.toml: `embeval.__version__`, `embeval --version` and results files."""

import re
from pathlib import Path

from click.testing import CliRunner

import embeval
from embeval.cli import main

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pyproject_version() -> str:
    """Read independently of embeval's own reader: the `version = "..."` line of [project]."""
    project = PYPROJECT.read_text(encoding="utf-8").split("[project]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"', project, re.M)[1]


def test_version_is_pyproject_s():
    assert embeval.__version__ == pyproject_version()
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"embeval, version {embeval.__version__}"


def test_results_record_it(tiny_data, fake_encoder):
    from embeval.eval.scoring.score import score

    run = score(fake_encoder, ["stsb"], root=tiny_data)
    assert run.meta["embeval_version"] == pyproject_version()


def test_project_table_without_tomllib(monkeypatch):
    """Python 3.10 has no tomllib: the [project] name and version are read from their lines,
    and a version in another table is not taken for the project's."""
    import builtins

    real = builtins.__import__

    def no_tomllib(name, *args, **kw):
        if name == "tomllib":
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tomllib)
    text = '[tool.x]\nversion = "9"\n\n[project]\nname = "embeval"\nversion = "1.2.3"\n[tool.y]\n'
    assert embeval._project_table(text) == {"name": "embeval", "version": "1.2.3"}
    assert embeval._project_table(PYPROJECT.read_text()) == {
        "name": "embeval",
        "version": pyproject_version(),
    }
