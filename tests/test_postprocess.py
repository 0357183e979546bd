"""Post-processors as encoder wrappers: Normalize equals the old in-model normalisation, a fitted
post-processor is fitted per task in `score` and recorded, names are checked at parse time.

The toy fitted unit is mean-centring (`Center`, defined here): fitted on the target task's
sentences, it subtracts their mean vector. Its figures are recomputed below with numpy alone.
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import FakeEncoder
from scipy.stats import spearmanr

from embeval.cli import main
from embeval.eval.data.sts import load_sts
from embeval.eval.encoders.postprocess import (
    POSTPROCESSORS,
    Normalize,
    PostProcessed,
    split_fitted,
)
from embeval.eval.scoring.score import score
from embeval.registry import UnknownUnit
from embeval.results.files import run_differences, run_settings


class Center:
    """Subtract the mean vector of the fit set (a toy fitted post-processor)."""

    fit_on = "target"

    def __init__(self, mean=None):
        self.mean = mean

    def fit(self, x):
        return Center(x.mean(0))

    def transform(self, x):
        return x - self.mean


@pytest.fixture
def center():
    POSTPROCESSORS.add("center-test", Center)
    yield "center-test"
    POSTPROCESSORS.remove("center-test")


class Raw(FakeEncoder):
    """FakeEncoder's vectors times 1..N per row: not unit length, so Normalize has work."""

    def encode(self, sentences):
        x = super().encode(sentences)
        scale = np.array([1 + len(s) % 5 for s in sentences], np.float32)[:, None]
        return x * scale


@pytest.mark.parametrize("dim", [384, 100, 16])
def test_normalize_equals_the_old_in_model_normalisation(dim):
    """The old path: torch.nn.functional.normalize on each batch inside the encoder (as
    sentence-transformers' Normalize). The wrapper gives the same vectors bit for bit (transfer
    classifiers move on 1-ulp changes), unit norms, and the cosines of the raw vectors."""
    sents = [f"sentence {i} " + "w" * (i % 7) for i in range(300)]
    raw = Raw(dim).encode(sents)
    got = PostProcessed(Raw(dim), "normalize").encode(sents)
    old = torch.nn.functional.normalize(torch.from_numpy(raw), dim=-1).numpy()
    np.testing.assert_array_equal(got, old)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    cos = (raw[:150] * raw[150:]).sum(1) / np.linalg.norm(raw[:150], axis=1)
    cos /= np.linalg.norm(raw[150:], axis=1)
    np.testing.assert_allclose((got[:150] * got[150:]).sum(1), cos, atol=1e-6)
    assert Normalize().transform(np.zeros((1, 3), np.float32)).tolist() == [[0, 0, 0]]


def test_normalize_wrapper_is_recorded_and_forwards_the_inner_encoder():
    enc = PostProcessed(Raw(), "normalize")
    d = enc.describe()
    assert d["normalize"] is True and d["postprocess"] == [{"name": "normalize", "fit_on": None}]
    assert enc.fingerprint == "fake-encoder-v1;normalize" and enc.dim == 16  # forwarded
    assert split_fitted(enc) == (enc, [])  # nothing fitted: the chain is encoded whole


def _other_sick(root):
    """Give SICK-R test other sentences than STS-B, so per-task fitting differs from a joint one."""
    sick = root / "sts" / "SICK" / "SICK_test_annotated.txt"
    rows = sick.read_text().splitlines()
    words = ["sun", "moon", "tree", "river", "stone", "cloud", "bird", "fish"]
    out = [rows[0]]
    for i, row in enumerate(rows[1:]):
        cols = row.split("\t")
        cols[1], cols[2] = f"the {words[i]} shines", f"a {words[-1 - i]} swims"
        out.append("\t".join(cols))
    sick.write_text("\n".join(out) + "\n")


def centred_by_hand(task, root, raw):
    """Cosines of the task's pairs after subtracting the mean over the task's own distinct
    sentences, and the Spearman x100 (numpy and scipy only)."""
    d = load_sts(task, "test", root)
    unique = list(dict.fromkeys([*d.s1, *d.s2]))
    mean = raw.encode(unique).astype(np.float64).mean(0)
    a, b = raw.encode(d.s1) - mean, raw.encode(d.s2) - mean
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos, 100 * spearmanr(cos, d.gold)[0], len(unique)


