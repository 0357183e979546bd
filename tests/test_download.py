"""`embeval data download` / `verify`: against the shared reference copy and a loopback server.

Every archive served here is built by the test itself, mostly from real lines of the shared
SemEval releases (sts-raw/), so SentEval's own output in sts/ is the golden value.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.eval.data import download as dl
from embeval.eval.data import senteval_sources as sources
from embeval.eval.data import tasks
from embeval.eval.data.paths import DataError
from embeval.eval.data.senteval_text import cut, moses_tokenizer

STS_YEARS = {t.name: (t.folder, t.subsets) for t in tasks.group("sts") if t.subsets}  # STS12-16
MANIFEST_LINES = dl.MANIFEST.read_text().splitlines()


class Server:
    """Loopback HTTP server for `files` (name -> bytes). A name in `broken` announces its full
    Content-Length, sends half of the bytes and hangs up."""

    def __init__(self, files: dict[str, bytes], broken=()):
        self.files, self.broken, self.requests = files, set(broken), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                outer.requests.append(name)
                if name not in outer.files:
                    self.send_error(404)
                    return
                body = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in outer.broken else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"


@pytest.fixture
def serve():
    servers = []

    def start(files, broken=()):
        servers.append(Server(files, broken))
        return servers[-1]

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def pick(raw: list[bytes]) -> list[int]:
    """The first 40 lines, plus the lines that exercise tokenizer.perl's end-of-line rules
    (a final dotted word like `u.s.`, a final `.'`), which sacremoses alone gets wrong."""
    tricky = re.compile(rb"\w\.\w+\.(\t|$)|\.'(\t|$)")
    return [i for i, line in enumerate(raw) if i < 40 or tricky.search(line.rstrip(b"\n"))]


def name(url: str) -> str:
    return url.rsplit("/", 1)[1]


# --- verify -------------------------------------------------------------------------------


def test_manifest_covers_every_data_file_embeval_reads():
    rels = [line.split("  ", 1)[1] for line in MANIFEST_LINES]
    assert len(rels) == 123 and rels == sorted(rels)
    assert sum(r.startswith("transfer/") for r in rels) == 15
    assert [r for r in rels if r.startswith("evalrank/")] == [
        "evalrank/LICENSE",
        "evalrank/background_sent.txt",
        "evalrank/pos_pair.txt",
    ]
    for group in ("sts", "sts-raw"):
        for folder, subsets in STS_YEARS.values():
            for s in subsets:
                assert f"{group}/{folder}/STS.input.{s}.txt" in rels
                assert f"{group}/{folder}/STS.gs.{s}.txt" in rels
    assert "sts/SICK/SICK_test_annotated.txt" in rels


def test_verify_passes_on_shared_data(shared_data):
    assert dl.verify(shared_data) == ([], [], 123)
    res = CliRunner().invoke(main, ["data", "verify", "--data", str(shared_data)])
    assert res.exit_code == 0, res.output
    assert "123 of 123 files OK" in res.output


def test_verify_names_tampered_and_missing_files(shared_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shared_data / "transfer", root / "transfer")
    trec = root / "transfer" / "TREC" / "TREC_10.label"
    data = bytearray(trec.read_bytes())
    data[100] ^= 1  # one bit of one byte
    trec.write_bytes(bytes(data))
    (root / "transfer" / "MRPC" / "msr_paraphrase_test.txt").unlink()

    missing, mismatched, checked = dl.verify(root, only=["transfer"])
    assert (missing, mismatched, checked) == (
        ["transfer/MRPC/msr_paraphrase_test.txt"],
        ["transfer/TREC/TREC_10.label"],
        15,
    )
    res = CliRunner().invoke(main, ["data", "verify", "--data", str(root), "--only", "transfer"])
    assert res.exit_code == 1
    assert f"mismatch  {trec}" in res.output
    assert "missing   " in res.output and "msr_paraphrase_test.txt" in res.output
    assert "13 of 15 files OK" in res.output
    # without --only, every sts/, sts-raw/ and evalrank/ file counts as missing too
    missing, mismatched, checked = dl.verify(root)
    assert checked == 123 and len(missing) == 109 and mismatched == ["transfer/TREC/TREC_10.label"]


def test_bad_manifest_line_is_named(tmp_path):
    bad = tmp_path / "MANIFEST.sha256"
    bad.write_text(MANIFEST_LINES[0] + "\nnot a checksum line\n")
    with pytest.raises(DataError, match=r"MANIFEST.sha256:2: expected"):
        dl.verify(tmp_path, manifest=bad)
    with pytest.raises(DataError, match="unknown data group"):
        dl.verify(tmp_path, only=["stss"])


# --- download: STS ------------------------------------------------------------------------


def sts16_and_stsb_archives(shared: Path, full: bool = False):
    """STS2016-en-test.zip (4-column STS2016.* files, as released) and Stsbenchmark.tar.gz, made
    of the lines pick() chooses (all lines when full) of the shared raw releases."""
    raw16 = shared / "sts-raw" / "STS16-en-test"
    members, chosen = {}, {}
    for s in STS_YEARS["STS16"][1]:
        inp = lines(raw16 / "original" / f"STS2016.input.{s}.txt")
        idx = range(len(inp)) if full else pick(lines(raw16 / f"STS.input.{s}.txt"))
        chosen[s] = idx
        gs = lines(raw16 / f"STS.gs.{s}.txt")
        folder = "sts2016-english-with-gs-v1.0"
        members[f"{folder}/STS2016.input.{s}.txt"] = b"".join(inp[i] for i in idx)
        members[f"{folder}/STS2016.gs.{s}.txt"] = b"".join(gs[i] for i in idx)
    members["sts2016-english-with-gs-v1.0/LICENSE.txt"] = b"license terms\n"
    stsb, chosen["stsb"] = {}, {}
    for split in ("train", "dev", "test"):
        raw = lines(shared / "sts-raw" / "STSBenchmark" / f"sts-{split}.csv")
        idx = range(len(raw)) if full else pick(raw)
        chosen["stsb"][split] = idx
        stsb[f"stsbenchmark/sts-{split}.csv"] = b"".join(raw[i] for i in idx)
    files = {
        name(sources.STS_URLS["STS16"][0]): make_zip(members),
        name(sources.STSB_URL): make_tgz(stsb),
    }
    return files, chosen


def test_download_sts16_and_stsb_match_senteval_output(shared_data, tmp_path, serve):
    files, chosen = sts16_and_stsb_archives(shared_data)
    server = serve(files)
    root = tmp_path / "data"
    status = dl.download(root, ["sts", "sts-raw"], server.url, manifest=None, progress=False)
    assert status["STS16"] == "fetched" and status["STSBenchmark"] == "fetched"
    assert status["STS12"].startswith("failed") and "404" in status["STS12"]
    assert status["SICK train"].startswith("failed")

    changed = 0
    for s, idx in chosen.items():
        if s == "stsb":
            continue
        for group in ("sts", "sts-raw"):
            ref = lines(shared_data / group / "STS16-en-test" / f"STS.input.{s}.txt")
            got = lines(root / group / "STS16-en-test" / f"STS.input.{s}.txt")
            assert got == [ref[i] for i in idx], (group, s)
        gs = lines(shared_data / "sts" / "STS16-en-test" / f"STS.gs.{s}.txt")
        assert lines(root / "sts" / "STS16-en-test" / f"STS.gs.{s}.txt") == [gs[i] for i in idx]
        original = root / "sts-raw" / "STS16-en-test" / "original" / f"STS2016.input.{s}.txt"
        assert original.read_bytes() == zipfile.ZipFile(
            io.BytesIO(files[name(sources.STS_URLS["STS16"][0])])
        ).read(f"sts2016-english-with-gs-v1.0/STS2016.input.{s}.txt")
        raw = lines(root / "sts-raw" / "STS16-en-test" / f"STS.input.{s}.txt")
        tok = lines(root / "sts" / "STS16-en-test" / f"STS.input.{s}.txt")
        changed += sum(a != b for a, b in zip(raw, tok, strict=True))
    assert changed > 100  # the tokenizer/lowercasing really ran
    for split, idx in chosen["stsb"].items():
        ref = lines(shared_data / "sts" / "STSBenchmark" / f"sts-{split}.csv")
        assert lines(root / "sts" / "STSBenchmark" / f"sts-{split}.csv") == [ref[i] for i in idx]
    assert (root / "sts" / "STS16-en-test" / "LICENSE.txt").read_bytes() == b"license terms\n"


@pytest.mark.slow
def test_full_sts_rebuild_verifies_against_the_manifest(shared_data, tmp_path, serve):
    """The five SemEval zips and the STS-B tarball, rebuilt whole from sts-raw/, give sts/ and
    sts-raw/ files whose sha256 all match the manifest (SICK has no raw copy here)."""
    files, _ = sts16_and_stsb_archives(shared_data, full=True)
    for task in ("STS12", "STS13", "STS14", "STS15"):
        url, folder_in_zip = sources.STS_URLS[task]
        folder = shared_data / "sts-raw" / STS_YEARS[task][0]
        members = {f"{folder_in_zip}/{p.name}": p.read_bytes() for p in folder.iterdir()}
        files[name(url)] = make_zip(members)
    server = serve(files)
    root = tmp_path / "data"
    status = dl.download(root, ["sts", "sts-raw"], server.url, progress=False)
    assert [k for k, v in status.items() if v == "fetched"] == [*sources.STS_URLS, "STSBenchmark"]
    missing, mismatched, checked = dl.verify(root, ["sts", "sts-raw"])
    assert mismatched == [] and checked == 105
    assert missing == [f"sts/SICK/SICK_{s}.txt" for s in ("test_annotated", "train", "trial")]


# --- download: SICK and transfer tasks ------------------------------------------------------

SICK_HEADER = b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
# Moses (English) splits "man's" -> "man 's", "isn't" -> "isn 't" and a final period; the case
# is kept; CRLF survives because SentEval's `cut -f4,5` keeps the carriage return in field 5.
SICK_IN = b"1\tA man's dog isn't running.\tThe dog runs\t3.5\tNEUTRAL\r\n"
SICK_OUT = b"1\tA man 's dog isn 't running .\tThe dog runs\t3.5\tNEUTRAL\r\n"

# cat -v turns the latin-1 byte \xe9 into "M-i"; the PTB sed script then splits quotes into
# `` / '', "'s", "n't", "gonna", commas and the final period, and leaves a trailing space.
MR_IN = b"the rock's \" conan \" is caf\xe9 , ok.\nit isn't gonna work!\n"
MR_OUT = b"the rock 's `` conan `` is cafM-i , ok . \nit is n't gon na work ! \n"
TREC_IN = b"ENTY:cremat What films featured the character ``Popeye Doyle'' ?\n"
TREC_OUT = b"ENTY:cremat What films featured the character Popeye Doyle ?\n"
MRPC_TRAIN = b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\tA b.\tA c.\r\n"
MRPC_TEST = b"Quality\r\n"


def transfer_archives() -> dict[str, bytes]:
    binclassif = {member: MR_IN for member in sources.BINCLASSIF}
    files = {
        name(sources.BINCLASSIF_URL): make_zip(binclassif),
        name(sources.TREC_URL.format("train_5500")): TREC_IN,
        name(sources.TREC_URL.format("TREC_10")): TREC_IN,
        name(sources.MRPC_URL): b"not really an msi",
    }
    for s in ("train", "dev", "test"):
        files[name(sources.SST_URL.format(s))] = f"a {s} sentence .\t1\n".encode()
        files[name(sources.SICK_URL.format(s))] = b""
    files[name(sources.SICK_URL.format("trial"))] = make_zip(
        {"SICK_trial.txt": SICK_HEADER + SICK_IN}
    )
    return files


@pytest.fixture
def fake_cabextract(tmp_path, monkeypatch):
    """A `cabextract` on PATH that writes the two MRPC members (CRLF, as in the MSI)."""
    octal = lambda data: "".join(f"\\{b:03o}" for b in data)  # noqa: E731  printf escapes
    exe = tmp_path / "bin" / "cabextract"
    exe.parent.mkdir()
    exe.write_text(
        "#!/bin/sh\n# called as: cabextract -q -d DIR FILE\n"
        + "".join(
            f"printf '{octal(data)}' > \"$3/{member}\"\n"
            for member, data in zip(sources.MRPC_MEMBERS, (MRPC_TRAIN, MRPC_TEST), strict=True)
        )
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")


def test_download_sick_and_transfer_preprocessing(tmp_path, serve, fake_cabextract):
    server = serve(transfer_archives())
    root = tmp_path / "data"
    status = dl.download(root, ["sts", "transfer"], server.url, manifest=None, progress=False)
    assert status["SICK trial"] == "fetched", status
    assert (root / "sts/SICK/SICK_trial.txt").read_bytes() == SICK_HEADER + SICK_OUT
    assert status["SICK train"].startswith("failed") and "archive" in status["SICK train"]
    assert not (root / ".downloads" / "sick_train.zip").exists()  # a broken archive is dropped
    assert all(status[k] == "fetched" for k in status if not k.startswith(("SICK", "STS"))), status
    for rel in sources.BINCLASSIF.values():
        assert (root / "transfer" / rel).read_bytes() == MR_OUT, rel
    assert (root / "transfer/TREC/TREC_10.label").read_bytes() == TREC_OUT
    assert (root / "transfer/SST/binary/sentiment-dev").read_bytes() == b"a dev sentence .\t1\n"
    assert (root / "transfer/MRPC/msr_paraphrase_train.txt").read_bytes() == MRPC_TRAIN.replace(
        b"\r", b""
    )
    assert (root / "transfer/MRPC/msr_paraphrase_test.txt").read_bytes() == b"Quality\n"


def test_download_is_idempotent_and_repairs_changed_files(tmp_path, serve, fake_cabextract):
    server = serve(transfer_archives())
    root = tmp_path / "data"
    first = dl.download(root, ["transfer"], server.url, manifest=None, progress=False)
    assert set(first.values()) == {"fetched"}
    n = len(server.requests)
    again = dl.download(root, ["transfer"], server.url, manifest=None, progress=False)
    assert set(again.values()) == {"present"} and len(server.requests) == n  # no network

    # a manifest of the good files: a changed file is rebuilt from the kept archive, offline
    manifest = tmp_path / "MANIFEST.sha256"
    good = {p: dl._sha256(p) for p in (root / "transfer").rglob("*") if p.is_file()}
    manifest.write_text(
        "".join(f"{h}  {p.relative_to(root).as_posix()}\n" for p, h in good.items())
    )
    trec = root / "transfer/TREC/TREC_10.label"
    trec.write_bytes(b"tampered\n")
    fixed = dl.download(root, ["transfer"], server.url, manifest=manifest, progress=False)
    assert fixed["TREC TREC_10"] == "rebuilt" and fixed["SST2 dev"] == "present"
    assert trec.read_bytes() == TREC_OUT and len(server.requests) == n
    assert dl.verify(root, ["transfer"], manifest) == ([], [], 15)


def test_broken_download_leaves_nothing_behind(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    files = {name(sources.SST_URL.format("dev")): b"x" * 200_000}
    server = serve(files, broken=files)
    root = tmp_path / "data"
    status = dl.download(root, ["transfer"], server.url, retries=2, progress=False)
    assert status["SST2 dev"].startswith("failed: could not fetch"), status
    assert server.requests.count("sentiment-dev") == 2  # retried
    assert server.requests.count("sentiment-test") == 1  # a 404 is not retried
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert left == []  # no partial archive, no temp file, no output


def test_mrpc_without_cabextract_says_what_to_install(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(sources.shutil, "which", lambda exe: None)
    server = serve({name(sources.MRPC_URL): b"msi bytes"})
    status = dl.download(tmp_path, ["transfer"], server.url, manifest=None, progress=False)
    assert "install cabextract" in status["MRPC"]
    assert not (tmp_path / "transfer" / "MRPC").exists()


def test_missing_sacremoses_fails_before_any_download(tmp_path, serve, monkeypatch):
    server = serve({})
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import fails
    moses_tokenizer.cache_clear()
    try:
        with pytest.raises(DataError, match=r"pip install 'embeval\[download\]'"):
            dl.download(tmp_path, ["sts"], server.url, progress=False)
        assert server.requests == []
        # the raw releases and the transfer tasks need no tokenizer
        status = dl.download(tmp_path, ["sts-raw"], server.url, retries=1, progress=False)
        assert set(status) == {*sources.STS_URLS, "STSBenchmark"}
    finally:
        moses_tokenizer.cache_clear()


def test_cli_download_reports_each_source(tmp_path, serve, fake_cabextract):
    server = serve(transfer_archives())
    args = ["data", "download", "--data", str(tmp_path), "--only", "transfer"]
    res = CliRunner().invoke(main, [*args, "--mirror", server.url])
    assert res.exit_code == 0, res.output
    assert re.search(r"TREC TREC_10 +fetched", res.output)
    # the fixtures are not the real files: the committed manifest flags them
    assert "warning: transfer/TREC/TREC_10.label differs from the reference copy" in res.output
    # those stay different, so a rerun rebuilds them from the kept archives, offline
    n = len(server.requests)
    res = CliRunner().invoke(main, [*args, "--mirror", server.url + "/nowhere"])
    assert res.exit_code == 0 and re.search(r"TREC TREC_10 +rebuilt", res.output)
    assert len(server.requests) == n


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [("a\tb\tc", 2, "b"), ("a\tb", 3, ""), ("no tab", 2, "no tab")],  # as GNU `cut -f` does
)
def test_cut_follows_gnu_cut(line, field, expected):
    assert cut(line, field) == expected
