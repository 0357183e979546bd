"""Noise below the text: augmentations a view builder attaches to a view (`views.Augment`).

Token level (ESimCSE's repeated subwords) acts on each tokenized sentence before padding;
embedding level (ConSERT's position shuffle, token and feature cutoff) acts on the view's rows of
the backbone's embedding layer, through hooks installed for one forward pass
(`embedding_layer_hooks`). Random draws use Python's `random` (as both reference repositories
do), whose state a run saves with its checkpoints.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from embeval.core.views import Augment


@dataclass(frozen=True)
class TokenRepetition(Augment):
    """ESimCSE's word repetition at the subword level; see `embeval.core.views.esimcse`."""

    dup_rate: float = 0.32
    max_dup: int = 10

    def __post_init__(self):
        if not 0.0 <= self.dup_rate < 1.0:
            raise ValueError(f"view esimcse: dup_rate must be in [0, 1), got {self.dup_rate}")
        if self.max_dup < 1:
            raise ValueError(f"view esimcse: max_dup must be >= 1, got {self.max_dup}")

    def token_ids(self, ids: list[int]) -> list[int]:
        bound = min(self.max_dup, int(self.dup_rate * len(ids)))
        if bound <= 0:  # the code draws nothing then: SimCSE's view exactly
            return ids
        n = random.randrange(bound)
        dup = set(random.sample(range(1, len(ids) - 1), n))  # never [CLS] (0) nor [SEP] (L-1)
        return [t for i, t in enumerate(ids) for _ in range(2 if i in dup else 1)]


@dataclass(frozen=True)
class TokenShuffle(Augment):
    """ConSERT's token shuffle: the position ids of a sentence's real tokens ([CLS] and [SEP]
    included, as in the code) are permuted; padding keeps its positions."""

    def position_ids(self, position_ids, attention_mask):
        import torch

        out = position_ids.clone()
        for row, n in enumerate(attention_mask.sum(1).tolist()):
            perm = list(range(n))
            random.shuffle(perm)
            out[row, :n] = position_ids[row, torch.tensor(perm, device=position_ids.device)]
        return out


@dataclass(frozen=True)
class Cutoff(Augment):
    """ConSERT's cutoff on the embedding layer's output: `token` zeroes int(rate * n) of a
    sentence's n real tokens (rows), `feature` int(rate * H) of its H dimensions (columns), drawn
    per sentence."""

    kind: str = "feature"
    rate: float = 0.2

    def __post_init__(self):
        if self.kind not in ("token", "feature"):
            raise ValueError(f"cutoff kind must be token or feature, got {self.kind!r}")
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"cutoff_rate must be in [0, 1), got {self.rate}")

    def embeddings(self, emb, attention_mask):
        import torch

        keep = torch.ones_like(emb)
        for row, n in enumerate(attention_mask.sum(1).tolist()):
            size = n if self.kind == "token" else emb.shape[-1]
            idx = list(range(size))
            random.shuffle(idx)
            cut = torch.tensor(idx[: int(size * self.rate)], dtype=torch.long, device=emb.device)
            if self.kind == "token":
                keep[row, cut, :] = 0
            else:
                keep[row, :, cut] = 0
        return emb * keep


