"""Poolers: a transformer's token states in, one vector per sentence out.

Each pooler is one function in `POOLERS`, called as::

    pooler(mask, hidden_states, pooler_output) -> (B, H)

with `mask` (B, T) 1 for real tokens, `hidden_states` the backbone's L+1 tensors (B, T, H)
(``[0]`` is the embedding output, ``[1]`` the first layer's, ``[-1]`` the last layer's) and
`pooler_output` (B, H) the backbone's dense+tanh over [CLS], or None when it has none. The five
built-ins are SimCSE's `Pooler` (princeton-nlp/SimCSE, simcse/models.py and evaluation.py).

Your own pooler runs without a fork as ``--pooler package.module:function``; its name goes into
the results and, with a digest of its source, into the embedding cache key. A checkpoint saved
with it records it in embeval_config.json only: sentence-transformers has no such pooling mode
(see `embeval.core.model.save_checkpoint`).

This module imports no torch (it only calls tensor methods), so that `embeval.core.checkpoint`,
which validates pooler names, stays free of it: a fully cached run never imports torch.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import TYPE_CHECKING

from embeval.registry import Registry, UnknownUnit

if TYPE_CHECKING:
    from torch import Tensor


def _check(label: str, unit) -> None:
    if not callable(unit):
        raise UnknownUnit(
            f"pooler {label}: expected a function (mask, hidden_states, pooler_output) -> (B, H), "
            f"got {type(unit).__name__}"
        )


POOLERS: Registry = Registry("pooler", check=_check)


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:  # (B, T, H), (B, T) -> (B, H)
    """Mean over the real tokens only: padding never moves a sentence's vector."""
    m = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


@POOLERS.register("cls")
def cls(mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None) -> Tensor:
    """[CLS] through the backbone's MLP pooler (dense + tanh), as SimCSE trains.

    SimCSE (Gao et al., 2021) `Pooler("cls")`: BERT's `pooler_output`. Needs a backbone loaded
    with its pooling layer."""
    if pooler_output is None:
        from embeval.core.checkpoint import CheckpointError  # lazy: checkpoint imports this module

        raise CheckpointError("pooler 'cls' needs the model's MLP pooler, which it lacks")
    return pooler_output  # (B, H)


@POOLERS.register("cls_before_pooler")
def cls_before_pooler(
    mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None
) -> Tensor:
    """[CLS] of the last layer, without the MLP (SimCSE's evaluation pooler after `cls`).

    SimCSE (Gao et al., 2021) `Pooler("cls_before_pooler")`; sentence-transformers'
    `pooling_mode_cls_token`."""
    return hidden_states[-1][:, 0]  # (B, T, H) -> (B, H)


@POOLERS.register("avg")
def avg(mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None) -> Tensor:
    """Mean of the last layer over real tokens.

    SimCSE (Gao et al., 2021) `Pooler("avg")`; sentence-transformers'
    `pooling_mode_mean_tokens` (SBERT, Reimers & Gurevych, 2019)."""
    return masked_mean(hidden_states[-1], mask)


@POOLERS.register("avg_first_last")
def avg_first_last(
    mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None
) -> Tensor:
    """Mean over real tokens of the first and last layers' average.

    SimCSE (Gao et al., 2021) `Pooler("avg_first_last")`, which takes hidden_states[1], the first
    Transformer layer's output, not hidden_states[0], the embedding output (re-implementations
    that take [0] compute another pooler)."""
    return masked_mean((hidden_states[1] + hidden_states[-1]) / 2, mask)  # (B, T, H) -> (B, H)


@POOLERS.register("avg_top2")
def avg_top2(
    mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None
) -> Tensor:
    """Mean over real tokens of the last two layers' average.

    SimCSE (Gao et al., 2021) `Pooler("avg_top2")`."""
    return masked_mean((hidden_states[-2] + hidden_states[-1]) / 2, mask)  # (B, T, H) -> (B, H)


def pooler_key(name: str) -> str:
    """What the cache key records of pooler `name`: a built-in's name, or for user code its
    name plus a digest of the function's source, so editing your pooler never serves the
    vectors of its previous version (code it calls is not covered: rename it to be sure)."""
    if name in POOLERS:
        return POOLERS.canonical(name)
    fn = POOLERS.get(name)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):  # defined in a REPL, or a C callable: the name alone
        return name
    return f"{name}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"
