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


class PoolerRegistry(Registry):
    """`Registry` plus arguments: ``name:ARGUMENT`` where `name` is a registered `Pooler` class
    builds that pooler with the argument (``layers:1,12``, ``ditto:0,9``, ``promptbert:TEMPLATE``);
    the plain name builds it with its defaults. Other names resolve as in `Registry` (user code is
    ``package.module:function``: its module part is never a registered pooler name)."""

    def _split(self, name: str) -> tuple[str, str] | None:
        base, sep, arg = name.strip().partition(":")
        if sep and base.strip().lower() in self._aliases:
            return self._aliases[base.strip().lower()], arg.strip()
        return None

    def get(self, name: str):
        split = self._split(name)
        if split is not None:
            unit = self._units[split[0]]
            if not (isinstance(unit, type) and issubclass(unit, Pooler)):
                raise UnknownUnit(f"pooler {split[0]!r} takes no argument; got {name!r}")
            return unit.from_arg(split[1])
        unit = super().get(name)
        if isinstance(unit, type) and issubclass(unit, Pooler):
            return unit.from_arg(None)
        return unit

    def canonical(self, name: str) -> str:
        split = self._split(name)
        if split is not None:
            return f"{split[0]}:{split[1]}"
        return super().canonical(name)


POOLERS: PoolerRegistry = PoolerRegistry("pooler", check=_check)


class PoolInputs:
    """What a `Pooler` object may read beyond (mask, hidden_states, pooler_output): the token
    ids, the attention maps (only when its `needs_attentions`), the tokenizer, and `run`, which
    runs the backbone on other inputs (PromptBERT's template denoising)."""

    def __init__(self, input_ids, attentions=None, tokenizer=None, run=None):
        self.input_ids, self.attentions, self.tokenizer, self.run = (
            input_ids,
            attentions,
            tokenizer,
            run,
        )


class Pooler:
    """A pooler that is an object: it may take an argument (``name:ARGUMENT`` on the command
    line, parsed by `from_arg`), check it against the checkpoint's config.json before any
    weights load (`check_config`), rewrite the text before tokenizing (`prepare`), ask for
    attention maps (`needs_attentions`), and read `PoolInputs` when called."""

    needs_attentions = False
    # True when `prepare` puts text around the sentence that truncation must not cut.
    no_truncation = False

    @classmethod
    def from_arg(cls, arg: str | None) -> Pooler:
        if arg:
            raise UnknownUnit(f"pooler {cls.__name__}: takes no argument, got {arg!r}")
        return cls()

    def check_config(self, config: dict) -> None:
        """Raise ValueError if this pooler cannot work on the model config.json describes."""

    def prepare(self, sentences: list[str], tokenizer) -> list[str]:
        return list(sentences)

    def __call__(self, mask, hidden_states, pooler_output, inputs: PoolInputs | None = None):
        raise NotImplementedError


def n_layers(config: dict) -> int | None:
    """Transformer layers of a config.json (BERT/OPT/Llama name it one way, GPT-2 another)."""
    n = config.get("num_hidden_layers", config.get("n_layer"))
    return None if n is None else int(n)


def n_heads(config: dict) -> int | None:
    n = config.get("num_attention_heads", config.get("n_head"))
    return None if n is None else int(n)


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


@POOLERS.register("avg_first_last_old")
def avg_first_last_old(
    mask: Tensor, hidden_states: tuple[Tensor, ...], pooler_output: Tensor | None
) -> Tensor:
    """Mean over real tokens of the embedding output's and last layer's average (pre-2022).

    mean_t (hidden_states[0]_t + hidden_states[-1]_t) / 2: SimCSE's `avg_first_last` before its
    2022 fix (princeton-nlp/SimCSE, simcse/evaluation.py history), which ESimCSE (Wu et al.,
    2022), Ditto (Chen et al., 2023; alibaba-damo-academy/SpokenNLP, ditto/evaluation_ditto.py)
    and older tables use; `avg_first_last` is the current one, with hidden_states[1]."""
    return masked_mean((hidden_states[0] + hidden_states[-1]) / 2, mask)  # (B, T, H) -> (B, H)


@POOLERS.register("layers")
class Layers(Pooler):
    """Mean over the given layers of each layer's mean over real tokens (layers:1,12).

    e = 1/|S| sum_{l in S} mean_t hidden_states[l]_t, with layer 0 the embedding output and L the
    last layer; ``layers:1,12`` is WhiteningBERT's first-last combination (Huang et al., 2021,
    Jun-jie-Huang/WhiteningBERT), ``layers:K`` one layer alone. Indices in 0..L (negative ones
    count from the end, -1 = L); a layer may not repeat."""

    def __init__(self, layers: tuple[int, ...]):
        self.layers = layers

    @classmethod
    def from_arg(cls, arg: str | None) -> Layers:
        try:
            layers = tuple(int(x) for x in (arg or "").split(","))
        except ValueError:
            layers = ()
        if not layers or len(set(layers)) != len(layers):
            raise UnknownUnit(
                f"pooler layers:{arg or ''}: expected distinct comma-separated layer indices, "
                "e.g. layers:1,12 (0 is the embedding output)"
            )
        return cls(layers)

    def _check(self, count: int) -> None:  # count: L + 1 hidden states
        bad = [k for k in self.layers if not -count <= k < count]
        if bad:
            raise ValueError(
                f"pooler layers:{','.join(map(str, self.layers))}: layer(s) "
                f"{', '.join(map(str, bad))} out of range; this model has hidden states 0 "
                f"(embeddings) to {count - 1}"
            )

    def check_config(self, config: dict) -> None:
        if n_layers(config) is not None:
            self._check(n_layers(config) + 1)

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        self._check(len(hidden_states))
        means = [masked_mean(hidden_states[k], mask) for k in self.layers]  # |S| x (B, H)
        return sum(means[1:], means[0]) / len(means)


def pooler_key(name: str) -> str:
    """What the cache key records of pooler `name`: a built-in's name, or for user code its
    name plus a digest of the function's source, so editing your pooler never serves the
    vectors of its previous version (code it calls is not covered: rename it to be sure)."""
    if name in POOLERS or POOLERS._split(name) is not None:
        return POOLERS.canonical(name)
    fn = POOLERS.get(name)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):  # defined in a REPL, or a C callable: the name alone
        return name
    return f"{name}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"
