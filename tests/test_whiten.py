"""Whitening (BERT-whitening / WhiteningBERT) as a fitted post-processor.

Golden values are computed here independently of `embeval.eval.encoders.postprocess.whitening`:
with an eigendecomposition (np.linalg.eigh) of a covariance summed by hand instead of np.cov and
the SVD. Eigenvectors are defined up to sign (and, for K = D, the whitened space up to a rotation),
so the tests compare what does not depend on that choice: the cosines between whitened vectors,
and the Mahalanobis products (x - mu)' Sigma^-1 (y - mu) before the final normalisation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEncoder

from embeval.cli import main
from embeval.eval.data.sts import load_sts
from embeval.eval.encoders import postprocess
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.encoders.postprocess import PostProcessed, Whiten, WhiteningError
from embeval.eval.scoring.score import score
from embeval.results.files import load_runs, run_settings, save_run

X = np.array(  # 8 vectors in D = 3, small integers: every step below can be redone on paper
    [[1, 2, 0], [2, 0, 1], [0, 1, 3], [3, 3, 1], [1, 0, 0], [2, 2, 2], [0, 3, 1], [4, 1, 2]],
    np.float32,
)


def by_hand(fit: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Cosines (M, M) between the rows of x whitened on `fit`, first k directions kept."""
    fit = fit.astype(np.float64)
    mu = fit.sum(0) / len(fit)
    c = fit - mu
    sigma = sum(np.outer(r, r) for r in c) / (len(fit) - 1)  # unbiased, as np.cov
    vals, vecs = np.linalg.eigh(sigma)  # ascending
    top = np.argsort(vals)[::-1][:k]
    y = (x - mu) @ vecs[:, top] / np.sqrt(vals[top])  # (M, k)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return y @ y.T


def cosines(y: np.ndarray) -> np.ndarray:
    return y.astype(np.float64) @ y.T.astype(np.float64)


def test_full_whitening_is_the_mahalanobis_geometry_of_the_fit_set():
    """K = D: before normalisation y.y' = (x - mu)' Sigma^-1 (x' - mu); the fit set comes out with
    identity covariance; the output is unit length and float32."""
    w = Whiten().fit(X)
    y = w.transform(X)
    assert y.dtype == np.float32 and y.shape == (8, 3)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-6)
    c = X.astype(np.float64) - X.mean(0)
    sigma_inv = np.linalg.inv(np.cov(c.T))
    raw = (X - w.mu) @ w.w  # before the normalisation
    np.testing.assert_allclose(raw @ raw.T, c @ sigma_inv @ c.T, atol=1e-9)
    np.testing.assert_allclose(np.cov(raw.T), np.eye(3), atol=1e-9)
    np.testing.assert_allclose(cosines(y), by_hand(X, X, 3), atol=1e-6)


def test_whitening_keeps_the_first_k_directions():
    """K = 2 < D = 3: the two largest-variance directions; new vectors use the fit's mu and W."""
    w = Whiten(dim=2).fit(X)
    new = np.array([[1, 1, 1], [0, 2, 5], [3, 0, 2]], np.float32)
    y = w.transform(new)
    assert y.shape == (3, 2)
    np.testing.assert_allclose(cosines(y), by_hand(X, new, 2), atol=1e-6)
    assert not np.allclose(cosines(y), by_hand(X, new, 3), atol=1e-3)  # K matters


