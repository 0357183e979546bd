"""`embeval data download` and `embeval data verify`: the SentEval downloads, rebuilt and checked.

`download` follows SentEval's data/downstream/get_transfer_data.bash (Conneau & Kiela 2018):
STS12-16 and STS-B text through Moses `tokenizer.perl -l en -no-escape`, then lowercased (sts/,
beside the untouched releases in sts-raw/); SICK tokenized, kept cased; MR/CR/SUBJ/MPQA through
`cat -v` and the PTB `tokenizer.sed`; TREC without quote characters; MRPC out of the MSI.
`verify` compares files with the sha256 manifest data/MANIFEST.sha256 (sha256sum format).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError

from tqdm import tqdm

from embeval.eval.datasets import PROJECT_DATA, STS_YEARS, DataError, data_root
from embeval.eval.senteval_text import cat_v, cut, map_lines, moses, moses_tokenizer, ptb

log = logging.getLogger(__name__)
GROUPS = ("sts", "sts-raw", "transfer")
MANIFEST = PROJECT_DATA / "MANIFEST.sha256"

# The URLs of SentEval's script, written from memory of it (no internet here to check them).
# Several hosts have moved or gone offline since 2018 (ixa2.si.ehu.es/stswiki, alt.qcri.org,
# cogcomp.cs.illinois.edu); `--mirror URL` fetches every file as URL/<file name> instead.
STSWIKI = "http://ixa2.si.ehu.es/stswiki/images"
STS_URLS = {
    "STS12": (f"{STSWIKI}/4/40/STS2012-en-test.zip", "test-gold"),
    "STS13": (f"{STSWIKI}/2/2f/STS2013-en-test.zip", "test-gs"),
    "STS14": (f"{STSWIKI}/8/8c/STS2014-en-test.zip", "sts-en-test-gs-2014"),
    "STS15": (f"{STSWIKI}/d/da/STS2015-en-test.zip", "test_evaluation_task2a"),
    "STS16": (f"{STSWIKI}/9/98/STS2016-en-test.zip", "sts2016-english-with-gs-v1.0"),
}
STSB_URL = f"{STSWIKI}/4/48/Stsbenchmark.tar.gz"
SICK_URL = "http://alt.qcri.org/semeval2014/task1/data/uploads/sick_{}.zip"
BINCLASSIF_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/datasmall_NB_ACL12.zip"
SST_URL = "https://raw.githubusercontent.com/PrincetonML/SIF/master/data/sentiment-{}"
TREC_URL = "http://cogcomp.cs.illinois.edu/Data/QA/QC/{}.label"
MRPC_URL = (
    "https://download.microsoft.com/download/D/4/6/"
    "D46FF87A-F6B9-4252-AA8B-3604ED519838/MSRParaphraseCorpus.msi"
)
MRPC_MEMBERS = {  # MSI member -> file, as SentEval's script names them
    "_2DEC3DBE877E4DB192D17C0256E90F1D": "msr_paraphrase_train.txt",
    "_D7B391F9EAFF4B1B8BCE8F21B20B1B61": "msr_paraphrase_test.txt",
}
BINCLASSIF = {  # member of datasmall_NB_ACL12.zip -> transfer/ file
    "data/rt10662/rt-polarity.pos": "MR/rt-polarity.pos",
    "data/rt10662/rt-polarity.neg": "MR/rt-polarity.neg",
    "data/customerr/custrev.pos": "CR/custrev.pos",
    "data/customerr/custrev.neg": "CR/custrev.neg",
    "data/subj/subj.subjective": "SUBJ/subj.subjective",
    "data/subj/subj.objective": "SUBJ/subj.objective",
    "data/mpqa/mpqa.pos": "MPQA/mpqa.pos",
    "data/mpqa/mpqa.neg": "MPQA/mpqa.neg",
}


class DownloadError(DataError):
    """A source could not be fetched or unpacked."""


# --- sources: one archive each, unpacked into the files it provides ---------------------------


class _Writer:
    """Writes only the files of the wanted groups (sts, sts-raw, transfer), atomically."""

    def __init__(self, root: Path, groups: set[str]):
        self.root, self.groups = root, groups

    def wants(self, rel: str) -> bool:
        return rel.split("/")[0] in self.groups

    def put(self, rel: str, data: bytes) -> None:
        if self.wants(rel):
            _atomic_write(self.root / rel, data)


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    outputs: tuple[str, ...]  # the files it provides: what skipping and the manifest look at
    build: Callable[[bytes, _Writer], None]  # archive bytes -> files


def _members(blob: bytes, folder: str = "") -> Iterator[tuple[str, bytes]]:
    """(path below `folder`, bytes) of every regular file of a zip or tar archive."""
    if zipfile.is_zipfile(io.BytesIO(blob)):
        zf = zipfile.ZipFile(io.BytesIO(blob))
        items = [(i.filename, functools.partial(zf.read, i)) for i in zf.infolist()]
    else:
        tf = tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
        items = [(m.name, lambda m=m: tf.extractfile(m).read()) for m in tf if m.isfile()]
    for name, read in items:
        parts = PurePosixPath(name).parts
        if name.endswith("/") or ".." in parts or name.startswith("/") or "__MACOSX" in parts:
            continue  # folders, and nothing that would land outside the data root
        if not folder or parts[0] == folder:
            yield "/".join(parts[1:] if folder else parts), read()


def _sts_pair(line: str) -> str:  # STS12-16: both sentences tokenized, lowercased
    return f"{moses(cut(line, 1))}\t{moses(cut(line, 2))}"


def _stsb_row(line: str) -> str:  # cut -f1-5; -f6 and -f7 tokenized, lowercased
    return "\t".join([*line.split("\t")[:5], moses(cut(line, 6)), moses(cut(line, 7))])


def _sick_row(line: str) -> str:  # cut -f1; -f2, -f3 tokenized, cased; cut -f4,5
    sentences = moses(cut(line, 2), lower=False), moses(cut(line, 3), lower=False)
    return "\t".join([cut(line, 1), *sentences, *line.split("\t")[3:5]])


def _sts_year(task: str) -> Source:
    url, zip_folder = STS_URLS[task]
    folder, subsets = STS_YEARS[task]

    def build(blob: bytes, out: _Writer) -> None:
        for name, data in _members(blob, zip_folder):
            raw = data
            if task == "STS16" and name.startswith("STS2016."):  # SentEval renames to STS.*
                out.put(f"sts-raw/{folder}/original/{name}", data)
                name = "STS." + name.removeprefix("STS2016.")
                if re.fullmatch(r"STS\.input\..+\.txt", name):  # sts-raw/: the two sentences
                    raw = map_lines(data.decode("utf-8"), lambda x: "\t".join(x.split("\t")[:2]))
            out.put(f"sts-raw/{folder}/{name}", raw)
            if re.fullmatch(r"STS\.input\..+\.txt", name) and out.wants("sts"):
                data = map_lines(data.decode("utf-8"), _sts_pair)
            out.put(f"sts/{folder}/{name}", data)

    kinds = ("input", "gs")
    outs = [f"{g}/{folder}/STS.{k}.{s}.txt" for g in GROUPS[:2] for k in kinds for s in subsets]
    return Source(task, url, tuple(outs), build)


def _stsb(blob: bytes, out: _Writer) -> None:
    for name, data in _members(blob, "stsbenchmark"):
        out.put(f"sts-raw/STSBenchmark/{name}", data)
        if name.endswith(".csv") and out.wants("sts"):
            data = map_lines(data.decode("utf-8"), _stsb_row)
        out.put(f"sts/STSBenchmark/{name}", data)


def _sick(blob: bytes, out: _Writer) -> None:
    for name, data in _members(blob):
        if re.fullmatch(r"SICK_\w+\.txt", name):  # header kept as is; sentences tokenized, cased
            header, _, body = data.decode("utf-8").partition("\n")
            out.put(f"sts/SICK/{name}", header.encode() + b"\n" + map_lines(body, _sick_row))


def _binclassif(blob: bytes, out: _Writer) -> None:
    files = dict(_members(blob))
    for member, name in BINCLASSIF.items():
        if member in files:
            text = cat_v(files[member])
            out.put(f"transfer/{name}", map_lines(text, ptb))


def _mrpc(blob: bytes, out: _Writer) -> None:
    if not (exe := shutil.which("cabextract")):
        raise DownloadError(
            "MRPC ships as a Windows installer (.msi): install cabextract "
            "(apt-get install cabextract / brew install cabextract) and run again"
        )
    with tempfile.TemporaryDirectory() as tmp:
        msi = Path(tmp) / "MSRParaphraseCorpus.msi"
        msi.write_bytes(blob)
        subprocess.run([exe, "-q", "-d", tmp, str(msi)], check=True, capture_output=True)
        for member, name in MRPC_MEMBERS.items():
            if (Path(tmp) / member).is_file():  # tr -d '\r'
                out.put(
                    f"transfer/MRPC/{name}", (Path(tmp) / member).read_bytes().replace(b"\r", b"")
                )


def _file(name: str, url: str, rel: str, fix: Callable[[bytes], bytes] = bytes) -> Source:
    return Source(name, url, (rel,), lambda blob, out: out.put(rel, fix(blob)))


def sources() -> list[Source]:
    """Every SentEval download, in the order of SentEval's script."""
    stsb = [f"{g}/STSBenchmark/sts-{s}.csv" for g in GROUPS[:2] for s in ("train", "dev", "test")]
    no_quotes = lambda b: b.replace(b"`", b"").replace(b"'", b"")  # noqa: E731  (TREC)
    return [
        *(_sts_year(task) for task in STS_URLS),
        Source("STSBenchmark", STSB_URL, tuple(stsb), _stsb),
        *(
            Source(f"SICK {s}", SICK_URL.format(s), (f"sts/SICK/SICK_{s}.txt",), _sick)
            for s in ("train", "trial", "test_annotated")
        ),
        Source(
            "MR/CR/SUBJ/MPQA",
            BINCLASSIF_URL,
            tuple(f"transfer/{n}" for n in BINCLASSIF.values()),
            _binclassif,
        ),
        *(
            _file(f"SST2 {s}", SST_URL.format(s), f"transfer/SST/binary/sentiment-{s}")
            for s in ("train", "dev", "test")
        ),
        *(
            _file(f"TREC {n}", TREC_URL.format(n), f"transfer/TREC/{n}.label", no_quotes)
            for n in ("train_5500", "TREC_10")
        ),
        Source("MRPC", MRPC_URL, tuple(f"transfer/MRPC/{n}" for n in MRPC_MEMBERS.values()), _mrpc),
    ]


# --- fetching and checking ------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(url: str, dest: Path, retries: int = 3, progress: bool = True) -> Path:
    """Download url to dest through a temp file; a failed try leaves nothing behind."""
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


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
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


def verify(root=None, only=None, manifest: Path = MANIFEST) -> tuple[list[str], list[str], int]:
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
    root=None,
    only=None,
    mirror: str | None = None,
    manifest: Path | None = MANIFEST,
    retries: int = 3,
    progress: bool = True,
) -> dict[str, str]:
    """Fetch, unpack and preprocess every source that `only` needs; status per source.

    A source whose files are all present, and match the manifest where it lists them, is
    skipped ("present"); one with a file missing or changed is "rebuilt" from its archive, kept
    in ROOT/.downloads, without network (delete that folder to fetch anew). Failures are
    reported per source, not raised.
    """
    root, groups = data_root(root), _groups(only)
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
