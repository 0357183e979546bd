"""Contrastive losses as pure functions over a similarity matrix, one `LOSSES` entry each.

Every loss has the signature ``loss(sim, temperature, **hparams) -> Tensor[]`` where ``sim`` is
the (B, B+k) matrix of *cosine* similarities between B anchors and B+k candidates: column i is
anchor i's positive (the diagonal), the other first-B columns are in-batch negatives and the k
extra columns are hard negatives (supervised SimCSE: k = B, column B+i is anchor i's own) or
the columns of extra-negative providers (`embeval.core.negatives`). A new objective is one
function and one `@LOSSES.register` line; the training loop never changes. A user's own loss is
``--loss package.module:function`` or an installed package's entry point in the group
``embeval.losses``; its hyper-parameters are its keyword arguments (``--loss-arg KEY=VALUE``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from embeval.registry import Registry, UnknownUnit

Loss = Callable[..., torch.Tensor]


def _check_loss(label: str, fn) -> None:
    """A user's loss must be callable as loss(sim, temperature, **hparams)."""
    if not callable(fn):
        raise UnknownUnit(f"loss {label}: expected a function loss(sim, temperature, **hparams)")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:  # some builtins have no signature
        raise UnknownUnit(f"loss {label}: cannot read its signature ({exc})") from exc
    names = tuple(p.name for p in params[:2])
    if names != ("sim", "temperature"):
        raise UnknownUnit(
            f"loss {label}: its first two parameters must be (sim, temperature), got "
            f"({', '.join(names)})"
        )


LOSSES: Registry[Loss] = Registry("loss", plural="losses", check=_check_loss)


def _check(sim: torch.Tensor) -> int:
    if sim.dim() != 2 or sim.shape[1] < sim.shape[0]:
        raise ValueError(f"sim must be (B, B+k) with positives on the diagonal, got {sim.shape}")
    return sim.shape[0]


def modulated_infonce(
    sim: torch.Tensor,  # (B, B+k) cosines
    temperature: float,
    pos_weight: torch.Tensor | float = 1.0,  # (B,) or scalar: multiplies the positive cosine
    neg_weight: torch.Tensor | float = 1.0,  # (B, B+k) or scalar: multiplies negative cosines
) -> torch.Tensor:
    """Cross-entropy over logits ``w * sim / tau`` with the diagonal as target.

    With both weights 1 this is InfoNCE; Focal-InfoNCE sets them to ``s_p`` and ``s_n + m``.
    """
    b = _check(sim)
    eye = torch.eye(b, sim.shape[1], dtype=torch.bool, device=sim.device)  # (B, B+k)
    pos = torch.as_tensor(pos_weight, dtype=sim.dtype, device=sim.device)
    neg = torch.as_tensor(neg_weight, dtype=sim.dtype, device=sim.device)
    pos = pos.expand(b).unsqueeze(1).expand_as(sim) if pos.dim() < 2 else pos
    weights = torch.where(eye, pos, neg.expand_as(sim))  # (B, B+k)
    logits = sim * weights / temperature
    return F.cross_entropy(logits, torch.arange(b, device=sim.device))


