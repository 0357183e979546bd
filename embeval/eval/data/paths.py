"""Where the benchmark data lives, and the error every reader raises on missing or bad data.

One rule finds the data root (the Makefile asks `data_root` too); every public function of the
data layer takes a path as `str` or `os.PathLike` and turns it into a `Path` here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

PROJECT_DATA = Path(__file__).resolve().parents[3] / "data"
SHARED_DATA = PROJECT_DATA.parents[1] / "shared" / "data"  # ../shared/data beside the project
DATA_GROUPS = ("sts", "sts-raw", "transfer", "evalrank")  # the top folders of a data root


class DataError(ValueError):
    """Missing or malformed benchmark data; the message names the file and line."""


def data_root(explicit: str | os.PathLike | None = None, *, search: bool = True) -> Path:
    """--data DIR, else $EMBEVAL_DATA, else the project's data/ when it holds the data (sts/,
    sts-raw/ or transfer/), else ../shared/data beside the project when it does, else data/.

    The one rule: the Makefile asks this function too. `search=False` skips the shared copy,
    for writing: downloads go to data/, never into a reference copy others read.
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("EMBEVAL_DATA")
    if env:
        return Path(env).expanduser()
    for candidate in (PROJECT_DATA, SHARED_DATA) if search else ():
        if any((candidate / g).is_dir() for g in DATA_GROUPS):
            return candidate
    return PROJECT_DATA


def where_looked(root: str | os.PathLike) -> str:
    """The rest of a 'no data found' message: why `root`, and where the default search looks."""
    root = Path(root)
    env = os.environ.get("EMBEVAL_DATA")
    why = f"{root} is $EMBEVAL_DATA. " if env and Path(env).expanduser() == root else ""
    return (
        f"{why}Without --data or $EMBEVAL_DATA, embeval uses {PROJECT_DATA} when it holds "
        f"{', '.join(g + '/' for g in DATA_GROUPS)}, else {SHARED_DATA} when it does."
    )


def checksum(files: Iterable[str | os.PathLike]) -> str:
    """sha256 over the files' bytes, recorded in results so runs on different data don't mix."""
    h = hashlib.sha256()
    for f in map(Path, files):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
