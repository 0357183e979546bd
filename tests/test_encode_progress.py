"""Encoding progress without a bar: piped output (CI, `make` logs) gets log lines with a rate."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from embeval.cli import main
from embeval.core.model import SentenceModel, random_tiny
from embeval.eval.encoders import transformer as encode
from embeval.eval.encoders.transformer import ProgressLog, TransformerEncoder

SENTS = [f"sentence number {i} " + "word " * (i % 5) for i in range(10)]


@pytest.fixture(scope="module")
def tiny():
    backbone, tok = random_tiny(seed=0)
    return SentenceModel(backbone, "avg").eval(), tok


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "embeval.progress"]


def test_lines_every_n_sentences_and_at_the_end(caplog):
    t = iter([0.0, 1.0, 2.0, 3.0, 4.0])  # a fake clock: one second per batch of 4
    prog = ProgressLog(10, every=5, seconds=1e9, clock=lambda: next(t))
    with caplog.at_level(logging.INFO, "embeval.progress"):
        for n in (4, 4, 2):
            prog.update(n)
    # 4 < 5 since the start: quiet; 8: a line; 10 = total: the last line.
    assert progress_lines(caplog) == [
        "encoding: 8/10 sentences (80%), 4 sent/s",
        "encoding: 10/10 sentences (100%), 3 sent/s",
    ]


def test_a_line_after_a_slow_stretch_even_below_n_sentences(caplog):
    t = iter([0.0, 90.0, 91.0])
    prog = ProgressLog(1000, every=500, seconds=60, clock=lambda: next(t))
    with caplog.at_level(logging.INFO, "embeval.progress"):
        prog.update(10)  # 90 s for 10 long sentences: report
        prog.update(10)  # 1 s later, 10 more: quiet
    assert progress_lines(caplog) == ["encoding: 10/1000 sentences (1%), 0 sent/s"]


def test_encoder_logs_progress_when_stderr_is_not_a_terminal(tiny, caplog, monkeypatch):
    # Under pytest stderr is captured, not a terminal: tqdm draws no bar.
    monkeypatch.setattr(encode, "PROGRESS_EVERY", 4)
    model, tok = tiny
    with caplog.at_level(logging.INFO, "embeval.progress"):
        TransformerEncoder(model, tok, batch_size=2, progress=True).encode(SENTS)
    lines = progress_lines(caplog)
    assert [ln.split(" sentences")[0] for ln in lines] == [
        "encoding: 4/10",
        "encoding: 8/10",
        "encoding: 10/10",
    ]
    assert all(ln.endswith(" sent/s") for ln in lines)


def test_the_last_line_comes_when_texts_tokenize_alike(tiny, caplog, monkeypatch):
    """Texts that tokenize alike are encoded once, so the count is of distinct tokenizations
    (8 here: two texts differ from others only in case under the uncased tokenizer); counting
    the 10 texts never reached the total and the closing 100% line was never logged."""
    monkeypatch.setattr(encode, "PROGRESS_EVERY", 1000)
    model, tok = tiny
    texts = [*SENTS[:8], SENTS[0].upper(), SENTS[1].upper()]
    with caplog.at_level(logging.INFO, "embeval.progress"):
        TransformerEncoder(model, tok, batch_size=3, progress=True).encode(texts)
    assert [ln.split(" sent/s")[0].rsplit(",", 1)[0] for ln in progress_lines(caplog)] == [
        "encoding: 8/8 sentences (100%)"
    ]


def test_progress_false_stays_quiet(tiny, caplog):
    model, tok = tiny
    with caplog.at_level(logging.INFO, "embeval.progress"):
        TransformerEncoder(model, tok, progress=False).encode(SENTS)
    assert progress_lines(caplog) == []


def test_cli_shows_progress_lines_without_verbose(tmp_path):
    logger = logging.getLogger("embeval.progress")
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        CliRunner().invoke(main, ["data", "verify", "--data", str(tmp_path)])
        assert logger.getEffectiveLevel() == logging.INFO
    finally:
        logger.setLevel(before)
