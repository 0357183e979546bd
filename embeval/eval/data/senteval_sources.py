"""The SentEval downloads: where each upstream archive lives and how it becomes SentEval's layout.

The conversions follow SentEval's data/downstream/get_transfer_data.bash (Conneau & Kiela 2018):
STS12-16 and STS-B text through Moses `tokenizer.perl -l en -no-escape`, then lowercased (sts/,
beside the untouched releases in sts-raw/); SICK tokenized, kept cased; MR/CR/SUBJ/MPQA through
`cat -v` and the PTB `tokenizer.sed`; TREC without quote characters; MRPC out of the MSI.
Fetching, skipping and checking them is embeval.eval.data.download's job. Where a task's files
go (its folder, STS12-16's subsets) is a fact of its record in embeval.eval.data.tasks.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from embeval.eval.data.paths import DATA_GROUPS as GROUPS  # the top folders of the data root
from embeval.eval.data.paths import DataError
from embeval.eval.data.senteval_text import cat_v, cut, map_lines, moses, ptb
from embeval.eval.data.tasks import TASKS

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
# EvalRank (Wang et al., 2022): its data folder and licence, pinned to the commit the shared
# copy was taken from (/work/shared/data/README.md, section EvalRank).
EVALRANK_COMMIT = "c6422dbf8a357b206234ab81639b24bd3428914f"
EVALRANK_URL = (
    "https://raw.githubusercontent.com/BinWang28/EvalRank-Embedding-Evaluation/"
    f"{EVALRANK_COMMIT}/{{}}"
)
EVALRANK_FILES = {  # file in the repository -> file under the data root's evalrank/
    "data/sent_evalrank/pos_pair.txt": "pos_pair.txt",
    "data/sent_evalrank/background_sent.txt": "background_sent.txt",
    "LICENSE": "LICENSE",
}


class DownloadError(DataError):
    """A source could not be fetched or unpacked."""


# --- sources: one archive each, unpacked into the files it provides ---------------------------


class Writer(Protocol):
    """Where a source puts its files, by path relative to the data root."""

    def wants(self, rel: str) -> bool: ...

    def put(self, rel: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    outputs: tuple[str, ...]  # the files it provides: what skipping and the manifest look at
    build: Callable[[bytes, Writer], None]  # archive bytes -> files


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
    folder, subsets = TASKS.get(task).folder, TASKS.get(task).subsets

    def build(blob: bytes, out: Writer) -> None:
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


def _folder(task: str) -> str:
    """`<data group>/<folder>` of a registered task, e.g. transfer/TREC."""
    record = TASKS.get(task)
    return f"{record.data_group}/{record.folder}"


def _stsb(blob: bytes, out: Writer) -> None:
    folder = TASKS.get("STSBenchmark").folder
    for name, data in _members(blob, "stsbenchmark"):
        out.put(f"sts-raw/{folder}/{name}", data)
        if name.endswith(".csv") and out.wants("sts"):
            data = map_lines(data.decode("utf-8"), _stsb_row)
        out.put(f"sts/{folder}/{name}", data)


def _sick(blob: bytes, out: Writer) -> None:
    for name, data in _members(blob):
        if re.fullmatch(r"SICK_\w+\.txt", name):  # header kept as is; sentences tokenized, cased
            header, _, body = data.decode("utf-8").partition("\n")
            rel = f"{_folder('SICKRelatedness')}/{name}"
            out.put(rel, header.encode() + b"\n" + map_lines(body, _sick_row))


def _binclassif(blob: bytes, out: Writer) -> None:
    files = dict(_members(blob))
    for member, name in BINCLASSIF.items():
        if member in files:
            text = cat_v(files[member])
            out.put(f"transfer/{name}", map_lines(text, ptb))


def _mrpc(blob: bytes, out: Writer) -> None:
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
                data = (Path(tmp) / member).read_bytes().replace(b"\r", b"")
                out.put(f"{_folder('MRPC')}/{name}", data)


def _file(name: str, url: str, rel: str, fix: Callable[[bytes], bytes] = bytes) -> Source:
    return Source(name, url, (rel,), lambda blob, out: out.put(rel, fix(blob)))


def sources() -> list[Source]:
    """Every SentEval download, in the order of SentEval's script, then EvalRank's files."""
    stsb_folder, sick = TASKS.get("STSBenchmark").folder, _folder("SICKRelatedness")
    stsb = [f"{g}/{stsb_folder}/sts-{s}.csv" for g in GROUPS[:2] for s in ("train", "dev", "test")]
    evalrank = TASKS.get("EvalRank").data_group  # its files sit at the group's top
    no_quotes = lambda b: b.replace(b"`", b"").replace(b"'", b"")  # noqa: E731  (TREC)
    return [
        *(_sts_year(task) for task in STS_URLS),
        Source("STSBenchmark", STSB_URL, tuple(stsb), _stsb),
        *(
            Source(f"SICK {s}", SICK_URL.format(s), (f"{sick}/SICK_{s}.txt",), _sick)
            for s in ("train", "trial", "test_annotated")
        ),
        Source(
            "MR/CR/SUBJ/MPQA",
            BINCLASSIF_URL,
            tuple(f"transfer/{n}" for n in BINCLASSIF.values()),
            _binclassif,
        ),
        *(
            _file(f"SST2 {s}", SST_URL.format(s), f"{_folder('SST2')}/binary/sentiment-{s}")
            for s in ("train", "dev", "test")
        ),
        *(
            _file(f"TREC {n}", TREC_URL.format(n), f"{_folder('TREC')}/{n}.label", no_quotes)
            for n in ("train_5500", "TREC_10")
        ),
        Source(
            "MRPC", MRPC_URL, tuple(f"{_folder('MRPC')}/{n}" for n in MRPC_MEMBERS.values()), _mrpc
        ),
        *(
            _file(f"EvalRank {name}", EVALRANK_URL.format(rel), f"{evalrank}/{name}")
            for rel, name in EVALRANK_FILES.items()
        ),
    ]
