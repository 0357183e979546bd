"""CI smoke tests: `embeval train` end to end on real data (slow).

1. random-tiny trained with infonce and focal-infonce on the first 11,914 wiki1m sentences
   (unsupervised SimCSE): the loss falls, uniformity improves, and the checkpoint reloads in
   `embeval score` and in sentence-transformers with the same embeddings.
2. random-tiny trained with the same two losses on SNLI (premise, entailment, contradiction)
   triplets: STS-B dev Spearman rises far above the untrained value.
3. The packaged, pretrained all-MiniLM-L6-v2 trained on wiki1m: STS-B dev rises significantly.
4. random-tiny with infonce on wiki1m in the setting tried that lifts it most (avg pooling, tau
   0.1, lr 3e-3, batch 256, 300 steps): STS-B dev rises, 54.93 -> 60.87 (paired bootstrap
   p <= 0.001, none of 1,000 resamples).

What is NOT asserted: that focal-infonce on wiki1m raises a *random* encoder's STS-B dev; it
ends below its start in most settings tried, and docs/random-tiny-sweep.md shows why (sweep,
ablations and controls, `benchmarks/sweep_random_tiny.py`).
Figures are logged in train_log.jsonl and printed (`pytest -s`).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from train_helpers import read_log

from embeval.cli import main

STEPS = 200
NLI_STEPS = 150


@functools.lru_cache(maxsize=2)  # the untrained packaged model is scored once per session
def _dev_pairs(checkpoint, root):
    """(cosine per STS-B dev pair, gold, Spearman x100) for a checkpoint, scored by embeval."""
    from embeval.eval.encoders.transformer import TransformerEncoder
    from embeval.eval.scoring.score import score

    enc = TransformerEncoder.from_checkpoint(checkpoint, progress=False, device="cpu")
    run = score(enc, ["STSBenchmark"], split="dev", root=root, diagnostics=False)
    p = run.pairs["STSBenchmark"]
    return p["sim"], p["gold"], run.tasks["STSBenchmark"]["spearman"]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "focal-infonce"])
def test_train_random_tiny_and_reload_everywhere(loss, shared_data, tmp_path):
    from sentence_transformers import SentenceTransformer

    from embeval.eval.encoders.transformer import TransformerEncoder

    out = tmp_path / loss
    wiki = shared_data / "train" / "wiki1m_for_simcse.first11914.txt"
    args = ["train", "--model", "random-tiny", "--data", str(wiki), "--loss", loss]
    args += ["--out", str(out), "--steps", str(STEPS), "--eval-steps", str(STEPS)]
    args += ["--lr", "5e-4", "--eval-data", str(shared_data), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    log = read_log(out)
    evals = [r for r in log if "stsb_dev" in r]
    assert [r["step"] for r in evals] == [0, STEPS]
    before, after = evals
    print(
        f"\n{loss}: STS-B dev {before['stsb_dev']:.2f} -> {after['stsb_dev']:.2f}, "
        f"uniformity {before['uniformity']:.3f} -> {after['uniformity']:.3f}, "
        f"alignment {before['alignment']:.3f} -> {after['alignment']:.3f}"
    )
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]  # it learns the contrastive task
    assert after["uniformity"] < before["uniformity"] - 0.5  # spreads a near-collapsed start
    assert log[-1]["truncated"] > 0  # wiki lines longer than 32 tokens exist and are counted

    last = out / "last"
    # embeval score on the saved checkpoint reproduces the dev figure measured in training.
    run_json = tmp_path / f"{loss}.json"
    res = CliRunner().invoke(
        main,
        [
            "score",
            str(last),
            "--tasks",
            "STSBenchmark",
            "--split",
            "dev",
            "--no-cache",
            "--data",
            str(shared_data),
            "--out",
            str(run_json),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    scored = json.loads(run_json.read_text())["tasks"]["STSBenchmark"]["spearman"]
    assert scored == pytest.approx(after["stsb_dev"], abs=1e-3)

    # sentence-transformers loads the same folder and gives the same embeddings.
    texts = ["A man is playing a guitar .", "the cat sleeps", "Wikipedia is an encyclopedia."]
    ours = TransformerEncoder.from_checkpoint(str(last), progress=False, device="cpu").encode(texts)
    st = SentenceTransformer(str(last), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, st, atol=1e-5)


@pytest.mark.slow
def test_wiki_infonce_lifts_random_tiny(shared_data, tmp_path):
    """The unsupervised wiki1m setting found that lifts random-tiny most: infonce with avg
    pooling, tau 0.1, lr 3e-3, batch 256, 300 steps, gradient norm clipped at 1 (the default).
    More in-batch negatives is what helps: batch 64 for 500 steps gave 54.93 -> 58.57 (p = 0.011).
    With seed 1 instead of 42 (other initial weights, data order, dropout): 54.2 -> 59.2
    (p = 0.004). focal-infonce falls in these two settings (52.3 at batch 64, 55.7 at batch 256)
    and rises only a little at batch 1024 (58.54, p = 0.017), not under seed 1 (55.2, p = 0.56),
    so it has no such assertion; see the module docstring."""
    from embeval.eval.metrics.stats import paired_bootstrap

    wiki = shared_data / "train" / "wiki1m_for_simcse.first11914.txt"
    common = ["train", "--model", "random-tiny", "--data", str(wiki), "--loss", "infonce"]
    common += ["--lr", "3e-3", "--temp", "0.1", "--pooler", "avg", "--eval-pooler", "avg"]
    common += ["--eval-data", str(shared_data), "--no-progress", "--device", "cpu"]
    common += ["--batch-size", "256", "--eval-steps", "100"]
    for out, steps in ((tmp_path / "untrained", "0"), (tmp_path / "trained", "300")):
        res = CliRunner().invoke(main, [*common, "--out", str(out), "--steps", steps])
        assert res.exit_code == 0, res.output
    evals = [r["stsb_dev"] for r in read_log(tmp_path / "trained") if "stsb_dev" in r]
    before, after = evals[0], evals[-1]  # steps 0 and 300 (also 100, 200)
    sim0, gold, rho0 = _dev_pairs(str(tmp_path / "untrained" / "best"), shared_data)
    sim1, _, rho1 = _dev_pairs(str(tmp_path / "trained" / "last"), shared_data)  # step 300
    p = paired_bootstrap(sim1, sim0, gold)
    print(f"\nrandom-tiny wiki infonce: STS-B dev {before:.2f} -> {after:.2f} (p={p:.4f})")
    assert rho0 == pytest.approx(before, abs=1e-3) and rho1 == pytest.approx(after, abs=1e-3)
    assert after > before + 4.0
    assert p < 0.01


def _nli_without_stsb_dev(root, out):
    """The SNLI triplets minus every row sharing a sentence with STS-B dev (35 of STS-B dev's
    sentences also occur in SNLI dev/test, from which the triplets were built; 43 of the 5,864
    rows go): no leakage."""
    import csv

    from embeval.eval.data.sts import load_sts

    def norm(text):
        return "".join(ch for ch in text.lower() if ch.isalnum())

    dev = load_sts("STSBenchmark", "dev", root)
    seen = {norm(t) for t in dev.s1 + dev.s2}
    with open(root / "train" / "snli_devtest_triplets_for_simcse.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if not any(norm(t) in seen for t in r.values())]
    assert 0 < len(rows) - len(kept) < 100  # some overlap exists and is removed
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sent0", "sent1", "hard_neg"])
        w.writeheader()
        w.writerows(kept)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "focal-infonce"])
def test_nli_training_raises_random_tiny_stsb_dev(loss, shared_data, tmp_path):
    """random-tiny, avg pooling, 150 steps of batch 64 on SNLI triplets (the contradiction as an
    extra negative column), lr 1e-3, tau 0.05. Measured on 2 CPU cores: 54.93 -> 68.95
    (infonce) / 70.08 (focal-infonce). On an H100 (all rows, before gradient clipping): 72.3 / 73.9
    after 500 steps."""
    nli = _nli_without_stsb_dev(shared_data, tmp_path / "nli.csv")
    out = tmp_path / loss
    args = ["train", "--model", "random-tiny", "--data", str(nli), "--loss", loss]
    args += ["--out", str(out), "--steps", str(NLI_STEPS), "--eval-steps", str(NLI_STEPS)]
    args += ["--lr", "1e-3", "--pooler", "avg", "--eval-pooler", "avg"]
    args += ["--eval-data", str(shared_data), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    before, after = [r["stsb_dev"] for r in read_log(out) if "stsb_dev" in r]
    print(f"\nrandom-tiny NLI {loss}: STS-B dev {before:.2f} -> {after:.2f}")
    assert after > before + 8


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["infonce", "focal-infonce"])
def test_training_a_pretrained_encoder_raises_stsb_dev(loss, shared_data, tmp_path):
    """The packaged all-MiniLM-L6-v2 (pretrained; avg pooling, no MLP) trained 30 steps of batch
    32 on wiki1m sentences: STS-B dev rises, significantly on a paired bootstrap over the pairs.
    Measured: 86.72 -> 87.19 (infonce) / 87.22 (focal-infonce), paired bootstrap p = 0.001."""
    from embeval.core.model import default_checkpoint_path
    from embeval.eval.metrics.stats import paired_bootstrap

    out = tmp_path / loss
    wiki = shared_data / "train" / "wiki1m_for_simcse.first11914.txt"
    args = ["train", "--model", str(default_checkpoint_path()), "--data", str(wiki)]
    args += ["--loss", loss, "--out", str(out), "--steps", "30", "--eval-steps", "30"]
    args += ["--batch-size", "32", "--pooler", "avg", "--eval-pooler", "avg"]
    args += ["--eval-data", str(shared_data), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    before, after = [r["stsb_dev"] for r in read_log(out) if "stsb_dev" in r]
    sim0, gold, rho0 = _dev_pairs(None, shared_data)  # the untrained packaged model
    sim1, gold1, rho1 = _dev_pairs(str(out / "best"), shared_data)
    p = paired_bootstrap(sim1, sim0, gold)
    print(f"\nMiniLM {loss}: STS-B dev {before:.2f} -> {after:.2f} (paired bootstrap p={p:.4f})")
    assert rho0 == pytest.approx(before, abs=1e-3) and rho1 == pytest.approx(after, abs=1e-3)
    assert after > before + 0.2
    assert p < 0.05