@LOSSES.register("infonce")
def infonce(sim: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE, the unsupervised SimCSE loss (Gao, Yao & Chen, EMNLP 2021).

    loss_i = -log( exp(s_ii / tau) / sum_j exp(s_ij / tau) ), averaged over the batch; the same
    as sentence-transformers' MultipleNegativesRankingLoss with scale = 1 / tau.
    """
    b = _check(sim)
    return F.cross_entropy(sim / temperature, torch.arange(b, device=sim.device))


@LOSSES.register("focal-infonce")
def focal_infonce(sim: torch.Tensor, temperature: float = 0.05, m: float = 0.3) -> torch.Tensor:
    """Focal-InfoNCE (Hou & Li, Findings of EMNLP 2023), as the authors' code computes it.

    loss_i = -log( exp(s_p s_p / tau) / (exp(s_p s_p / tau) + sum_n exp(s_n (s_n + m) / tau)) )
    on cosines (no prior division by tau). d logit / d s_n = (2 s_n + m) / tau: hard negatives
    (high s_n) are pushed harder than under InfoNCE, easy ones less. The negative logit is a
    parabola with its minimum at s_n = -m / 2. Both modulating factors set to 1 give InfoNCE.
    """
    _check(sim)
    return modulated_infonce(sim, temperature, pos_weight=sim.diagonal(), neg_weight=sim + m)


@LOSSES.register("sup-simcse")
def sup_simcse(
    sim: torch.Tensor, temperature: float = 0.05, hard_negative_weight: float = 0.0
) -> torch.Tensor:
    """Supervised SimCSE (Gao, Yao & Chen, EMNLP 2021): InfoNCE with hard-negative columns.

    InfoNCE over (B, 2B) with NLI contradictions as hard-negative columns.
    ``hard_negative_weight`` = log(alpha) is added to anchor i's own hard-negative logit
    (column B + i) after the division by tau, as SimCSE does; 0 (alpha = 1) was best in the
    paper. Without extra columns (k = 0) this is plain InfoNCE.
    """
    b = _check(sim)
    k = sim.shape[1] - b
    if k not in (0, b):
        raise ValueError(f"sup-simcse needs one hard negative per anchor (B+k = 2B), got {k=}")
    logits = sim / temperature
    if k and hard_negative_weight:
        bonus = torch.zeros_like(logits)
        bonus[:, b:] = torch.eye(b, dtype=sim.dtype, device=sim.device) * hard_negative_weight
        logits = logits + bonus
    return F.cross_entropy(logits, torch.arange(b, device=sim.device))


@LOSSES.register("align-uniform")
def align_uniform(sim: torch.Tensor, temperature: float = 0.05, lam: float = 1.0) -> torch.Tensor:
    """Alignment + lam * uniformity (Wang & Isola, ICML 2020), alpha = 2, t = 2.

    Derived from cosines: for unit vectors ||x - y||^2 = 2 - 2 cos(x, y), so
    alignment = mean_i (2 - 2 s_ii) and uniformity = log mean_{i != j} exp(-2 (2 - 2 s_ij)) over
    the off-diagonal pairs of the first B columns (two distinct sentences, one view each); the
    authors' code instead averages within-view pdist uniformities, which estimates the same
    expectation. Hard-negative columns and ``temperature`` are not used.
    """
    b = _check(sim)
    sq = 2 - 2 * sim[:, :b]  # (B, B) squared distances of unit vectors
    alignment = sq.diagonal().mean()
    off = sq[~torch.eye(b, dtype=torch.bool, device=sim.device)]  # (B*(B-1),)
    if off.numel() == 0:
        return alignment
    uniformity = torch.logsumexp(-2 * off, 0) - math.log(off.numel())
    return alignment + lam * uniformity


align_uniform.in_batch_only = True  # reads the first B columns only: hard negatives add nothing


@LOSSES.register("promcse-hinge")
def promcse_hinge(
    sim: torch.Tensor,
    temperature: float = 0.05,
    margin: float = 0.2,
    weight: float = 10.0,
    hard_negative_weight: float = 0.0,
) -> torch.Tensor:
    """Supervised SimCSE plus PromCSE's energy-based hinge (Jiang et al., EMNLP 2022).

    loss = sup-simcse + weight * mean_i max(0, margin - (s_ii - max_{j != i} s_ij)) on raw
    cosines; the max runs over the in-batch and hard-negative columns. Defaults as the
    authors' run_sup_example.sh (YJiangcm/PromCSE, `promcse/models.py`, nn.MarginRankingLoss on
    logits * tau; --eh_loss_margin 0.2 --eh_loss_weight 10). weight = 0 gives sup-simcse. The
    soft prompts of PromCSE are not part of this loss.
    """
    b = _check(sim)
    eye = torch.eye(b, sim.shape[1], dtype=torch.bool, device=sim.device)  # (B, B+k)
    hardest = sim.masked_fill(eye, -math.inf).amax(1)  # (B,) max_{j != i} s_ij
    hinge = F.relu(margin - (sim.diagonal() - hardest)).mean()
    return sup_simcse(sim, temperature, hard_negative_weight) + weight * hinge


@LOSSES.register("gcse")
def gcse(
    sim: torch.Tensor, temperature: float = 0.05, alpha: float = 0.17, *, ref_sim: torch.Tensor
) -> torch.Tensor:
    """GCSE's hard-negative re-weighting (aleversn/GCSE, `main/models/gcse.py`): sup-simcse form.

    On logits l = s / tau, anchor i's own hard-negative logit (column B + i) gets a bonus
    w_i = 0 if l > l_base else -l * exp(-(l - l_base)^2 / (2 alpha^2)), with l_base the same
    logit under a frozen base model (`ref_sim`, --reference-model). As the released code does:
    the difference and alpha are on the logit scale (cosine / tau), and w is a constant (the code
    detaches it), so gradients flow through the plain logit only. Far above/below the base the
    bonus vanishes; alpha -> 0 gives sup-simcse. The code's base model is a SimCSE model (its
    [CLS] MLP) in eval mode; here the reference pools as its checkpoint declares ('initial':
    the run's evaluation pooler).
    """
    b = _check(sim)
    if sim.shape[1] != 2 * b or ref_sim.shape[1] < 2 * b:
        raise ValueError(f"gcse needs one hard negative per anchor (B+k = 2B), got {sim.shape}")
    own = torch.arange(b, device=sim.device) + b  # (B,) column of anchor i's hard negative
    rows = torch.arange(b, device=sim.device)
    logit = sim[rows, own].detach() / temperature  # (B,)
    base = ref_sim[rows, own].detach().to(sim.dtype) / temperature  # (B,)
    diff = logit - base
    bonus = torch.where(diff > 0, 0.0, -logit * torch.exp(-(diff**2) / (2 * alpha**2)))
    logits = (sim / temperature).index_put((rows, own), bonus, accumulate=True)  # (B, 2B)
    return F.cross_entropy(logits, rows)


@LOSSES.register("dclr")
def dclr(
    sim: torch.Tensor, temperature: float = 0.05, phi: float = 0.9, *, ref_sim: torch.Tensor
) -> torch.Tensor:
    """DCLR (Zhou et al., ACL 2022), the loss as RUCAIBox/DCLR `simcse/models.py` computes it.

    Logits l = s / tau over [in-batch | noise columns] (noise: the `dclr-noise` provider). A
    negative the frozen model scores above phi (`ref_sim` > phi, --reference-model, an
    unsupervised SimCSE) gets weight 0, others and the diagonal 1; columns beyond `ref_sim`
    (the noise) weight 1. p = softmax(w * l) per row; loss = mean over all B (B+k) cells of
    binary cross-entropy with the diagonal as 1: -(y log p + (1 - y) log(1 - p)). The paper
    writes a weighted InfoNCE; the code's softmax + BCE is followed. A weight 0 zeroes the
    logit (it does not drop the column). The code compares cos_fix / tau > 20 phi; with its
    tau = 0.05 that is cos_fix > phi, as here. Not as the code: its frozen model pools with
    BERT's pooler layer and runs with dropout on (a submodule left in training mode); here the
    reference pools as its checkpoint declares and runs in eval mode (see --reference-model).
    """
    b = _check(sim)
    c = min(ref_sim.shape[1], sim.shape[1])
    eye = torch.eye(b, sim.shape[1], dtype=sim.dtype, device=sim.device)  # (B, B+k) targets
    weights = torch.ones_like(sim)
    weights[:, :c] = (ref_sim[:, :c].detach() <= phi).to(sim.dtype)
    weights = torch.maximum(weights, eye)  # the positive always counts
    p = torch.softmax(sim / temperature * weights, 1)
    return F.binary_cross_entropy(p, eye)


@LOSSES.register("nt-xent")
def nt_xent(sim: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent with intra-view negatives (SimCLR; ConSERT, Yan et al., ACL 2021,
    yym6472/ConSERT), over all views against all views.

    sim is (2B, 2B + k): rows and the first 2B columns are [a; b], the two views' embeddings
    (then k provider columns, read by the a rows). loss = CE_i([s(a_i, b) | s(a_i, a) with
    s(a_i, a_i) masked] / tau) + CE_i([s(b_i, a) | s(b_i, b) masked] / tau), the two means
    *summed* as the code does (the paper writes one direction).
    """
    if sim.dim() != 2 or sim.shape[0] % 2 or sim.shape[1] < sim.shape[0]:
        raise ValueError(f"nt-xent needs the (2B, 2B+k) all-views matrix, got {tuple(sim.shape)}")
    b = sim.shape[0] // 2
    eye = torch.eye(b, dtype=torch.bool, device=sim.device)
    aa, ab, extra = sim[:b, :b], sim[:b, b : 2 * b], sim[:b, 2 * b :]
    ba, bb = sim[b:, :b], sim[b:, b : 2 * b]
    target = torch.arange(b, device=sim.device)
    rows_a = torch.cat([ab, aa.masked_fill(eye, -math.inf), extra], 1) / temperature
    rows_b = torch.cat([ba, bb.masked_fill(eye, -math.inf)], 1) / temperature
    return F.cross_entropy(rows_a, target) + F.cross_entropy(rows_b, target)


nt_xent.all_views = True  # contrastive_loss hands it every view against every view


def all_views(fn: Loss) -> bool:
    """Whether the loss takes every view against every view, (V B, V B + k), not anchors
    against candidates (set ``fn.all_views = True``)."""
    return bool(getattr(fn, "all_views", False))


def in_batch_only(fn: Loss) -> bool:
    """Whether the loss reads only the in-batch columns (the first B), so that hard-negative
    and extra columns give an anchor no negative (set ``fn.in_batch_only = True``)."""
    return bool(getattr(fn, "in_batch_only", False))


def get_loss(name: str) -> Loss:
    """The loss `name` resolves to: registered, package.module:function or an entry point;
    an unknown name fails with a suggestion (UnknownUnit, a ValueError)."""
    return LOSSES.get(name)


# Keyword-only tensors a loss may ask for by name (beside sim); the batch computes them.
BATCH_INPUTS = {
    "ref_sim": "(B, B+k') cosines of the same anchors and view columns under the frozen "
    "--reference-model (providers' columns not included)",
}


def batch_inputs(fn: Loss) -> list[str]:
    """The BATCH_INPUTS `fn` takes (keyword-only parameters with those names)."""
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name in BATCH_INPUTS]


