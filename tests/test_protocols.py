"""`--protocol simcse|mteb`, `--limit` (partial runs), transfer tasks inside `embeval score`,
and results schema 2 reading schema-1 files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_transfer import KeywordEncoder, write_tiny_transfer

from embeval.cli import main
from embeval.cli.score import format_table
from embeval.eval.data.paths import DataError
from embeval.eval.data.sts import load_sts
from embeval.eval.scoring import transfer
from embeval.eval.scoring.score import score, select_tasks
from embeval.results.files import SCHEMA_VERSION, load_run, save_run

HISTORIC = Path(__file__).parent / "historic_results"
SERIAL = transfer.TransferConfig(n_jobs=1)

TRANSFER_TASKS = ["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"]  # SimCSE Table 2's order


@pytest.fixture
def mixed_data(tiny_data):
    """The tiny STS tree of conftest plus the separable transfer tree, side by side."""
    return write_tiny_transfer(tiny_data)


# -------------------------------------------------------------------------------- protocols


def test_mteb_protocol_reads_raw_text_and_all_sick(shared_data):
    simcse = load_sts("STSBenchmark", "test", shared_data, "simcse")
    mteb = load_sts("STSBenchmark", "test", shared_data, "mteb")
    assert len(simcse) == len(mteb) == 1379
    assert simcse.s1[0] == simcse.s1[0].lower() and mteb.s1[0] != mteb.s1[0].lower()
    assert len(load_sts("SICK-R", "test", shared_data, "mteb")) == 9927
    assert len(load_sts("SICK-R", "test", shared_data, "simcse")) == 4927


def test_protocol_recorded_in_results(fake_encoder, tiny_data, tmp_path):
    (tiny_data / "sts-raw").symlink_to(tiny_data / "sts")  # same pairs, other protocol folder
    for protocol in ("simcse", "mteb"):
        run = score(fake_encoder, ["sickr"], root=tiny_data, protocol=protocol)
        back = load_run(save_run(run, tmp_path / f"{protocol}.json"))
        assert back.meta["protocol"] == protocol
    # mteb's SICK-R is train + trial + test of the tiny tree: 3 x 4 pairs
    assert back.tasks["SICKRelatedness"]["n"] == 12 and back.tasks["SICKRelatedness"]["split"]


def test_unknown_protocol(fake_encoder, tiny_data):
    with pytest.raises(DataError, match="unknown protocol 'senteval'"):
        score(fake_encoder, ["stsb"], root=tiny_data, protocol="senteval")


def test_cli_limit_marks_partial(tiny_data, tmp_path):
    ckpt = tmp_path / "ckpt"
    from embeval.core.model import random_tiny, save_checkpoint

    save_checkpoint(*random_tiny(seed=0), ckpt, "avg", 32)
    out = tmp_path / "r.json"
    args = ["score", str(ckpt), "--data", str(tiny_data), "--tasks", "stsb", "--limit", "3"]
    res = CliRunner().invoke(main, [*args, "--out", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    run = load_run(out)
    assert run.meta["partial"] is True and run.meta["limit"] == 3
    assert run.tasks["STSBenchmark"]["n"] == 3
    res = CliRunner().invoke(main, [*args[:-2], "--out", str(out), "--no-cache"])
    assert res.exit_code == 2 and "limit: 3 vs None" in res.output  # another run: not replaced
    res = CliRunner().invoke(main, [*args[:-2], "--out", str(out), "--no-cache", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert load_run(out).meta["partial"] is False and load_run(out).meta["limit"] is None


# ------------------------------------------------------------------------ transfer in score


def test_task_groups_and_mixing():
    assert select_tasks(["transfer"], "test") == list(TRANSFER_TASKS)
    assert select_tasks(None, "dev") == ["STSBenchmark", "SICKRelatedness"]
    assert select_tasks(None, "dev", "mteb") == ["STSBenchmark"]  # MTEB's SICK-R: test only
    assert select_tasks(["stsb", "mr", "Trec"], "test") == ["STSBenchmark", "MR", "TREC"]
    assert len(select_tasks(["sts", "transfer"], "test")) == 14
    with pytest.raises(DataError, match="did you mean MRPC"):
        select_tasks(["MRCP"], "test")


def test_score_mixes_sts_and_transfer(mixed_data, tmp_path):
    enc = KeywordEncoder()
    run = score(enc, ["stsb", "transfer"], root=mixed_data, transfer_config=SERIAL)
    assert list(run.tasks) == ["STSBenchmark", *TRANSFER_TASKS]
    assert len(enc.calls) == 1  # one encoder call for every distinct sentence of every task
    assert all(run.tasks[t]["accuracy"] == 100.0 for t in TRANSFER_TASKS)
    assert run.tasks["MRPC"]["f1"] == 100.0 and run.transfer_avg == 100.0
    assert run.meta["transfer"]["seed"] == 1111 and "MR" in run.meta["data_checksums"]
    back = load_run(save_run(run, tmp_path / "mixed.json"))
    assert back.transfer_avg == 100.0 and back.tasks == json.loads(json.dumps(run.tasks))
    assert set(back.load_pairs()) == {"STSBenchmark"}  # transfer tasks have no pairs
    table = format_table(back)
    assert "Avg. (transfer)" in table and "MRPC" in table and "STSBenchmark" in table


def test_transfer_average_only_with_all_seven(mixed_data):
    run = score(KeywordEncoder(), ["MR", "TREC"], root=mixed_data, transfer_config=SERIAL)
    assert run.transfer_avg is None and run.avg is None


def test_transfer_needs_test_split(mixed_data):
    with pytest.raises(DataError, match="score them with --split test"):
        score(KeywordEncoder(), ["stsb", "MR"], split="dev", root=mixed_data)


def test_limit_applies_to_transfer_and_marks_partial(mixed_data):
    run = score(KeywordEncoder(), ["MR", "SST2"], root=mixed_data, limit=24, transfer_config=SERIAL)
    assert run.tasks["MR"]["n"] == 24 and run.tasks["SST2"]["n_train"] == 24
    assert run.meta["partial"] is True


def test_cli_score_transfer(mixed_data, tmp_path):
    """CLI end to end on a real (random tiny) checkpoint: the command wires transfer tasks."""
    from embeval.core.model import random_tiny, save_checkpoint

    ckpt = save_checkpoint(*random_tiny(seed=0), tmp_path / "ckpt", "avg", 32)
    out = tmp_path / "t.json"
    res = CliRunner().invoke(
        main,
        ["score", str(ckpt), "--data", str(mixed_data), "--tasks", "TREC,stsb"]
        + ["--out", str(out), "--no-cache"],
    )
    assert res.exit_code == 0, res.output
    assert "transfer task" in res.output and "TREC" in res.output
    trec = load_run(out).tasks["TREC"]
    assert 0 <= trec["accuracy"] <= 100 and trec["split"] == "test" and trec["n"] == 90


# --------------------------------------------------------------------------------- schema


def test_schema_1_file_still_loads(tmp_path):
    """A real schema-1 file, written by `embeval score --tasks STSBenchmark --split dev --limit
    200` (all-MiniLM-L6-v2) before schema 2 existed, loads as the current schema."""
    src = HISTORIC / "schema1-minilm-stsb-dev-limit200.json"
    assert json.loads(src.read_text())["schema_version"] == 1
    run = load_run(src)
    assert run.schema_version == SCHEMA_VERSION == 3
    assert run.transfer_avg is None and run.meta["partial"] is True
    assert run.tasks["STSBenchmark"]["n"] == 200
    assert run.tasks["STSBenchmark"]["spearman"] == pytest.approx(93.62, abs=0.005)
    assert len(run.load_pairs()["STSBenchmark"]["sim"]) == 200
    # re-saved (pairs included), it is a file of the current schema
    again = load_run(save_run(run, tmp_path / "again.json"))
    assert json.loads((tmp_path / "again.json").read_text())["schema_version"] == 3
    assert again.tasks == run.tasks
