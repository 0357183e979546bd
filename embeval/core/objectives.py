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
    """The run's objective (None without one)."""
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