def loss_parameters(fn: Loss, skip: int = 2) -> dict[str, inspect.Parameter]:
    """The loss's hyper-parameters: its parameters after (sim, temperature), by name, without
    the batch inputs (`BATCH_INPUTS`) it takes. Other units skip their own leading parameters
    (a view builder its examples, a provider none)."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    inputs = set(batch_inputs(fn))
    return {
        p.name: p
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in inputs
    }


def loss_arguments(name: str, given: dict | None = None) -> dict:
    """The keyword arguments loss `name` is called with; see `bind_loss_arguments`."""
    return bind_loss_arguments(get_loss(name), given, name)


def bind_loss_arguments(
    fn: Loss, given: dict | None, name: str, kind: str = "loss", skip: int = 2
) -> dict:
    """The keyword arguments `fn` (loss `name`) is called with: its signature's defaults,
    overridden by `given`. Values given as text (``--loss-arg m=0.2``) are converted to the type
    of the parameter's default. An unknown key, a bad value or a missing required argument fails
    with a ValueError naming the loss and the arguments it accepts. View builders (kind "view",
    skip 1) and negatives providers (kind "negatives provider", skip 0) bind theirs alike."""
    params = loss_parameters(fn, skip)
    accepts = accepted_arguments(fn, skip)
    flags = {"loss": "--loss-arg", "view": "--view-arg", "objective": "--objective-arg"}
    flag = flags.get(kind, "--negatives-arg")
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    given = dict(given or {})
    unknown = [k for k in given if k not in params and not takes_any]  # **kwargs takes any key
    if unknown:
        raise ValueError(
            f"{kind} {name} has no argument {', '.join(map(repr, unknown))}; it accepts: {accepts}"
        )
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    converted = {
        k: _convert(f"{kind} {name}", k, v, params.get(k), accepts) for k, v in given.items()
    }
    resolved = {**defaults, **converted}
    missing = [k for k in params if k not in resolved]
    if missing:
        raise ValueError(
            f"{kind} {name} needs {', '.join(map(repr, missing))} ({flag} KEY=VALUE); "
            f"it accepts: {accepts}"
        )
    return {k: resolved[k] for k in [*params, *converted] if k in resolved}  # signature order


def accepted_arguments(fn: Loss, skip: int = 2) -> str:
    """The loss's arguments for messages: 'm (default 0.3)', or 'none'."""
    params = loss_parameters(fn, skip).values()
    text = [p.name if p.default is p.empty else f"{p.name} (default {p.default!r})" for p in params]
    return ", ".join(text) or "none"


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _convert(unit: str, key: str, value, param: inspect.Parameter | None, accepts: str):
    """`value` as the type of the parameter's default: text (``--loss-arg m=0.2``) is parsed, an
    int for a float default becomes a float. A parameter without a bool/int/float/str default
    (or a key only **kwargs takes) gets the value as given."""
    typed = param is not None and param.default is not param.empty
    kind = type(param.default) if typed else None
    if kind not in (bool, int, float, str):
        return value
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool and text not in _TRUE + _FALSE:
                raise ValueError(value)
            return text in _TRUE if kind is bool else kind(text)
        except ValueError:
            pass
    elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ValueError(
        f"{unit}: argument {key}={value!r} is not a {kind.__name__}; it accepts: {accepts}"
    )
