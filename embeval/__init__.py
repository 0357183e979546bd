"""embeval: train and evaluate sentence embeddings the way the papers do."""

import logging
import re
from pathlib import Path


def _project_table(text: str) -> dict:
    """`[project]` of a pyproject.toml: tomllib, or on Python 3.10 its name and version lines."""
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        table = re.search(r"^\[project\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        lines = re.findall(r'^(name|version)\s*=\s*"([^"]*)"', table[1] if table else "", re.M)
        return dict(lines)
    try:
        return tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return {}


def _version() -> str:
    """The version in pyproject.toml: results record it (`meta.embeval_version`), so it changes
    whenever a figure can change (see `embeval.results.files`).

    From a source tree (a checkout, or an editable install) its pyproject.toml is read: installed
    metadata would be that of the last `pip install` and miss a bump made since. Otherwise the
    installed package's metadata (`importlib.metadata`), which pyproject.toml wrote."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = _project_table(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):  # installed: no pyproject.toml beside the package
        project = {}
    if project.get("name") == "embeval" and isinstance(project.get("version"), str):
        return project["version"]
    import importlib.metadata

    try:
        return importlib.metadata.version("embeval")
    except importlib.metadata.PackageNotFoundError:  # neither installed nor a source tree
        return "0+unknown"


__version__ = _version()

logging.getLogger(__name__).addHandler(logging.NullHandler())
