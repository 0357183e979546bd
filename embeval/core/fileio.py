"""Atomic writes: write beside the target, then rename over it, so no reader sees half a file.

`tempfile` creates files 0600 and folders 0700, and a rename keeps that mode; results, caches and
checkpoints are meant to be shared, so they get the mode a plain `open()` / `mkdir()` would give.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_mode(path: str | os.PathLike) -> None:
    """Give a temporary file or folder the mode `open()` / `mkdir()` would have given it."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def open_mode_tree(root: str | os.PathLike) -> None:
    """open_mode for `root` and everything under it. Some writers do not create files the way
    open() does (safetensors' save_file makes them 0600), so a folder written by a library is
    given the mode its neighbours have before it is renamed into place."""
    open_mode(root)
    for path in Path(root).rglob("*"):
        if not path.is_symlink():
            open_mode(path)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace `path` with what `write(f)` writes; nothing changes if it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        open_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def aside(dest: Path) -> Path:
    """Where `replace_dir` keeps the previous `dest` until the new one is in place."""
    return dest.with_name(f".{dest.name}.old")


def replace_dir(new: Path, dest: Path) -> Path:
    """Put folder `new` in place of `dest`. The old `dest` waits at `aside(dest)` until the new
    one is in, so a crash between the two renames still leaves one whole copy."""
    old = aside(dest)
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def temp_dir_beside(path: Path) -> Path:
    """An empty folder next to `path` (same file system, so it can be renamed onto `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    open_mode(tmp)
    return tmp
