"""`embeval data download` and `embeval data verify`: the SentEval downloads, rebuilt and checked.

`download` fetches each source of embeval.eval.data.senteval_sources (with retries, or from a
mirror), keeps its archive in ROOT/.downloads and writes the files it provides atomically.
`verify` compares files with the sha256 manifest data/MANIFEST.sha256 (sha256sum format).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError

from tqdm import tqdm

from embeval.core.fileio import atomic_write, open_mode
from embeval.eval.data.paths import PROJECT_DATA, DataError, data_root
from embeval.eval.data.senteval_sources import GROUPS, DownloadError, sources
from embeval.eval.data.senteval_text import moses_tokenizer

log = logging.getLogger(__name__)
MANIFEST = PROJECT_DATA / "MANIFEST.sha256"


class _Writer:  # the Writer of embeval.eval.data.senteval_sources
    """Writes only the files of the wanted groups (sts, sts-raw, transfer), atomically."""

    def __init__(self, root: Path, groups: set[str]):
        self.root, self.groups = root, groups

    def wants(self, rel: str) -> bool:
        return rel.split("/")[0] in self.groups

    def put(self, rel: str, data: bytes) -> None:
        if self.wants(rel):
            atomic_write(self.root / rel, lambda f, d=data: f.write(d))


def fetch(url: str, dest: str | os.PathLike, retries: int = 3, progress: bool = True) -> Path:
    """Download url to dest through a temp file; a failed try leaves nothing behind."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, retries + 1):
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
                total = int(r.headers.get("Content-Length") or 0)
                with tqdm(
                    total=total or None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    while chunk := r.read(1 << 16):
                        f.write(chunk)
                        bar.update(len(chunk))
            size = Path(tmp).stat().st_size
            if total and size != total:
                raise DownloadError(f"got {size} of {total} bytes")
            open_mode(tmp)
            os.replace(tmp, dest)
            return dest
        except (OSError, HTTPException, DataError) as exc:
            log.warning("%s: try %d of %d failed: %s", url, attempt, retries, exc)
            error = exc
            if isinstance(exc, HTTPError) and exc.code < 500:
                break  # 404 and the like: trying again will not help
            if attempt < retries:
                time.sleep(attempt)
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DownloadError(f"could not fetch {url}: {error}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _present(path: Path, sha: str | None) -> bool:
    return path.is_file() and (sha is None or _sha256(path) == sha)


def read_manifest(path: str | os.PathLike = MANIFEST) -> dict[str, str]:
    """relative path -> sha256, from a `sha256sum` listing."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"checksum manifest {path} not found") from None
    out = {}
    for i, line in enumerate(lines, start=1):
        m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not m:
            raise DataError(f"{path}:{i}: expected '<sha256>  <relative path>', got {line!r}")
        out[m.group(2).removeprefix("./")] = m.group(1)
    return out


def _groups(only) -> set[str]:
    groups = set(only or GROUPS)
    if unknown := groups - set(GROUPS):
        raise DataError(f"unknown data group(s) {sorted(unknown)}; expected {', '.join(GROUPS)}")
    return groups


def verify(
    root: str | os.PathLike | None = None, only=None, manifest: str | os.PathLike = MANIFEST
) -> tuple[list[str], list[str], int]:
    """(missing, mismatched, checked) files of the manifest under root, for the groups in only."""
    root, groups = data_root(root), _groups(only)
    missing, mismatched, checked = [], [], 0
    for rel, sha in read_manifest(manifest).items():
        if rel.split("/")[0] not in groups:
            continue
        checked += 1
        if not (root / rel).is_file():
            missing.append(rel)
        elif _sha256(root / rel) != sha:
            mismatched.append(rel)
    return missing, mismatched, checked


def download(
    root: str | os.PathLike | None = None,
    only=None,
    mirror: str | None = None,
    manifest: str | os.PathLike | None = MANIFEST,
    retries: int = 3,
    progress: bool = True,
) -> dict[str, str]:
    """Fetch, unpack and preprocess every source that `only` needs; status per source.

    A source whose files are all present, and match the manifest where it lists them, is
    skipped ("present"); one with a file missing or changed is "rebuilt" from its archive, kept
    in ROOT/.downloads, without network (delete that folder to fetch anew). Failures are
    reported per source, not raised.
    """
    root, groups = data_root(root, search=False), _groups(only)
    if "sts" in groups:
        moses_tokenizer()  # fail before downloading anything
    expected = read_manifest(manifest) if manifest and Path(manifest).is_file() else {}
    writer, status = _Writer(root, groups), {}
    for src in sources():
        outs = [o for o in src.outputs if writer.wants(o)]
        if not outs:
            continue
        if all(_present(root / o, expected.get(o)) for o in outs):
            status[src.name] = "present"
            continue
        file_name = src.url.rsplit("/", 1)[1]
        url = f"{mirror.rstrip('/')}/{file_name}" if mirror else src.url
        try:
            archive = root / ".downloads" / file_name
            done = "rebuilt" if archive.is_file() else "fetched"  # from the kept archive or not
            fetch(url, archive, retries, progress)
            try:
                src.build(archive.read_bytes(), writer)
            except (zipfile.BadZipFile, tarfile.TarError, UnicodeDecodeError) as exc:
                archive.unlink()  # a broken archive is fetched again next time
                raise DownloadError(f"{archive}: not a usable archive ({exc})") from exc
            if lost := [o for o in outs if not (root / o).is_file()]:
                raise DownloadError(f"{url} did not provide {', '.join(lost)}")
            status[src.name] = done
        except (DataError, OSError, subprocess.CalledProcessError) as exc:
            status[src.name] = f"failed: {exc}"
    return status
