"""Poolers: a transformer's token states in, one vector per sentence out.

Each pooler is one function in `POOLERS`, called as::

    pooler(mask, hidden_states, pooler_output) -> (B, H)

with `mask` (B, T) 1 for real tokens, `hidden_states` the backbone's L+1 tensors (B, T, H)
(``[0]`` is the embedding output, ``[1]`` the first layer's, ``[-1]`` the last layer's) and
`pooler_output` (B, H) the backbone's dense+tanh over [CLS], or None when it has none. The first
five built-ins are SimCSE's `Pooler` (princeton-nlp/SimCSE, simcse/models.py and evaluation.py).

A pooler that needs more is a `Pooler` subclass registered as a class: it is built from an
argument (``layers:1,12``, ``ditto:0,9``, ``promptbert:TEMPLATE``; `PoolerRegistry`), checks it
against the checkpoint's config.json before the weights load, may rewrite each sentence into a
prompt before tokenizing (`prepare`), may ask for attention maps, and is called with a fourth
argument, `PoolInputs` (token ids, attentions, tokenizer, a way to run the backbone again).
`embeval.core.model.SentenceModel` and the encoder provide these; plain functions keep the
three-argument call.

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
from collections.abc import Sequence
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

    def __init__(self, input_ids, attentions=None, tokenizer=None, run=None, config=None):
        self.input_ids, self.attentions, self.tokenizer = input_ids, attentions, tokenizer
        self.run, self.config = run, config  # config: the backbone's PretrainedConfig


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


def check_layers(label: str, layers: tuple[int, ...], count: int) -> None:
    """Hidden-state indices must exist: 0..count-1, or -count..-1 from the end."""
    bad = [k for k in layers if not -count <= k < count]
    if bad:
        raise ValueError(
            f"pooler {label}: layer(s) {', '.join(map(str, bad))} out of range; this model has "
            f"hidden states 0 (embeddings) to {count - 1}"
        )


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
        check_layers(f"layers:{','.join(map(str, self.layers))}", self.layers, count)

    def check_config(self, config: dict) -> None:
        if n_layers(config) is not None:
            self._check(n_layers(config) + 1)

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        self._check(len(hidden_states))
        means = [masked_mean(hidden_states[k], mask) for k in self.layers]  # |S| x (B, H)
        return sum(means[1:], means[0]) / len(means)


SLOT, MASK_SLOT = "[X]", "[MASK]"


def end_sentence(s: str) -> str:
    """The references' clean-up before a sentence enters a prompt: a final period unless it
    already ends in . ? " or ' (kongds/Prompt-BERT and kongds/scaling_sentemb, evaluation.py)."""
    s = s.strip()
    return s if s.endswith((".", "?", '"', "'")) else s + "."


def check_template(template: str, pooler: str, mask_slot: bool) -> str:
    if template.count(SLOT) != 1:
        raise UnknownUnit(
            f"pooler {pooler}: template {template!r} must hold the sentence slot {SLOT} once"
        )
    if mask_slot and template.count(MASK_SLOT) != 1:
        raise UnknownUnit(
            f"pooler {pooler}: template {template!r} must hold the mask slot {MASK_SLOT} once"
        )
    return template


def mask_token(tokenizer, pooler: str) -> str:
    if tokenizer is None or getattr(tokenizer, "mask_token", None) is None:
        raise ValueError(
            f"pooler {pooler} reads the [MASK] token's state, and this tokenizer has no mask "
            "token (a decoder-only model?); use prompteol or last_token"
        )
    return tokenizer.mask_token