def test_fitted_post_processor_is_fitted_per_task_in_score(tiny_data, center):
    """Normalize, then Center fitted on each task's sentences: every task's similarities and
    Spearman equal the numpy computation with that task's own mean (not the run's joint one),
    the diagnostics use STS-B's centred vectors, and the results record the chain with the fit
    set and its size per task."""
    _other_sick(tiny_data)
    raw = PostProcessed(Raw(), "normalize")  # the chain below the fitted step
    enc = PostProcessed(raw, center)
    assert split_fitted(enc) == (raw, [enc])
    run = score(enc, ["STSBenchmark", "SICKRelatedness"], root=tiny_data)
    sizes = {}
    for task in ("STSBenchmark", "SICKRelatedness"):
        cos, rho, n = centred_by_hand(task, tiny_data, raw)
        np.testing.assert_allclose(run.pairs[task]["sim"], cos, atol=1e-6)
        assert run.tasks[task]["spearman"] == pytest.approx(rho, abs=1e-6)
        sizes[task] = n
    # Fitted once on the run's whole sentence list, SICK-R's similarities would be these:
    both = [load_sts(t, "test", tiny_data) for t in sizes]
    mean = raw.encode(list(dict.fromkeys(s for d in both for s in (*d.s1, *d.s2)))).mean(0)
    a, b = raw.encode(both[1].s1) - mean, raw.encode(both[1].s2) - mean
    joint = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert not np.allclose(run.pairs["SICKRelatedness"]["sim"], joint, atol=1e-3)
    assert run.meta["postprocess"] == [
        {"name": "normalize", "fit_on": None},
        {"name": "center-test", "fit_on": "target", "fit_size": sizes},
    ]
    assert run.meta["normalize"] is True
    d = load_sts("STSBenchmark", "test", tiny_data)
    unique = list(dict.fromkeys([*d.s1, *d.s2]))
    x = raw.encode(unique) - raw.encode(unique).mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)[np.triu_indices(len(x), 1)]  # distinct pairs
    uniformity = np.log(np.exp(-2 * d2).mean())  # Wang & Isola, t = 2
    assert run.diagnostics["uniformity"] == pytest.approx(uniformity, abs=1e-5)


def test_a_post_processor_fitted_on_a_file(tiny_data, tmp_path):
    """fit_on a file: the file's sentences are encoded in the run's one encode call (a sharded
    run's ranks all take part), the mean is theirs for every task, and the size is recorded."""
    fit = tmp_path / "fit.txt"
    fit.write_text("one sentence\n\nanother one\nand a third\n")
    unit = type("CenterOnFile", (Center,), {"fit_on": str(fit)})
    POSTPROCESSORS.add("center-file-test", unit)
    try:
        inner = Raw()
        enc = PostProcessed(inner, "center-file-test")
        run = score(enc, ["STSBenchmark"], root=tiny_data)
        fit.rename(tmp_path / "gone.txt")
        with pytest.raises(ValueError, match="neither 'target' nor an existing file"):
            PostProcessed(inner, "center-file-test")
    finally:
        POSTPROCESSORS.remove("center-file-test")
    assert len(inner.calls) == 1 and "another one" in inner.calls[0]  # one encode call
    mean = Raw().encode(["one sentence", "another one", "and a third"]).mean(0)
    d = load_sts("STSBenchmark", "test", tiny_data)
    a, b = Raw().encode(d.s1) - mean, Raw().encode(d.s2) - mean
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(run.pairs["STSBenchmark"]["sim"], cos, atol=1e-6)
    assert run.meta["postprocess"] == [
        {"name": "center-file-test", "fit_on": str(fit), "fit_size": 3}
    ]


def test_plain_encode_fits_on_the_sentences_given(center):
    enc = PostProcessed(Raw(), center)
    got = enc.encode(["a", "bb", "ccc"])
    raw = Raw().encode(["a", "bb", "ccc"])
    np.testing.assert_allclose(got, raw - raw.mean(0), atol=1e-6)


