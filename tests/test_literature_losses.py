"""Losses from the literature (PromCSE hinge, GCSE, DCLR, DCLR's noise, Matryoshka): each
against an independent NumPy computation on a small case, and the limits where it becomes
another method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeval.core import losses
from embeval.core.batches import contrastive_loss
from embeval.core.negatives import DCLRNoise, make_providers
from embeval.core.train_config import TrainConfig

RNG = np.random.default_rng(0)
B = 3
SIM = RNG.uniform(-1, 1, (B, 2 * B))  # (B, 2B): in-batch | one hard negative per anchor
REF = RNG.uniform(-1, 1, (B, 2 * B))


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def _xent(logits: np.ndarray) -> float:
    """Mean over rows of -log softmax(row)[i] (the diagonal is the target)."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-np.mean([logp[i, i] for i in range(len(z))]))


def test_promcse_hinge_by_hand():
    tau, m, w = 0.05, 0.2, 10.0
    hinge = []
    for i in range(B):
        others = [SIM[i, j] for j in range(2 * B) if j != i]  # in-batch and hard negatives
        hinge.append(max(0.0, m - (SIM[i, i] - max(others))))
    want = _xent(SIM / tau) + w * np.mean(hinge)
    got = losses.promcse_hinge(_t(SIM), tau, margin=m, weight=w)
    assert got.item() == pytest.approx(want, rel=1e-10)
    assert np.mean(hinge) > 0  # the case exercises the hinge


def test_promcse_hinge_without_weight_is_sup_simcse():
    got = losses.promcse_hinge(_t(SIM), 0.05, weight=0.0, hard_negative_weight=0.3)
    assert torch.allclose(got, losses.sup_simcse(_t(SIM), 0.05, hard_negative_weight=0.3))


def _gcse_numpy(sim, ref, tau, alpha):
    logits = sim / tau
    for i in range(B):
        lg, lb = logits[i, B + i], ref[i, B + i] / tau
        d = lg - lb
        logits[i, B + i] += 0.0 if d > 0 else -lg * np.exp(-(d**2) / (2 * alpha**2))
    return _xent(logits)


def test_gcse_by_hand():
    sim = SIM.copy()
    for i in range(B):  # hard negatives close to the positives: their logits matter
        sim[i, i], sim[i, B + i] = 0.8, 0.75
    ref = REF.copy()
    ref[0, B] = sim[0, B] + 0.004  # below the base, near it: bonus about -l
    ref[1, B + 1] = sim[1, B + 1] - 0.01  # above the base: no bonus
    ref[2, B + 2] = sim[2, B + 2] + 0.012  # below, about 1.4 alpha away on the logit scale
    want = _gcse_numpy(sim.copy(), ref, 0.05, 0.17)
    got = losses.gcse(_t(sim), 0.05, alpha=0.17, ref_sim=_t(ref))
    assert got.item() == pytest.approx(want, rel=1e-10)
    assert got.item() < 0.9 * _xent(sim / 0.05)  # the bonus lowered hard-negative logits


def test_gcse_limits_and_constant_bonus():
    # alpha -> 0: the Gaussian vanishes unless s = s_base exactly: sup-simcse.
    got = losses.gcse(_t(SIM), 0.05, alpha=1e-9, ref_sim=_t(REF))
    assert torch.allclose(got, losses.sup_simcse(_t(SIM), 0.05))
    # The code detaches the bonus: the gradient is that of CE over logits + a constant.
    sim = _t(SIM).requires_grad_(True)
    losses.gcse(sim, 0.05, ref_sim=_t(SIM)).backward()  # s = s_base: bonus -l, logit 0
    logits = SIM / 0.05
    for i in range(B):
        logits[i, B + i] = 0.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = (p - np.eye(B, 2 * B)) / B / 0.05  # d CE / d sim through l = s / tau only
    assert np.allclose(sim.grad.numpy(), want)


def test_dclr_by_hand():
    tau, phi = 0.05, 0.9
    sim = RNG.uniform(-1, 1, (B, B + 2))  # (B, B in-batch + 2 noise columns)
    ref = RNG.uniform(-1, 1, (B, B))
    ref[0, 1] = ref[2, 0] = 0.95  # false negatives by the frozen model: weight 0
    ref[1, 1] = 0.99  # a diagonal above phi keeps weight 1
    w = np.ones_like(sim)
    w[:, :B] = np.where(ref > phi, 0.0, 1.0)
    np.fill_diagonal(w, 1.0)
    z = sim / tau * w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.eye(B, B + 2)
    want = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    got = losses.dclr(_t(sim), tau, phi=phi, ref_sim=_t(ref))
    assert got.item() == pytest.approx(want, rel=1e-10)
    none_weighted = losses.dclr(_t(sim), tau, phi=2.0, ref_sim=_t(ref))  # phi > 1: all count
    assert got.item() != pytest.approx(none_weighted.item(), rel=1e-6)