@POOLERS.register("promptbert")
class PromptBERT(Pooler):
    """Last layer's state at [MASK] in a prompt around the sentence (promptbert:TEMPLATE).

    e = h_L[mask position] of TEMPLATE with [X] replaced by the sentence and [MASK] by the
    tokenizer's mask token; default ``This sentence : "[X]" means [MASK] .`` (`--template`).
    PromptBERT (Jiang et al., 2022), kongds/Prompt-BERT evaluation.py, whose code is followed:
    a sentence not ending in . ? " ' gets a final period. Prompts are not truncated.

    In training (``--view promptbert``, `for_views`) the view has built the prompts, view v's
    rows holding template v, and the state then goes through the MLP pooling layer (dense +
    tanh), as the reference's cl_forward with ``--mlp_only_train``: an MLP in training only."""

    default = 'This sentence : "[X]" means [MASK] .'
    no_truncation = True

    def __init__(self, template: str):
        self.template = template

    @classmethod
    def from_arg(cls, arg: str | None) -> PromptBERT:
        return cls(check_template(arg or cls.default, cls.registered_name(), mask_slot=True))

    @classmethod
    def registered_name(cls) -> str:
        return "promptbert_denoised" if cls.denoise else "promptbert"

    denoise = False
    # Training (`--view promptbert`): view v's rows are block v of the batch and hold template v.
    view_templates: tuple[str, ...] = ()
    mlp = None  # training: a module with .dense and .activation (BERT's pooler layer)

    def for_views(self, templates: Sequence[str], mlp=None) -> PromptBERT:
        """This pooler for a training batch whose V views each hold their own template, with
        `mlp` (dense + tanh) over the (denoised) [MASK] state when given."""
        pool = type(self)(self.template)
        pool.view_templates, pool.mlp = tuple(templates), mlp
        return pool

    def prepare(self, sentences: list[str], tokenizer) -> list[str]:
        mask = mask_token(tokenizer, self.registered_name())
        filled = self.template.replace(MASK_SLOT, mask)
        return [filled.replace(SLOT, end_sentence(s)) for s in sentences]

    def _states_at_mask(self, states, input_ids, mask_id: int):  # (B, T, H) -> (B, H)
        where = input_ids == mask_id  # (B, T)
        if not bool((where.sum(1) == 1).all()):
            raise ValueError(
                f"pooler {self.registered_name()}: each prompt must hold exactly one mask token"
            )
        return states[where]  # row order kept: one True per row

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        tok = inputs.tokenizer if inputs is not None else None
        mask_token(tok, self.registered_name())
        h = self._states_at_mask(hidden_states[-1], inputs.input_ids, tok.mask_token_id)
        if self.denoise:
            h = h - self._template_states(mask, inputs)
        if self.mlp is not None:  # after denoising, as the reference's cl_forward
            h = self.mlp.activation(self.mlp.dense(h))
        return h


@POOLERS.register("promptbert_denoised")
class PromptBERTDenoised(PromptBERT):
    """PromptBERT with template denoising: h[MASK] minus that of the empty template.

    e = h_L[mask](TEMPLATE(sentence)) - h_L[mask](TEMPLATE("")), where the empty template's
    tokens after the slot keep the position ids they have in the filled prompt (shifted by the
    sentence's n tokens), as `get_delta` in kongds/Prompt-BERT evaluation.py sets them
    (PromptBERT, Jiang et al., 2022). Models with offset positions (RoBERTa) get the offset.
    In training each view's rows subtract their own template's state, computed with gradient
    and dropout on as in the reference's cl_forward (``--mask_embedding_sentence_delta``),
    before the MLP; the reference runs lengths 0-49 each step, this only the lengths present."""

    denoise = True

    def _template_states(self, mask, inputs: PoolInputs):  # -> (B, H)
        import torch

        if self.view_templates:  # training: the rows of view v (block v) hold template v
            blocks = mask.chunk(len(self.view_templates))
            return torch.cat(
                [
                    type(self)(t)._template_states(m, inputs)
                    for t, m in zip(self.view_templates, blocks, strict=True)
                ]
            )
        tok, config = inputs.tokenizer, inputs.config
        empty, prefix = template_ids(self.template, tok)
        n = mask.long().sum(1) - len(empty)  # (B,) each sentence's tokens in its prompt
        lengths = sorted(set(n.tolist()))
        device = mask.device
        ids = torch.tensor([empty] * len(lengths), device=device)  # (K, T0)
        offset = 0
        if getattr(config, "model_type", None) in OFFSET_POSITIONS:
            offset = int(getattr(config, "pad_token_id", 1)) + 1
        pos = torch.arange(len(empty), device=device).repeat(len(lengths), 1) + offset
        pos[:, prefix:] += torch.tensor(lengths, device=device).unsqueeze(1)
        out = inputs.run(ids, torch.ones_like(ids), None, position_ids=pos)
        delta = self._states_at_mask(out.hidden_states[-1], ids, tok.mask_token_id)  # (K, H)
        row = {k: i for i, k in enumerate(lengths)}
        return delta[torch.tensor([row[k] for k in n.tolist()], device=device)]


def template_ids(template: str, tokenizer) -> tuple[list[int], int]:
    """The token ids of `template` with its sentence slot left empty (special tokens included)
    and how many of them come before the slot: a sentence's ids go at that index."""
    filled = template.replace(MASK_SLOT, tokenizer.mask_token)
    empty = tokenizer(" ".join(filled.replace(SLOT, "").split()))["input_ids"]
    prefix_text = filled.split(SLOT)[0].strip()
    with_specials = tokenizer(prefix_text)["input_ids"]
    lead = 0  # special tokens before the text ([CLS], <s>)
    while lead < len(with_specials) and with_specials[lead] in tokenizer.all_special_ids:
        lead += 1
    return empty, lead + len(tokenizer(prefix_text, add_special_tokens=False)["input_ids"])


# Models whose position ids start after the padding index (fairseq's convention).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart")


def last_real_token(states, mask):  # (B, T, H), (B, T) -> (B, H)
    """Each row's state at its last real token, whichever side the padding is on."""
    import torch

    t = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)  # (B,) last position with mask 1
    return states[torch.arange(len(states), device=states.device), t]


