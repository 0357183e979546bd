"""The task registry: one Task record per task; groups, averages, user tasks, str paths.

The toy task is the user's path to a new benchmark: a module of their own holding a `Task`
record, run with `embeval score --tasks module:NAME`, scored and saved like the built-in tasks
but outside both averages (an average is the mean of the tasks flagged in the registry).
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tiny_sts
from scipy.stats import spearmanr
from tiny_transfer import write_tiny_transfer

from embeval.cli import main
from embeval.core.model import random_tiny, save_checkpoint
from embeval.eval.data import download as dl
from embeval.eval.data import paths, sts, tasks
from embeval.eval.data import transfer as transfer_data
from embeval.eval.data.paths import DataError
from embeval.eval.data.senteval_sources import sources
from embeval.eval.data.sts import STSData
from embeval.eval.data.tasks import TASKS, Task
from embeval.eval.encoders.transformer import TransformerEncoder
from embeval.eval.metrics import similarity as metrics
from embeval.eval.scoring import transfer
from embeval.eval.scoring.score import score
from embeval.registry import UnknownUnit
from embeval.results.files import load_run

# SimCSE's tables (Gao et al., 2021, Tables 1 and 2): the tasks each average is the mean of.
SIMCSE_STS = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness"]
SIMCSE_TRANSFER = ["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"]

# Six toy pairs and their gold scores, made by hand: the gold order is not the order of the
# pairs' word overlap, so the Spearman is neither +1 nor -1 for a bag-of-words-like model.
TOY_PAIRS = [
    ("a red apple", "a green apple", 3.0),
    ("the dog runs", "a cat sleeps", 0.5),
    ("rain falls today", "it rains today", 4.5),
    ("he plays chess", "he plays chess well", 4.0),
    ("ships sail north", "planes fly south", 1.0),
    ("cold winter night", "a warm summer day", 2.0),
]
TOY_MODULE = '''
    """A user's own STS-like task, outside embeval: pairs in <data>/toy/pairs.tsv."""
    from pathlib import Path

    import numpy as np

    from embeval.eval.data.sts import STSData
    from embeval.eval.data.tasks import Task


    def load(root, split, protocol):
        path = Path(root) / "toy" / "pairs.tsv"
        rows = [line.split("\\t") for line in path.read_text().splitlines()]
        gold = np.array([float(r[2]) for r in rows])
        return STSData("TOY", split, [r[0] for r in rows], [r[1] for r in rows], gold,
                       ["TOY"] * len(rows), [path])


    TOY = Task("TOY", "sts", load, description="A toy STS task made by a test.")
    NOT_A_TASK = load
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """`toytasks` importable from tmp_path; a fresh name per test so no import cache leaks."""
    (tmp_path / "toytasks.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toytasks", raising=False)
    return "toytasks"


def write_toy_pairs(root: Path) -> Path:
    (root / "toy").mkdir(parents=True, exist_ok=True)
    path = root / "toy" / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\t{g}\n" for a, b, g in TOY_PAIRS))
    return path


def load_toy2(root, split, protocol) -> STSData:
    """The registered toy task's loader: the same pairs file, under the name TOY2."""
    path = Path(root) / "toy" / "pairs.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    gold = np.array([float(r[2]) for r in rows])
    n = len(rows)
    return STSData("TOY2", split, [r[0] for r in rows], [r[1] for r in rows], gold, ["TOY2"] * n)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    backbone, tok = random_tiny(seed=0)
    return save_checkpoint(backbone, tok, tmp_path_factory.mktemp("m") / "tiny", "avg", 32)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------ the records


def test_every_task_is_one_record_and_the_groups_derive_from_kinds():
    assert TASKS.names() == [*SIMCSE_STS, *SIMCSE_TRANSFER, "EvalRank"]
    assert [t.name for t in tasks.group("ranking")] == ["EvalRank"]
    assert all(isinstance(t, Task) for _, t in TASKS.items())
    assert [t.name for t in tasks.group("sts")] == SIMCSE_STS
    assert [t.name for t in tasks.group("transfer")] == SIMCSE_TRANSFER
    assert tasks.simcse_avg_tasks() == SIMCSE_STS
    assert tasks.transfer_avg_tasks() == SIMCSE_TRANSFER
    mteb = {n: t.mteb_name for n, t in TASKS.items() if t.mteb_name}
    assert mteb == {t: t for t in SIMCSE_STS[:-1]} | {"SICKRelatedness": "SICK-R"}
    assert [t.name for t in tasks.group("sts") if t.subsets] == SIMCSE_STS[:5]
    assert TASKS.get("sick-r").name == "SICKRelatedness" and TASKS.get("STS-B").name == (
        "STSBenchmark"
    )
    assert "STS12: SemEval-2012 Task 6" in TASKS.help()  # the description is the help text


