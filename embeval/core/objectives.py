"""Objectives: trainable heads beside the encoder, whose loss joins (or replaces) the
contrastive one.

An objective is a `torch.nn.Module` made once per run by a registered factory (usually the
class) called as ``factory(model, tokenizer, **args)``, where `model` is the SentenceModel under
training and `args` come from ``--objective-arg KEY=VALUE`` (typed by the signature, as loss
arguments are). Its trainable parameters join the optimizer and are saved in `last/` for
`--resume`, never in the exported checkpoints (`best/`, `last/` load as the encoder alone).
Frozen helpers it holds (a generator) are kept out of both. Per batch, ``forward(batch)`` (a
`embeval.core.negatives.Batch`) returns a scalar that is added to the contrastive loss, or
replaces it when the class sets ``contrastive = False``. ``prepare(data)`` (a classmethod) may
rewrite or refuse the training data before anything is trained: a clear ValueError then.
``--objective NAME``; a user's own is ``package.module:Class`` or an entry point in the group
``embeval.objectives``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from embeval.core.train_data import TrainData
from embeval.registry import Registry, UnknownUnit


def _check_objective(label: str, factory) -> None:
    if not callable(factory):
        raise UnknownUnit(f"objective {label}: expected a class making a torch.nn.Module")


OBJECTIVES: Registry[Callable] = Registry("objective", check=_check_objective)


def objective_arguments(name: str, given: dict | None = None) -> dict:
    """The keyword arguments objective `name` is built with: its signature's defaults after
    (model, tokenizer), overridden by `given` (text converted to the default's type)."""
    from embeval.core.losses import bind_loss_arguments

    return bind_loss_arguments(OBJECTIVES.get(name), given, name, kind="objective")


def make_objective(name: str | None, args: dict, model, tokenizer) -> torch.nn.Module | None:
    """The run's objective (None without one). The Trainer seeds torch with the run's seed
    first, so a head's initial weights (and any seed it draws) follow the run's seed."""
    if name is None:
        return None
    return OBJECTIVES.get(name)(model, tokenizer, **objective_arguments(name, args))


def prepare_data(name: str | None, data: TrainData) -> TrainData:
    """The training data as objective `name` reads it (unchanged without one)."""
    if name is None:
        return data
    prepare = getattr(OBJECTIVES.get(name), "prepare", None)
    return data if prepare is None else prepare(data)


def trainable(objective) -> list:
    """The objective's parameters the optimizer updates."""
    return [] if objective is None else [p for p in objective.parameters() if p.requires_grad]


# sentence-transformers' AllNLI label ids (its training_nli example): 0, 1, 2.
NLI_LABELS = ("contradiction", "entailment", "neutral")


@OBJECTIVES.register("sbert-nli")
class SBertNLI(torch.nn.Module):
    """SBERT's NLI objective (Reimers & Gurevych, EMNLP 2019; sentence-transformers SoftmaxLoss).

    logits = W [u; v; |u - v|] + b with u, v the pooled embeddings of premise and hypothesis
    (not normalised), W (3, 3H) trained beside the encoder; loss = cross-entropy with the NLI
    label (contradiction 0, entailment 1, neutral 2, as sentence-transformers' AllNLI). It
    replaces the contrastive loss. The paper pools with the mean (--pooler avg). Data: a CSV
    sent0,sent1,label, or SimCSE's triplets sent0,sent1,hard_neg read as two labelled rows each:
    (sent0, sent1, entailment) and (sent0, hard_neg, contradiction); no neutral pairs then.
    """

    contrastive = False

    def __init__(self, model, tokenizer, num_labels: int = 3):
        super().__init__()
        hidden = model.backbone.config.hidden_size
        self.classifier = torch.nn.Linear(3 * hidden, num_labels)  # as SoftmaxLoss builds it

    @classmethod
    def prepare(cls, data: TrainData) -> TrainData:
        """Labelled (premise, hypothesis, label) rows; triplets become two rows each."""
        if data.columns == ("sent0", "sent1", "hard_neg"):
            rows = [
                r
                for s0, s1, hn in data.examples
                for r in ((s0, s1, NLI_LABELS[1]), (s0, hn, NLI_LABELS[0]))
            ]
            return TrainData(data.path, ("sent0", "sent1", "label"), rows, data.skipped_empty)
        if data.columns != ("sent0", "sent1", "label"):
            raise ValueError(
                f"objective sbert-nli needs labelled sentence pairs: {data.path} has columns "
                f"{','.join(data.columns)}; expected a CSV sent0,sent1,label (label one of "
                f"{', '.join(NLI_LABELS)}) or SimCSE's triplets sent0,sent1,hard_neg"
            )
        for i, ex in enumerate(data.examples):
            if ex[2].strip() not in NLI_LABELS:
                raise ValueError(
                    f"{data.path}: data row {i + 1} has label {ex[2]!r}; expected one of "
                    f"{', '.join(NLI_LABELS)}"
                )
        return data

    def forward(self, batch) -> torch.Tensor:  # ()
        dtype = self.classifier.weight.dtype  # float32: the head is outside autocast
        u, v = batch.emb[0].to(dtype), batch.emb[1].to(dtype)  # (b, H) premises, hypotheses
        labels = torch.tensor([NLI_LABELS.index(ex[2].strip()) for ex in batch.examples])
        logits = self.classifier(torch.cat([u, v, (u - v).abs()], -1))  # (b, 3)
        return F.cross_entropy(logits, labels.to(logits.device))


def mask_tokens(
    ids: torch.Tensor,  # (N, T) token ids
    special: torch.Tensor,  # (N, T) bool: [CLS], [SEP], padding
    ratio: float,
    mask_id: int,
    vocab: int,
    gen: torch.Generator,
) -> torch.Tensor:  # (N, T)
    """BERT's masking as DiffCSE's collator does it: each non-special token is picked with
    probability `ratio`; of those 80 % become [MASK], half the rest a random token, the rest
    stay."""
    u = torch.rand(ids.shape, generator=gen)  # one draw per purpose, on the CPU
    picked = (torch.rand(ids.shape, generator=gen) < ratio) & ~special
    to_mask = picked & (u < 0.8)
    to_random = picked & ~to_mask & (torch.rand(ids.shape, generator=gen) < 0.5)
    out = torch.where(to_mask, mask_id, ids)
    return torch.where(to_random, torch.randint(vocab, ids.shape, generator=gen), out)


def rtd_loss(
    logits: torch.Tensor,  # (N, T, 2) discriminator logits
    edited: torch.Tensor,  # (N, T) generator's tokens
    ids: torch.Tensor,  # (N, T) original tokens
    attention_mask: torch.Tensor,  # (N, T)
) -> torch.Tensor:  # ()
    """Replaced-token detection: label 1 where the generator's token differs from the original
    (inside the attention mask), 0 elsewhere; 2-way cross-entropy averaged over all N T cells,
    padding included, as DiffCSE's code computes it."""
    labels = ((edited != ids) & attention_mask.bool()).long()  # (N, T)
    return F.cross_entropy(logits.reshape(-1, 2).float(), labels.reshape(-1))


@OBJECTIVES.register("diffcse")
class DiffCSE(torch.nn.Module):
    """DiffCSE's replaced-token detection (Chuang et al., NAACL 2022; voidism/DiffCSE
    `diffcse/models.py`), added to the contrastive loss: loss = L_contrastive + weight * RTD.

    Each view's tokens are masked (`mask_ratio` 0.3, BERT's 80/10/10 scheme); a frozen MLM
    `generator` (a checkpoint with the trained model's tokenizer, DistilBERT in the paper) fills
    every position with its argmax ([CLS] kept); a discriminator, a copy of the encoder as
    training starts, reads that text with its first input embedding replaced by the view's
    sentence embedding (the training pooler's output) and a linear head predicts per token
    whether it was replaced (`rtd_loss`). weight 0.005 as run_diffcse.sh. As the code: every
    position where the generator's argmax differs counts as replaced, not only masked ones.
    Not reproduced: DiffCSE's BatchNorm projector (`--batchnorm`); the embedding is the
    training pooler's (SimCSE's MLP with --pooler cls). The masking draws from its own
    generator seeded by (the run's seed, step), so a resumed run masks as an uninterrupted one.
    """

    def __init__(
        self,
        model,
        tokenizer,
        generator: str = "",
        mask_ratio: float = 0.3,
        weight: float = 0.005,
    ):
        import copy

        from transformers import AutoModelForMaskedLM, AutoTokenizer

        super().__init__()
        if not generator:
            raise ValueError("objective diffcse needs its generator: --objective-arg generator=DIR")
        try:
            gen_tok = AutoTokenizer.from_pretrained(generator)
            gen = AutoModelForMaskedLM.from_pretrained(generator)
        except Exception as exc:
            raise ValueError(f"diffcse generator {generator}: cannot load it ({exc})") from exc
        if gen_tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"diffcse generator {generator}: its tokenizer differs from the trained model's; "
                "the discriminator reads the generator's token ids, so both need one vocabulary"
            )
        self._generator = [gen.eval().requires_grad_(False)]  # a list: frozen, not a submodule
        self.discriminator = copy.deepcopy(model.backbone)
        if getattr(self.discriminator, "pooler", None) is not None:
            self.discriminator.pooler = None  # per-token outputs only
        self.discriminator.requires_grad_(True)
        self.head = torch.nn.Linear(self.discriminator.config.hidden_size, 2)
        self.tokenizer, self.mask_ratio, self.weight = tokenizer, mask_ratio, weight
        self.seed = int(torch.randint(2**31, ()))  # from the run's seed (see make_objective)

    def forward(self, batch) -> torch.Tensor:  # ()
        views = batch.views
        inputs = batch.tokenize([t for c in views.order for t in views.texts[c]])  # (V b, T)
        ids, attn = inputs["input_ids"], inputs["attention_mask"]
        special = torch.tensor(
            [self.tokenizer.get_special_tokens_mask(r, already_has_special_tokens=True)
             for r in ids.tolist()], dtype=torch.bool,
        )  # fmt: skip
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + batch.step)
        masked = mask_tokens(ids.cpu(), special, self.mask_ratio, self.tokenizer.mask_token_id,
                             len(self.tokenizer), rng).to(ids.device)  # fmt: skip
        gen = self._generator[0].to(ids.device)
        with torch.no_grad():
            edited = gen(input_ids=masked, attention_mask=attn).logits.argmax(-1)  # (V b, T)
        edited[:, 0] = ids[:, 0]  # [CLS] stays
        edited = edited * attn
        cond = batch.emb.reshape(-1, batch.emb.shape[-1])  # (V b, H) sentence embeddings

        def first_is_sentence(module, args, out):  # (V b, T, H) input embeddings
            return torch.cat([cond.unsqueeze(1).to(out.dtype), out[:, 1:]], 1)

        hook = self.discriminator.embeddings.register_forward_hook(first_is_sentence)
        try:
            hidden = self.discriminator(input_ids=edited, attention_mask=attn).last_hidden_state
        finally:
            hook.remove()
        return self.weight * rtd_loss(self.head(hidden), edited, ids, attn)