def repeat_tokens(inputs: dict, augment: Sequence[Augment | None], b: int, pad_id: int) -> dict:
    """Apply each view's `token_ids` to its rows of `inputs` ((V b, T) tensors, view v in rows
    v b .. (v + 1) b) and pad all rows again to the longest; unchanged when no view has one."""
    import torch

    if not any(a is not None and type(a).token_ids is not Augment.token_ids for a in augment):
        return inputs
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows = []
    for r in range(ids.shape[0]):
        seq = ids[r, : int(mask[r].sum())].tolist()
        aug = augment[r // b]
        rows.append(aug.token_ids(seq) if aug is not None else seq)
    width = max(len(s) for s in rows)
    new_ids = torch.full((len(rows), width), pad_id, dtype=ids.dtype)
    new_mask = torch.zeros((len(rows), width), dtype=mask.dtype)
    for r, seq in enumerate(rows):
        new_ids[r, : len(seq)] = torch.tensor(seq, dtype=ids.dtype)
        new_mask[r, : len(seq)] = 1
    out = {"input_ids": new_ids.to(ids.device), "attention_mask": new_mask.to(mask.device)}
    if "token_type_ids" in inputs:  # single sentences: segment 0 throughout
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
    return out


@contextlib.contextmanager
def embedding_layer_hooks(backbone, augment: Sequence[Augment | None], b: int, attention_mask):
    """For one forward pass of (V b) rows: each view's `position_ids` and `embeddings` applied to
    its rows of `backbone.embeddings` (BERT, RoBERTa and their kin, whose embedding module takes
    `position_ids`). A backbone without one is refused with the model named."""
    active = [(v, a) for v, a in enumerate(augment) if a is not None]
    active = [(v, a) for v, a in active if a.changes_embedding_layer()]
    if not active:
        yield
        return
    layer = getattr(backbone, "embeddings", None)
    if layer is None:
        raise ValueError(
            f"{type(backbone).__name__} has no `embeddings` module: embedding-layer "
            "augmentations (ConSERT's) need a BERT-like backbone"
        )

    def before(module, args, kwargs):
        import torch

        ids = kwargs.get("input_ids")
        pos = kwargs.get("position_ids")
        pad = getattr(module, "padding_idx", None)  # RoBERTa counts positions from pad + 1
        if pos is None and pad is not None:
            real = ids.ne(pad).long()
            pos = torch.cumsum(real, 1) * real + pad
        elif pos is None:
            pos = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        pos = pos.clone()
        for v, a in active:
            rows = slice(v * b, (v + 1) * b)
            pos[rows] = a.position_ids(pos[rows], attention_mask[rows])
        return args, {**kwargs, "position_ids": pos}

    def after(module, args, output):
        parts = [output[v * b : (v + 1) * b] for v in range(output.shape[0] // b)]
        for v, a in active:
            parts[v] = a.embeddings(parts[v], attention_mask[v * b : (v + 1) * b])
        import torch

        return torch.cat(parts)

    handles = []
    if any(type(a).position_ids is not Augment.position_ids for _, a in active):
        handles.append(layer.register_forward_pre_hook(before, with_kwargs=True))
    if any(type(a).embeddings is not Augment.embeddings for _, a in active):
        handles.append(layer.register_forward_hook(after))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class PromptWrap(Augment):
    """A sentence's tokens put into a PromptBERT template (``... "[X]" means [MASK] .``).

    The sentence is tokenized and cut to max_length first, then the template's tokens go around
    it, so truncation cuts the sentence and never the template (the prompt may end longer than
    max_length), as kongds/Prompt-BERT's train.py builds its inputs (template prefix ids +
    sentence ids + suffix ids). The template's ids are those of the template with the slot
    empty (`embeval.core.poolers.template_ids`), the ones template denoising runs; a mask token
    inside the sentence is dropped so each prompt holds exactly one."""

    def __init__(self, template: str):
        self.template = template
        self._empty: list[int] | None = None

    def bind(self, tokenizer) -> None:
        from embeval.core.poolers import mask_token, template_ids

        mask_token(tokenizer, "promptbert (view)")
        self._empty, self._prefix = template_ids(self.template, tokenizer)
        self._special = set(tokenizer.all_special_ids)
        self._mask = tokenizer.mask_token_id

    def token_ids(self, ids: list[int]) -> list[int]:
        if self._empty is None:
            raise RuntimeError("PromptWrap.token_ids before bind(tokenizer)")
        a, z = 0, len(ids)  # the sentence's own tokens: special tokens off both ends
        while a < z and ids[a] in self._special:
            a += 1
        while z > a and ids[z - 1] in self._special:
            z -= 1
        words = [i for i in ids[a:z] if i != self._mask]
        return self._empty[: self._prefix] + words + self._empty[self._prefix :]