@POOLERS.register("last_token")
class LastToken(Pooler):
    """Last real token's state of the last layer (last_token:K: of hidden state K), for decoders.

    A causal model's last token is the only one that has seen the whole sentence (GPT-style
    embeddings: Neelakantan et al., 2022; the last-token pooling of PromptEOL, Jiang et al.,
    2023, kongds/scaling_sentemb). Left and right padding both read the last real token. K as in
    `layers` (0 = embedding output, negative from the end); default -1, the last layer."""

    def __init__(self, layer: int = -1):
        self.layer = layer

    @classmethod
    def from_arg(cls, arg: str | None) -> LastToken:
        try:
            return cls(int(arg) if arg else -1)
        except ValueError:
            raise UnknownUnit(
                f"pooler last_token:{arg}: expected one layer index, e.g. last_token:6"
            ) from None

    def check_config(self, config: dict) -> None:
        if n_layers(config) is not None:
            check_layers(f"last_token:{self.layer}", (self.layer,), n_layers(config) + 1)

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        check_layers(f"last_token:{self.layer}", (self.layer,), len(hidden_states))
        return last_real_token(hidden_states[self.layer], mask)


@POOLERS.register("prompteol")
class PromptEOL(Pooler):
    """Last token's last-layer state of a one-word prompt (prompteol:TEMPLATE), for decoders.

    e = h_L[last token] of TEMPLATE with [X] replaced by the sentence; default
    ``This sentence : "[X]" means in one word:"`` (`--template`). PromptEOL (Jiang et al., 2023,
    "Scaling Sentence Embeddings with Large Language Models"), kongds/scaling_sentemb
    evaluation.py, whose sentence clean-up is followed: a final period unless the sentence ends
    in . ? " ', double quotes made single, a final ? made a period. Prompts are not truncated."""

    default = 'This sentence : "[X]" means in one word:"'
    no_truncation = True

    def __init__(self, template: str):
        self.template = template

    @classmethod
    def from_arg(cls, arg: str | None) -> PromptEOL:
        return cls(check_template(arg or cls.default, "prompteol", mask_slot=False))

    def prepare(self, sentences: list[str], tokenizer) -> list[str]:
        out = []
        for s in sentences:
            s = end_sentence(s).replace('"', "'")
            s = s[:-1] + "." if s.endswith("?") else s
            out.append(self.template.replace(SLOT, s))
        return out

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        return last_real_token(hidden_states[-1], mask)


@POOLERS.register("ditto")
class Ditto(Pooler):
    """Tokens weighted by one attention head's self-attention, on first+last (ditto:LAYER,HEAD).

    e = sum_t a_tt (h0_t + hL_t) / 2 over real tokens, with a_tt the diagonal of head HEAD's
    attention map in layer LAYER (0-based; default 0,9, the paper's choice for BERT-base), h0
    the embedding output and hL the last layer; not renormalised. Ditto (Chen et al., 2023),
    alibaba-damo-academy/SpokenNLP ditto/evaluation_ditto.py (`att_first_last`). Runs the
    eager attention kernel, which is the one that returns attention maps."""

    needs_attentions = True

    def __init__(self, layer: int, head: int):
        self.layer, self.head = layer, head

    @classmethod
    def from_arg(cls, arg: str | None) -> Ditto:
        parts = (arg or "0,9").split(",")
        try:
            layer, head = (int(x) for x in parts)
        except ValueError:
            layer = head = -1
        if layer < 0 or head < 0:
            raise UnknownUnit(
                f"pooler ditto:{arg}: expected LAYER,HEAD, two indices >= 0 (e.g. ditto:0,9)"
            )
        return cls(layer, head)

    def _check(self, layers: int | None, heads: int | None) -> None:
        if layers is not None and self.layer >= layers:
            raise ValueError(
                f"pooler ditto:{self.layer},{self.head}: layer {self.layer} out of range; this "
                f"model's attention layers are 0 to {layers - 1}"
            )
        if heads is not None and self.head >= heads:
            raise ValueError(
                f"pooler ditto:{self.layer},{self.head}: head {self.head} out of range; this "
                f"model's heads are 0 to {heads - 1}"
            )

    def check_config(self, config: dict) -> None:
        self._check(n_layers(config), n_heads(config))

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):  # -> (B, H)
        attentions = inputs.attentions if inputs is not None else None
        if attentions is None:
            raise ValueError("pooler ditto needs the attention maps (output_attentions)")
        self._check(len(attentions), attentions[0].shape[1])
        diag = attentions[self.layer][:, self.head].diagonal(dim1=1, dim2=2)  # (B, T, T) -> (B, T)
        w = (diag * mask.to(diag.dtype)).unsqueeze(-1)  # (B, T, 1): pad tokens weigh 0
        return ((hidden_states[0] + hidden_states[-1]) / 2 * w).sum(1)  # (B, H)


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
