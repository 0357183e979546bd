"""EvalRank: the rank metric on a pool ranked by hand, the reader, scoring and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import scored_run

from embeval.eval.data import tasks
from embeval.eval.data.paths import DataError
from embeval.eval.metrics import ranking
from embeval.eval.report import build as report
from embeval.eval.report import export
from embeval.eval.scoring.score import score
from embeval.results.files import load_run
from embeval.results.records import RankingScore

# Six 4-d unit vectors whose dot products are exact in float32 (multiples of 1/4), so ties are
# exact ties whatever order a matrix product sums in. p3 repeats p2's vector (another sentence).
POOL = np.array(
    [
        [1, 0, 0, 0],  # p0
        [0.5, 0.5, 0.5, 0.5],  # p1
        [0.5, 0.5, 0.5, -0.5],  # p2
        [0.5, 0.5, 0.5, -0.5],  # p3 = p2
        [0, 1, 0, 0],  # p4
        [0.5, -0.5, -0.5, -0.5],  # p5
    ],
    np.float32,
)
# Rows of the dot products, by hand: p0 [1, .5, .5, .5, 0, .5]; p2 [.5, .5, 1, 1, .5, 0];
# p4 [0, .5, .5, .5, 1, -.5]; p5 [.5, -.5, 0, 0, -.5, 1].
# (query, positive) -> rank = #{cos > cos(query, positive)}, at least 1:
#   (0, 1): pos .5; above: p0 (1); p2, p3, p5 tie at .5 and do not count      -> 1
#   (2, 1): pos .5; above: p2, p3 (both 1)                                    -> 2
#   (2, 3): pos 1 (same vector); nothing above -> 0, counted as 1             -> 1
#   (4, 5): pos -.5; above: p0 (0), p1, p2, p3 (.5), p4 (1)                   -> 5
#   (5, 2): pos 0; above: p0 (.5), p5 (1); p3 ties                            -> 2
QUERY, POSITIVE = [0, 2, 2, 4, 5], [1, 1, 3, 5, 2]
RANKS = [1, 2, 1, 5, 2]


@pytest.mark.parametrize("chunk", [1024, 2])
def test_ranks_by_hand_with_ties(chunk):
    got = ranking.ranks(POOL, QUERY, POSITIVE, chunk=chunk)
    assert got.tolist() == RANKS


def test_rank_summary_by_hand():
    # MR = 11/5; MRR = (1 + 1/2 + 1 + 1/5 + 1/2) / 5 = 0.64; Hits@1 2/5, @3 4/5, @10 5/5
    got = ranking.rank_summary(np.array(RANKS))
    assert got == pytest.approx(
        {"mr": 2.2, "mrr": 64.0, "hits@1": 40.0, "hits@3": 80.0, "hits@10": 100.0}
    )


def test_center_normalize_by_hand():
    x = np.array([[3, 1], [1, 3], [2, 2]], np.float32)  # mean (2, 2)
    got = ranking.center_normalize(x)  # centred: (1, -1), (-1, 1), (0, 0) -> kept at 0
    h = 1 / np.sqrt(2)
    np.testing.assert_allclose(got, [[h, -h], [-h, h], [0, 0]], atol=1e-7)


def write_evalrank(root: Path, pairs, background) -> Path:
    d = root / "evalrank"
    d.mkdir(parents=True, exist_ok=True)
    (d / "pos_pair.txt").write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    (d / "background_sent.txt").write_text("".join(f"{s}\n" for s in background))
    return root


PAIRS = [("a cat sits", "a cat is sitting"), ("a cat is sitting", "a cat sits"), ("x y", "x y")]
BACKGROUND = ["a cat sits", "dogs run fast", "the sky is blue", "x y", "a red car", "a cat"]


def _by_hand(vectors: dict[str, np.ndarray], pairs) -> list[int]:
    """The protocol written out plainly: pool, centre, normalise, count per pair with loops."""
    pool = []
    for s in [s for p in pairs for s in p] + BACKGROUND:
        if s not in pool:
            pool.append(s)
    x = np.array([vectors[s] for s in pool], np.float64)
    x -= x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    v = dict(zip(pool, x, strict=True))
    out = []
    for s1, s2 in pairs:
        pos = float(v[s1] @ v[s2])
        out.append(max(1, sum(float(v[s1] @ v[p]) > pos + 1e-9 for p in pool)))
    return out


def test_score_evalrank_matches_the_protocol_by_hand(tmp_path, fake_encoder):
    root = write_evalrank(tmp_path / "data", PAIRS, BACKGROUND)
    run = score(fake_encoder, ["evalrank"], root=root, diagnostics=False)
    entry = run.tasks["EvalRank"]
    pool = list(dict.fromkeys([s for p in PAIRS for s in p] + BACKGROUND))
    vectors = dict(zip(pool, fake_encoder.encode(pool), strict=True))
    expected = ranking.rank_summary(np.array(_by_hand(vectors, PAIRS)))
    assert entry["n"] == 3 and entry["pool"] == len(pool) == 7
    assert {k: entry[k] for k in expected} == pytest.approx(expected)
    assert run.avg is None and "EvalRank" in run.meta["data_checksums"]
    # the pair ("x y", "x y"): s2 is s1 itself, rank 0 counts as 1
    assert _by_hand(vectors, PAIRS)[2] == 1


def test_missing_evalrank_data_says_where_it_looked(tmp_path, fake_encoder):
    with pytest.raises(DataError, match=r"no EvalRank data found: looked in .*evalrank"):
        score(fake_encoder, ["EvalRank"], root=tmp_path)
    root = write_evalrank(tmp_path / "d", PAIRS, BACKGROUND)
    (root / "evalrank" / "pos_pair.txt").write_text("one sentence only\n")
    with pytest.raises(DataError, match=r"pos_pair.txt:1: expected two non-empty tab-separated"):
        tasks.load("evalrank", "test", root)


def test_limit_cuts_pairs_and_background(tmp_path, fake_encoder):
    root = write_evalrank(tmp_path / "data", PAIRS, BACKGROUND)
    run = score(fake_encoder, ["evalrank"], root=root, limit=2, diagnostics=False)
    assert run.tasks["EvalRank"]["n"] == 2 and run.meta["partial"]
    assert run.tasks["EvalRank"]["pool"] == len(dict.fromkeys([*PAIRS[0], *BACKGROUND[:2]]))


def test_results_file_report_and_markdown(tmp_path, tiny_data, fake_encoder):
    write_evalrank(tiny_data, PAIRS, BACKGROUND)
    path = scored_run(fake_encoder, tiny_data, tmp_path / "a.json", "fake", ["sts", "evalrank"])
    data = json.loads(path.read_text())
    assert data["schema_version"] == 3
    run = load_run(path)
    rec = run.scores()["EvalRank"]
    assert isinstance(rec, RankingScore) and rec.to_dict() == data["tasks"]["EvalRank"]
    assert set(rec.metrics) == {"mr", "mrr", "hits@1", "hits@3", "hits@10"}
    r = report.build([path], n_boot=0, figures=False)
    (rt,) = r.tables[0].ranking
    assert rt.columns == ["MR", "MRR", "Hits@1", "Hits@3", "Hits@10"]
    assert rt.rows[0].cells["MRR"].value == data["tasks"]["EvalRank"]["mrr"]
    assert "EvalRank (ranking" in report.render_html(r)
    assert "EvalRank (ranking" in export.to_markdown(r)
    csv_rows = [line.split(",") for line in export.to_csv(r).splitlines()]
    mrr = [x for x in csv_rows if x[5] == "EvalRank" and x[6] == "mrr"]
    assert len(mrr) == 1 and float(mrr[0][7]) == pytest.approx(data["tasks"]["EvalRank"]["mrr"])


HISTORIC = Path(__file__).parent / "historic_results"


def test_historic_schema1_and_schema2_files_still_load(tmp_path):
    run = load_run(HISTORIC / "schema1-minilm-stsb-dev-limit200.json")
    assert run.schema_version == 3 and run.transfer_avg is None
    assert "STSBenchmark" in run.scores()
    # written by `embeval score --tasks stsb,MR --limit 200 --jobs 1` (all-MiniLM-L6-v2) at
    # commit 6c7d095, the last one writing schema 2
    src = HISTORIC / "schema2-minilm-stsb-mr-test-limit200.json"
    assert json.loads(src.read_text())["schema_version"] == 2
    run = load_run(src)
    assert run.schema_version == 3 and run.meta.get("sweep") is None
    assert run.tasks["MR"]["accuracy"] == 82.0
    assert run.tasks["STSBenchmark"]["spearman"] == pytest.approx(93.09, abs=0.005)
    assert len(run.load_pairs()["STSBenchmark"]["sim"]) == 200
    r = report.build([src], n_boot=50, figures=False)
    assert r.tables[0].ranking == [] and r.tables[0].other.columns == ["MR"]


def test_download_fetches_the_pinned_files_from_a_mirror(tmp_path):
    from embeval.eval.data import download as dl
    from embeval.eval.data.senteval_sources import EVALRANK_COMMIT, sources

    evalrank = [s for s in sources() if s.name.startswith("EvalRank")]
    assert {s.outputs[0] for s in evalrank} == {
        "evalrank/pos_pair.txt",
        "evalrank/background_sent.txt",
        "evalrank/LICENSE",
    }
    assert all(EVALRANK_COMMIT in s.url and "BinWang28" in s.url for s in evalrank)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("pos_pair.txt", "background_sent.txt", "LICENSE"):
        (mirror / name).write_text(f"{name}\n")
    status = dl.download(
        tmp_path / "root", ["evalrank"], mirror=mirror.as_uri(), manifest=None, progress=False
    )
    assert set(status.values()) == {"fetched"}
    assert (tmp_path / "root" / "evalrank" / "LICENSE").read_text() == "LICENSE\n"


def test_frame_has_the_ranking_figures(tmp_path, fake_encoder):
    from embeval.results import to_frame

    root = write_evalrank(tmp_path / "data", PAIRS, BACKGROUND)
    path = scored_run(fake_encoder, root, tmp_path / "a.json", "fake", ["evalrank"])
    df = to_frame(path, n_boot=0)
    got = dict(zip(df["metric"], df["value"], strict=True))
    entry = load_run(path).tasks["EvalRank"]
    assert got == {k: entry[k] for k in ("mr", "mrr", "hits@1", "hits@3", "hits@10")}
    assert set(df["task"]) == {"EvalRank"} and df["ci_low"].isna().all()