def test_dclr_noise_is_one_normalised_gradient_step_per_step():
    """One step from a seeded Gaussian start, the gradient by central finite differences."""
    b, h, tau, eps = 3, 4, 0.5, 1e-6  # tau 0.5: an unsaturated softmax, so float32 grads are exact
    emb = torch.tensor(np.random.default_rng(7).normal(size=(2, b, h)))  # independent of order

    class Batch:  # what the provider reads
        pass

    batch = Batch()
    batch.emb = emb
    torch.manual_seed(3)
    got = DCLRNoise(steps=1, tau=tau).columns(batch).double().numpy()
    torch.manual_seed(3)
    n0 = torch.randn(b, h).double().numpy()
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    z1, z2 = unit(emb[0].numpy()), unit(emb[1].numpy())

    def loss(noise):
        return _xent(np.concatenate([z1 @ z2.T, z1 @ unit(noise).T], 1) / tau)

    grad = np.zeros_like(n0)
    for idx in np.ndindex(*n0.shape):
        d = np.zeros_like(n0)
        d[idx] = eps
        grad[idx] = (loss(n0 + d) - loss(n0 - d)) / (2 * eps)
    want = n0 + 1e-3 * grad / np.linalg.norm(grad, axis=-1, keepdims=True)
    assert np.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="dclr-noise: expected times > 0"):
        DCLRNoise(times=0)  # settings come from --negatives-arg and are checked at once
    assert loss(got) > loss(n0)  # the noise moved to raise the loss (harder negatives)
    assert [type(p) for p in make_providers(["dclr-noise"])] == [DCLRNoise]


def _matryoshka_numpy(emb, dims, weights, tau):
    total = 0.0
    for d, w in zip(dims, weights, strict=True):
        x = emb[:, :, :d] / np.linalg.norm(emb[:, :, :d], axis=-1, keepdims=True)
        total += w * _xent(x[0] @ x[1].T / tau)
    return total


def test_matryoshka_by_hand_and_full_width_alone_is_the_inner_loss():
    emb = RNG.normal(size=(2, 4, 6))  # (V, b, H)
    cfg = TrainConfig(matryoshka_dims=[6, 4, 2], matryoshka_weights=[1.0, 0.5, 0.25])
    got = contrastive_loss(_t(emb), cfg)
    want = _matryoshka_numpy(emb, [6, 4, 2], [1.0, 0.5, 0.25], 0.05)
    assert got.item() == pytest.approx(want, rel=1e-6)
    inner = contrastive_loss(_t(emb), TrainConfig(loss="focal-infonce"))
    alone = contrastive_loss(_t(emb), TrainConfig(loss="focal-infonce", matryoshka_dims=[6]))
    assert alone.item() == inner.item()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"loss": "gcse"}, "--reference-model"),
        ({"loss": "dclr"}, "--reference-model"),
        ({"matryoshka_dims": [8, 0]}, "positive integers"),
        ({"matryoshka_dims": [8, 8]}, "repeats"),
        ({"matryoshka_dims": [8, 4], "matryoshka_weights": [1.0]}, "one weight per"),
    ],
)
def test_bad_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields).validate()


def test_batch_inputs_are_not_loss_arguments():
    assert losses.batch_inputs(losses.gcse) == ["ref_sim"]
    assert list(losses.loss_parameters(losses.gcse)) == ["alpha"]
    with pytest.raises(ValueError, match="no argument 'ref_sim'"):
        losses.loss_arguments("gcse", {"ref_sim": "1"})


def test_sbert_nli_by_hand():
    from embeval.core.objectives import SBertNLI

    class Model:  # what the head reads of the encoder
        backbone = type("B", (), {"config": type("C", (), {"hidden_size": 4})})()

    torch.manual_seed(0)
    head = SBertNLI(Model(), None).double()
    emb = RNG.normal(size=(2, 3, 4))  # (V, b, H): premises, hypotheses
    labels = ["entailment", "contradiction", "neutral"]
    batch = type("Batch", (), {"emb": _t(emb), "examples": [("p", "h", lab) for lab in labels]})
    w, b = head.classifier.weight.detach().numpy(), head.classifier.bias.detach().numpy()
    u, v = emb
    logits = np.concatenate([u, v, np.abs(u - v)], 1) @ w.T + b  # (3, 3)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    want = -np.mean([logp[0, 1], logp[1, 0], logp[2, 2]])  # contradiction 0, entailment 1, ...
    assert head(batch).item() == pytest.approx(want, rel=1e-10)


def test_two_d_matryoshka_by_hand_and_without_layers_is_matryoshka():
    from embeval.core.batches import two_d_matryoshka

    emb = RNG.normal(size=(2, 4, 6))  # (V, b, H) last layer
    lay = RNG.normal(size=(2, 4, 6))  # a sampled layer
    t = 0.3
    cfg = TrainConfig(matryoshka_dims=[6, 3], matryoshka_layers=1, matryoshka_kl_temperature=t)
    p_last = np.exp(emb.reshape(-1, 6) / t)
    p_last /= p_last.sum(1, keepdims=True)
    logq = lay.reshape(-1, 6) / t
    logq = logq - np.log(np.exp(logq).sum(1, keepdims=True))
    kl = np.sum(p_last * (np.log(p_last) - logq)) / 8  # batchmean over the 8 rows
    m = lambda e: _matryoshka_numpy(e, [6, 3], [1.0, 1.0], 0.05)  # noqa: E731
    want = m(emb) + m(lay) + t * kl
    got = two_d_matryoshka(_t(emb), [_t(lay)], cfg)
    assert got.item() == pytest.approx(want, rel=1e-6)
    no_kl = TrainConfig(matryoshka_dims=[6, 3], matryoshka_kl_temperature=0.0)
    assert two_d_matryoshka(_t(emb), [_t(lay)], no_kl).item() == pytest.approx(m(emb) + m(lay))
    assert two_d_matryoshka(_t(emb), [], cfg).item() == contrastive_loss(_t(emb), cfg).item()