def test_a_record_checks_its_kind_and_loader():
    with pytest.raises(ValueError, match="kind 'regression'"):
        Task("X", "regression", lambda *a: None)
    with pytest.raises(ValueError, match="loader must be callable"):
        Task("X", "sts", None)


def test_user_code_must_be_a_task_record(toy_module):
    assert tasks.resolve(f"{toy_module}:TOY").name == "TOY"
    with pytest.raises(UnknownUnit, match="expected an embeval Task record"):
        tasks.resolve(f"{toy_module}:NOT_A_TASK")
    with pytest.raises(UnknownUnit, match="has no 'TYPO'"):
        tasks.resolve(f"{toy_module}:TYPO")
    with pytest.raises(DataError, match="is a sts task; expected one of kind transfer"):
        tasks.resolve(f"{toy_module}:TOY", kinds=("transfer",))


def test_a_loader_returning_the_wrong_record_is_refused(tmp_path):
    task = Task("BAD", "sts", lambda root, split, protocol: [("a", "b", 1.0)])
    with pytest.raises(DataError, match="'BAD': its loader returned list; a sts task loads"):
        tasks.load(task, "test", tmp_path)


# ------------------------------------------------------------------------ user task, CLI


def test_user_task_through_the_cli_is_scored_and_stays_out_of_avg(
    tiny_ckpt, tiny_data, tmp_path, toy_module
):
    """`--tasks sts,toytasks:TOY`: TOY's Spearman is scipy's on the cosines of the checkpoint's
    own embeddings of its pairs; Avg. is the same as a run of the seven STS tasks alone."""
    write_toy_pairs(tiny_data)
    out, alone = tmp_path / "with-toy.json", tmp_path / "sts.json"
    res = invoke("score", tiny_ckpt, "--tasks", f"sts,{toy_module}:TOY", "--data", tiny_data,
                 "--out", out, "--no-cache")  # fmt: skip
    assert res.exit_code == 0, res.output
    res2 = invoke("score", tiny_ckpt, "--tasks", "sts", "--data", tiny_data, "--out", alone,
                  "--no-cache")  # fmt: skip
    assert res2.exit_code == 0, res2.output
    run, base = load_run(out), load_run(alone)
    assert list(run.tasks) == [*SIMCSE_STS, "TOY"] and run.tasks["TOY"]["n"] == len(TOY_PAIRS)

    enc = TransformerEncoder.from_checkpoint(str(tiny_ckpt), progress=False)
    a = enc.encode([p[0] for p in TOY_PAIRS])  # (6, D)
    b = enc.encode([p[1] for p in TOY_PAIRS])  # (6, D)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = 100 * spearmanr(cos, [p[2] for p in TOY_PAIRS])[0]
    assert run.tasks["TOY"]["spearman"] == pytest.approx(expected, abs=1e-9)
    assert abs(expected) < 100  # a real correlation, not a degenerate +-1

    assert run.avg is not None and run.avg == base.avg
    assert run.avg == metrics.simcse_average([run.tasks[t]["spearman"] for t in SIMCSE_STS])
    assert "TOY" in res.output  # printed with the STS rows, before the unchanged Avg. row
    assert res.output.index("TOY") < res.output.index("Avg. (SimCSE)")
    assert "data_checksums" in run.meta and "TOY" in run.meta["data_checksums"]


def test_user_task_alone_has_no_avg(tiny_data, fake_encoder, toy_module):
    write_toy_pairs(tiny_data)
    run = score(fake_encoder, [f"{toy_module}:TOY"], root=tiny_data)
    assert list(run.tasks) == ["TOY"] and run.avg is None and run.transfer_avg is None


# ------------------------------------------------------------------------ averages