def test_singular_covariance_is_an_error_above_its_rank_and_exact_below():
    """Three vectors in D = 4 span a plane around their mean: rank 2. K = 2 is exact; K = 3 or
    all dimensions is a clear error naming --whiten-dim and the rank, never NaN or inf. A
    constant coordinate (zero variance) is a singular direction too."""
    x = np.array([[1, 0, 2, 1], [0, 1, 1, 3], [2, 2, 0, 1]], np.float32)
    y = Whiten(dim=2).fit(x).transform(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(cosines(y), by_hand(x, x, 2), atol=1e-6)
    for dim in (3, None):
        with pytest.raises(WhiteningError, match=r"has rank 2 .*pass --whiten-dim 2 or less"):
            Whiten(dim=dim).fit(x)
    flat = np.c_[X, np.full(len(X), 7.0, np.float32)]  # D = 4, the last one constant
    with pytest.raises(WhiteningError, match="rank 3"):
        Whiten().fit(flat)
    np.testing.assert_allclose(
        cosines(Whiten(dim=3).fit(flat).transform(flat)), by_hand(X, X, 3), atol=1e-6
    )


def test_k_above_the_dimension_is_refused():
    with pytest.raises(WhiteningError, match="--whiten-dim 4 is above the vectors' dimension 3"):
        Whiten(dim=4).fit(X)


def whitened_sims(task, root, enc, fit, k):
    d = load_sts(task, "test", root)
    y1, y2 = (Whiten(dim=k).fit(fit).transform(enc.encode(s)) for s in (d.s1, d.s2))
    return (y1.astype(np.float64) * y2).sum(1)


def test_target_fits_each_task_on_both_sides_of_its_pairs_with_repeats(tiny_data):
    """--whiten target: each task's fit set is s1 + s2 of its pairs, repeated sentences kept
    (bojone's target mode); the run is transductive; the chain records fit set, size and K."""
    enc = FakeEncoder(4)
    run = score(PostProcessed(FakeEncoder(4), "whiten", Whiten()), ["STSBenchmark"], root=tiny_data)
    d = load_sts("STSBenchmark", "test", tiny_data)
    fit = enc.encode([*d.s1, *d.s2])  # 8 rows, "a cat sits" three times
    np.testing.assert_allclose(
        run.pairs["STSBenchmark"]["sim"],
        whitened_sims("STSBenchmark", tiny_data, enc, fit, 4),
        atol=1e-5,
    )
    distinct = enc.encode(list(dict.fromkeys([*d.s1, *d.s2])))  # what a distinct fit would give
    assert not np.allclose(
        run.pairs["STSBenchmark"]["sim"],
        whitened_sims("STSBenchmark", tiny_data, enc, distinct, 4),
        atol=1e-3,
    )
    assert run.meta["postprocess"] == [
        {"name": "whiten", "fit_on": "target", "dim": None, "fit_size": {"STSBenchmark": 8}}
    ]
    assert run.meta["transductive"] is True


def test_a_file_fit_is_one_fit_for_every_task_and_not_transductive(tiny_data, tmp_path):
    fit_file = tmp_path / "fit.txt"
    lines = ["one", "two words", "three small words", "four", "five and more", "six", "one"]
    fit_file.write_text("\n".join(lines) + "\n\n")
    enc = FakeEncoder(4)
    chain = PostProcessed(FakeEncoder(4), "whiten", Whiten(str(fit_file), 3))
    run = score(chain, ["STSBenchmark", "SICKRelatedness"], root=tiny_data)
    fit = enc.encode(lines)  # blank lines skipped, the repeated "one" kept
    for task in ("STSBenchmark", "SICKRelatedness"):
        want = whitened_sims(task, tiny_data, enc, fit, 3)
        np.testing.assert_allclose(run.pairs[task]["sim"], want, atol=1e-5)
    assert run.meta["postprocess"] == [
        {"name": "whiten", "fit_on": str(fit_file), "dim": 3, "fit_size": 7}
    ]
    assert "transductive" not in run.meta
    assert run_settings(run.meta, run.tasks)["postprocess"] == [
        f"whiten (fit on {fit_file}) (dim 3)"
    ]


def test_the_fit_is_cached_beside_the_embeddings_and_keyed_by_fit_set_and_k(
    tiny_data, tmp_path, monkeypatch
):
    """A second run reuses the cached fit (the fitting function is made to fail); another K or
    another fit set (other tasks' pairs, another checkpoint's vectors) writes its own."""
    cache = tmp_path / "cache"

    def run(k, tasks=("STSBenchmark",), enc=None):
        inner = CachedEncoder(enc or FakeEncoder(4), cache)
        return score(PostProcessed(inner, "whiten", Whiten(dim=k)), list(tasks), root=tiny_data)

    first = run(3)
    folder = next(cache.iterdir())
    assert len(list(folder.glob("whiten-*.npz"))) == 1

    def no_fit(*a):
        raise AssertionError("fitted again")

    monkeypatch.setattr(postprocess, "whitening", no_fit)
    again = run(3)
    np.testing.assert_array_equal(
        again.pairs["STSBenchmark"]["sim"], first.pairs["STSBenchmark"]["sim"]
    )
    other = type("Other", (FakeEncoder,), {"fingerprint": "other-model"})(4)  # own cache folder
    cached = next(folder.glob("whiten-*.npz"))
    cached.write_bytes(cached.read_bytes()[:50])  # a damaged fit file is refitted, not fatal
    monkeypatch.undo()
    np.testing.assert_array_equal(
        run(3).pairs["STSBenchmark"]["sim"], first.pairs["STSBenchmark"]["sim"]
    )
    monkeypatch.setattr(postprocess, "whitening", no_fit)
    for k, tasks, enc in [(2, ["STSBenchmark"], None), (3, ["STS12"], None), (3, ["stsb"], other)]:
        with pytest.raises(AssertionError, match="fitted again"):
            run(k, tasks, enc)


def test_report_label_marks_a_transductive_run(tiny_data, tmp_path):
    whitened = score(
        PostProcessed(FakeEncoder(4), "whiten", Whiten()), ["stsb"], root=tiny_data, name="w"
    )
    plain = score(FakeEncoder(4), ["stsb"], root=tiny_data, name="p")
    paths = [save_run(whitened, tmp_path / "w.json"), save_run(plain, tmp_path / "p.json")]
    labels = [label for label, _ in load_runs(paths)[0]]
    assert labels == ["w (transductive)", "p"]


def test_cli_whiten_options_and_their_errors(tiny_data, tmp_path):
    """`embeval score --whiten target --whiten-dim 3` records the fit; a missing or empty fit
    file, K above the dimension or the rank, and --whiten-dim alone fail with exit 2 naming the
    option, the missing file before the model is loaded."""
    from embeval.core.model import random_tiny, save_checkpoint

    backbone, tok = random_tiny(seed=1)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 32, normalize=True)
    args = ["score", str(ckpt), "--tasks", "stsb", "--data", str(tiny_data), "--no-cache"]
    out = tmp_path / "r.json"
    ok = CliRunner().invoke(
        main, [*args, "--whiten", "target", "--whiten-dim", "3", "--out", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    meta = json.loads(out.read_text())["meta"]
    assert meta["postprocess"][-1] == {
        "name": "whiten",
        "fit_on": "target",
        "dim": 3,
        "fit_size": {"STSBenchmark": 8},
    }
    assert meta["postprocess"][0]["name"] == "normalize" and meta["transductive"] is True
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    for extra, message in [
        (["--whiten", str(tmp_path / "nope.txt")], "nope.txt: no such file"),
        (["--whiten", str(empty)], "holds no sentences"),
        (
            ["--whiten", "target", "--whiten-dim", "999"],
            "--whiten-dim 999 is above the vectors' dimension",
        ),
        (["--whiten", "target"], "has rank"),
        (["--whiten-dim", "3"], "--whiten-dim needs --whiten"),
    ]:
        res = CliRunner().invoke(main, [*args, *extra, "--out", str(tmp_path / "x.json")])
        assert res.exit_code == 2 and message in res.output, (extra, res.output)
        assert "--whiten" in res.output