def test_postprocess_is_part_of_what_makes_a_run_the_same_run():
    """A centred run must not silently replace an uncentred one's file; a file from before the
    chain was recorded compares as Normalize alone when it says normalize."""
    meta = {"fingerprint": "f", "normalize": True}
    old = run_settings(meta, ["STSBenchmark"])
    now = run_settings({**meta, "postprocess": [{"name": "normalize", "fit_on": None}]}, ["x"])
    assert run_differences(old, {**now, "tasks": old["tasks"]}) == []
    centred = {**meta, "postprocess": [{"name": "c", "fit_on": "target", "fit_size": {"a": 3}}]}
    assert run_differences(old, run_settings(centred, ["STSBenchmark"])) == [
        "postprocess: ['normalize'] vs ['c (fit on target)']"
    ]


def test_cli_postprocess_from_user_code(tiny_data, tmp_path, monkeypatch):
    """`embeval score --postprocess my_pp:Center` on a random tiny checkpoint: the results
    record the chain, the figure equals the numpy computation on the uncentred vectors, and an
    unknown name is refused before any encoding with a suggestion."""
    from embeval.core.model import random_tiny, save_checkpoint
    from embeval.eval.encoders.chain import build_encoder

    (tmp_path / "my_pp.py").write_text(
        textwrap.dedent(
            """
            class Center:
                fit_on = "target"
                def __init__(self, mean=None):
                    self.mean = mean
                def fit(self, x):
                    return Center(x.mean(0))
                def transform(self, x):
                    return x - self.mean
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_pp", raising=False)
    backbone, tok = random_tiny(seed=1)
    ckpt = save_checkpoint(backbone, tok, tmp_path / "ckpt", "avg", 32, normalize=True)
    out = tmp_path / "r.json"
    args = ["score", str(ckpt), "--tasks", "stsb", "--data", str(tiny_data), "--no-cache"]
    res = CliRunner().invoke(main, [*args, "--postprocess", "my_pp:Center", "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads(out.read_text())["meta"]
    raw = build_encoder(str(ckpt), no_cache=True, progress=False)  # Normalize, not centred
    _, rho, n = centred_by_hand("STSBenchmark", tiny_data, raw)
    assert meta["postprocess"] == [
        {"name": "normalize", "fit_on": None},
        {"name": "my_pp:Center", "fit_on": "target", "fit_size": {"STSBenchmark": n}},
    ]
    assert n == 6  # the tiny STS-B's distinct sentences
    spearman = json.loads(out.read_text())["tasks"]["STSBenchmark"]["spearman"]
    assert spearman == pytest.approx(rho, abs=1e-4)

    bad = CliRunner().invoke(main, [*args, "--postprocess", "normalise"])
    assert bad.exit_code == 2 and "did you mean 'normalize'" in bad.output, bad.output
    with pytest.raises(UnknownUnit, match="expected a class with transform"):
        POSTPROCESSORS.get("json:__version__")


def test_help_lists_post_processors():
    res = CliRunner().invoke(main, ["score", "--help"], terminal_width=1000)
    text = " ".join(res.output.split())
    assert "normalize: Unit length: x / max(||x||, 1e-12) per row" in text
    assert "package.module:name" in text


@pytest.mark.parametrize("normalize", [False, True])
def test_training_evaluation_builds_the_score_chain(tiny_data, monkeypatch, normalize):
    """The Trainer's STS-B dev scorer encodes through build_encoder, as `embeval score` will
    encode the saved checkpoint: Normalize when the checkpoints will declare it, never cached
    (the weights change as it trains)."""
    import embeval.eval.scoring.score as score_mod
    from embeval.cli import train as cli_train
    from embeval.core.model import SentenceModel, random_tiny

    seen, real = [], score_mod.score

    def spy(encoder, *a, **k):
        seen.append(encoder.describe())
        return real(encoder, *a, **k)

    monkeypatch.setattr(score_mod, "score", spy)
    backbone, tok = random_tiny(seed=0)
    evaluate = cli_train.stsb_dev_evaluator(tok, tiny_data, "cpu", 8, normalize=normalize)
    got = evaluate(SentenceModel(backbone, "avg").eval())
    # STS-B dev, and the geometry `embeval reproduce` follows over steps (its collapse warning)
    assert set(got) == {"stsb_dev", "alignment", "uniformity", "anisotropy", "effective_rank"}
    assert seen[0]["normalize"] is normalize and "cache_dir" not in seen[0]
    assert seen[0]["postprocess"] == [{"name": "normalize", "fit_on": None}] * normalize