def test_a_registered_sts_task_not_flagged_leaves_avg_unchanged(tiny_data, fake_encoder):
    """Registered, the toy task joins the `sts` group and the default run, and is scored;
    the average stays the mean of the seven flagged tasks."""
    before = score(fake_encoder, root=tiny_data)
    write_toy_pairs(tiny_data)

    tasks.register(Task("TOY2", "sts", load_toy2, description="A registered toy task."))
    try:
        assert [t.name for t in tasks.select(["sts"])] == [*SIMCSE_STS, "TOY2"]
        after = score(fake_encoder, root=tiny_data)
    finally:
        TASKS.remove("TOY2")
    assert "TOY2" in after.tasks and "TOY2" not in before.tasks
    assert after.avg == before.avg
    assert [after.tasks[t]["spearman"] for t in SIMCSE_STS] == [
        before.tasks[t]["spearman"] for t in SIMCSE_STS
    ]


def test_a_registered_transfer_task_not_flagged_leaves_the_transfer_avg_unchanged():
    seven = {t: {"accuracy": 80.0 + i} for i, t in enumerate(SIMCSE_TRANSFER)}
    tasks.register(Task("TOYCLF", "transfer", lambda *a: None))
    try:
        with_toy = transfer.transfer_average({**seven, "TOYCLF": {"accuracy": 0.0}})
    finally:
        TASKS.remove("TOYCLF")
    assert with_toy == transfer.transfer_average(seven) == pytest.approx(83.0)


# ------------------------------------------------------------------------ str paths


def test_every_path_taking_function_accepts_str(tmp_path, fake_encoder, monkeypatch):
    """Each public function of the data layer (and score) that takes a path, given a str."""
    root = write_tiny_sts(tmp_path / "data")
    write_tiny_transfer(root)
    (root / "evalrank").mkdir()
    (root / "evalrank" / "pos_pair.txt").write_text("a b\tb a\n")
    (root / "evalrank" / "background_sent.txt").write_text("c d\n")
    r = str(root)
    assert paths.data_root(r) == root and isinstance(paths.data_root(r), Path)
    monkeypatch.setenv("EMBEVAL_DATA", r)
    assert paths.where_looked(r).startswith(f"{root} is $EMBEVAL_DATA.")
    monkeypatch.delenv("EMBEVAL_DATA")
    assert sts.sts_folder(r) == root / "sts"
    assert sts.sts_folder(str(root / "sts")) == root / "sts"
    d = sts.load_sts("STSBenchmark", "dev", root=r)
    assert isinstance(d, STSData) and len(d) == 4
    assert paths.checksum([str(f) for f in d.files]) == paths.checksum(d.files)
    assert transfer_data.transfer_folder(r) == root / "transfer"
    assert len(transfer_data.load_transfer("TREC", r).splits["test"]) > 0
    for name, task in TASKS.items():  # every registered loader, and the generic load
        assert task.loader(r, "test", "simcse").task == name
        assert tasks.load(name, "test", r).task == name
    run = score(fake_encoder, ["stsb", "MR"], root=r)
    assert set(run.tasks) == {"STSBenchmark", "MR"} and run.meta["data_root"] == r

    # download/verify: a manifest of one file, and every transfer output present (no network)
    (root / "transfer" / "MRPC" / "msr_paraphrase_train.txt").write_text("x\n")
    manifest = tmp_path / "MANIFEST.sha256"
    sha = hashlib.sha256(b"x\n").hexdigest()
    manifest.write_text(f"{sha}  transfer/MRPC/msr_paraphrase_train.txt\n")
    assert dl.read_manifest(str(manifest)) == {"transfer/MRPC/msr_paraphrase_train.txt": sha}
    assert dl.verify(r, ["transfer"], str(manifest)) == ([], [], 1)
    for src in sources():
        for rel in src.outputs:
            if rel.startswith("transfer/"):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                if not (root / rel).exists():
                    (root / rel).write_text("x\n")
    status = dl.download(r, ["transfer"], manifest=str(manifest), progress=False)
    assert set(status.values()) == {"present"}
    src = tmp_path / "archive.bin"
    src.write_bytes(b"payload")
    got = dl.fetch(src.as_uri(), str(tmp_path / "got" / "archive.bin"), progress=False)
    assert got.read_bytes() == b"payload"
