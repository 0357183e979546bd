"""STS readers: pair counts on the real data, traps of the formats, and errors on bad lines."""

import pytest

from embeval.eval.data.paths import DataError
from embeval.eval.data.sts import load_sts
from embeval.eval.data.tasks import resolve

# Pair counts from ../shared/data/README.md (a pair counts when its gold line is not empty).
EXPECTED = {
    ("STS12", "test"): 3108,
    ("STS13", "test"): 1500,
    ("STS14", "test"): 3750,
    ("STS15", "test"): 3000,
    ("STS16", "test"): 1186,
    ("STSBenchmark", "train"): 5749,
    ("STSBenchmark", "dev"): 1500,
    ("STSBenchmark", "test"): 1379,
    ("SICKRelatedness", "train"): 4500,
    ("SICKRelatedness", "dev"): 500,
    ("SICKRelatedness", "test"): 4927,
}


@pytest.mark.parametrize(("task", "split"), list(EXPECTED))
def test_real_pair_counts(shared_data, task, split):
    d = load_sts(task, split, shared_data)
    assert len(d) == len(d.s2) == len(d.gold) == len(d.subset) == EXPECTED[task, split]
    lo, hi = (1, 5) if task == "SICKRelatedness" else (0, 5)
    assert d.gold.min() >= lo and d.gold.max() <= hi
    assert not any("\r" in s for s in d.s1 + d.s2)


def test_raw_protocol_and_mteb_sick(shared_data):
    raw = load_sts("STSBenchmark", "test", shared_data, protocol="mteb")
    tok = load_sts("STSBenchmark", "test", shared_data)
    assert len(raw) == len(tok) == 1379
    assert raw.s1 != tok.s1  # raw keeps case and is not tokenized
    assert list(raw.gold) == list(tok.gold)
    assert len(load_sts("sickr", "test", shared_data, protocol="mteb")) == 9927
    with pytest.raises(DataError, match="holds the simcse protocol's text, not mteb's"):
        load_sts("STSBenchmark", "test", shared_data / "sts", protocol="mteb")
    with pytest.raises(DataError, match="holds the mteb protocol's text, not simcse's"):
        load_sts("STSBenchmark", "test", shared_data / "sts-raw")
    assert len(load_sts("STSBenchmark", "test", shared_data / "sts")) == 1379  # the folder itself
    with pytest.raises(DataError, match="one test set .* no 'dev' split"):
        load_sts("sickr", "dev", shared_data, protocol="mteb")  # would score its test pairs


def test_subsets_and_unscored_pairs(tiny_data):
    d = load_sts("STS12", root=tiny_data)
    assert len(d) == 5 * 4  # the unscored 5th line of each subset is dropped
    assert d.subset[:4] == ["MSRpar"] * 4 and d.subset[-1] == "surprise.SMTnews"


def test_sick_crlf_is_stripped(tiny_data):
    d = load_sts("SICKRelatedness", "test", tiny_data)
    assert d.s2[0] == "a cat sits" and not d.s2[-1].endswith("\r")


def test_stsb_quotes_are_literal(tiny_data):
    f = tiny_data / "sts" / "STSBenchmark" / "sts-test.csv"
    f.write_text('g\tf\ty\t1\t2.0\the said "hi\tshe "left\n')
    d = load_sts("stsb", "test", tiny_data)
    assert d.s1 == ['he said "hi'] and d.s2 == ['she "left']


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("stsb", "STSBenchmark"),
        ("STS-B", "STSBenchmark"),
        ("sickr", "SICKRelatedness"),
        ("sts12", "STS12"),
    ],
)
def test_aliases(alias, name):
    assert resolve(alias).name == name


def test_unknown_task_suggests_closest():
    with pytest.raises(DataError, match="did you mean STSBenchmark"):
        resolve("STSBenchmrk")


def test_malformed_line_names_file_and_line(tiny_data):
    f = tiny_data / "sts" / "STSBenchmark" / "sts-dev.csv"
    f.write_text(f.read_text() + "only\tthree\tfields\n")
    with pytest.raises(DataError, match=r"sts-dev\.csv:5: expected 7"):
        load_sts("STSBenchmark", "dev", tiny_data)


def test_gold_not_a_number(tiny_data):
    f = tiny_data / "sts" / "STS13-en-test" / "STS.gs.headlines.txt"
    f.write_text("5.0\nhigh\n1\n2\n\n")
    with pytest.raises(
        DataError, match=r"STS\.gs\.headlines\.txt:2: gold score 'high' is not a number"
    ):
        load_sts("STS13", root=tiny_data)


def test_empty_sentence_is_an_error(tiny_data):
    f = tiny_data / "sts" / "SICK" / "SICK_trial.txt"
    lines = f.read_text().splitlines()
    lines[2] = "1\t \tsomething\t3.0\tNEUTRAL"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"SICK_trial\.txt:3: sentence_A is empty"):
        load_sts("SICKRelatedness", "dev", tiny_data)


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=r"looked in .*embeval data download"):
        load_sts("STS12", root=tmp_path)


def test_sts_years_have_only_test(tiny_data):
    with pytest.raises(DataError, match="only a test split"):
        load_sts("STS14", "dev", tiny_data)
