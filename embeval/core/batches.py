"""Batch construction: which examples a step draws, the views they become, and the loss of them.

Each step draws this process's slice of a global batch (a seeded shuffle per epoch, so a run
restarts anywhere). A view builder (`embeval.core.views`) turns the examples into texts: view 0
the anchors, view 1 their positives, further views hard-negative columns. The model encodes
them; extra-negative providers (`embeval.core.negatives`) may add candidate columns; then
`contrastive_loss` forms the cosine similarity matrix, as SimCSE's `cl_forward` does, and hands
it to the loss (`embeval.core.losses`) with the config's temperature and loss arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embeval.core import distributed as dist
from embeval.core.augment import embedding_layer_hooks, repeat_tokens
from embeval.core.losses import Loss, all_views, bind_loss_arguments, get_loss, in_batch_only
from embeval.core.negatives import (
    Batch,
    load_provider_states,
    make_providers,
    provider_states,
)
from embeval.core.train_config import TrainConfig, _flat
from embeval.core.train_data import TrainData, epoch_order
from embeval.core.views import VIEWS, extra_views, view_arguments, view_name


def contrastive_loss(
    emb: torch.Tensor,  # (V, b, H) the views' embeddings
    cfg: TrainConfig,
    extra: torch.Tensor | None = None,  # (k, H) providers' candidate columns
    fn: Loss | None = None,  # the loss cfg.loss names, when already looked up
    temperature: torch.Tensor | None = None,  # () a provider's learnable one, else cfg's
) -> torch.Tensor:  # ()
    """The training loss of one batch from its embeddings, as SimCSE's `cl_forward` forms it.

    emb[0] holds the anchors, emb[1] their positives (the second dropout view, or sent1) and
    emb[2:] hard negatives when present; `extra` the providers' columns. Vectors are
    L2-normalised in float32 (cosines), then gathered over processes; sim = anchors @
    candidates.T, (W b, W b (V - 1) + W k) with positives on the diagonal, goes to the loss
    `cfg.loss` with `cfg.temperature` and its arguments (`cfg.loss_args` over its defaults).
    A loss marked `all_views` (NT-Xent) gets every view against every view instead:
    (V W b, V W b + W k)."""
    fn = fn or get_loss(cfg.loss)
    emb = F.normalize(emb.float(), dim=-1)  # cosine in float32
    anchors = dist.gather_with_grad(emb[0])  # (W b, H)
    cands = [dist.gather_with_grad(e) for e in emb[1:]]  # (V - 1) x (W b, H)
    if extra is not None:
        cands.append(dist.gather_with_grad(F.normalize(extra.float(), dim=-1)))  # (W k, H)
    if all_views(fn):  # every view against every view (NT-Xent): (V W b, V W b + W k)
        rows = torch.cat([anchors, *cands[: len(emb) - 1]])
        sim = rows @ torch.cat([rows, *cands[len(emb) - 1 :]]).T
    else:
        sim = anchors @ torch.cat(cands).T  # (W b, W b (V - 1) + W k)
    tau = cfg.temperature if temperature is None else temperature
    return fn(sim, tau, **bind_loss_arguments(fn, cfg.loss_args, cfg.loss))


# ---------------------------------------------------------------------- batch sizes
def negatives_per_anchor(global_batch: int, extra_columns: int, in_batch_only: bool) -> int:
    """Negatives in each anchor's row of the similarity matrix: the other sentences of the
    global batch, plus the extra views' columns (a supervised CSV's hard_neg) when the loss
    reads them. Providers' columns are not counted (a queue starts empty). 0 makes a
    contrastive loss identically 0 (InfoNCE of a single logit)."""
    return global_batch - 1 + (0 if in_batch_only else extra_columns * global_batch)


def _row_shape(
    data: TrainData, loss: str, view: str | None, view_args: dict | None = None
) -> tuple[int, bool]:
    """(extra view columns per anchor, whether the loss reads only the in-batch columns)."""
    try:
        extra = extra_views(view_name(view, data.columns), data.examples[0], view_args)
    except ValueError as exc:  # e.g. view 'pairs' on one sentence per line
        raise ValueError(f"{data.path}: {exc}") from exc
    return extra, in_batch_only(get_loss(loss))


def check_batch_size(
    batch_size: int,
    world: int,
    data: TrainData,
    loss: str,
    view: str | None = None,
    view_args: dict | None = None,
) -> None:
    """Refuse a batch that leaves no negative for the loss, or that the file cannot fill."""
    n = len(data.examples)
    extra, only_in_batch = _row_shape(data, loss, view, view_args)
    least = 1 if negatives_per_anchor(world, extra, only_in_batch) else 2  # per process
    if batch_size < least:
        why = (
            f"{loss} does not use hard_neg columns"
            if only_in_batch
            else "a CSV with a hard_neg column would give each row a negative of its own"
        )
        raise ValueError(
            f"batch size {batch_size} x {world} process(es) leaves {loss} no negative: each "
            f"sentence of {data.path} is contrasted with the other sentences of its batch "
            f"({why}), so the loss would be 0 and nothing learned; use --batch-size {least} "
            "or more"
        )
    if batch_size * world > n:
        fix = (
            f"use --batch-size {n // world} or less"
            if n // world >= least
            else f"{loss} needs at least {least * world} for one batch with a negative"
        )
        raise ValueError(
            f"batch size {batch_size} x {world} process(es) is larger than the {n} examples in "
            f"{data.path}; {fix}"
        )


def steps_per_epoch(
    global_batch: int, world: int, data: TrainData, loss: str, view: str | None = None
) -> int:
    """Batches per epoch. Several processes drop the ragged last batch (their gathers need equal
    batches); one process keeps it, unless it would hold a single example with no negative (a
    1x1 similarity matrix: loss 0, yet AdamW's momentum would still move the weights)."""
    full, rest = divmod(len(data.examples), global_batch)
    if world > 1 or rest == 0:
        return full
    if not negatives_per_anchor(rest, *_row_shape(data, loss, view)):
        return full
    return full + 1


# ---------------------------------------------------------------------- batches
class Batches:
    """This process's batches and their loss; `config` is resolved (its view named).

    `forward` encodes model inputs to (n, H) (the model, or its DDP wrapper); `model` is the
    SentenceModel under training, which extra-negative providers see."""

    def __init__(
        self,
        data: TrainData,
        config: TrainConfig,
        tokenizer,
        device: torch.device,
        world: int,
        forward: torch.nn.Module,
        model: torch.nn.Module,
        amp: bool,
    ):
        self.data, self.config, self.tokenizer = data, config, tokenizer
        self.device, self.world, self.amp = device, world, amp
        self.forward, self.model = forward, model
        self.view = VIEWS.get(config.view)
        self.view_args = view_arguments(config.view, config.view_args)
        self.loss_fn = get_loss(config.loss)
        self.providers = make_providers(config.negatives, _flat(config.negatives_args))
        for provider in self.providers:  # settings the data cannot serve fail before any step
            if hasattr(provider, "check"):
                provider.check(len(data.examples), config.batch_size * world, model, tokenizer)
        if not self.providers and len(self.view(data.examples[:1], **self.view_args).order) == 1:
            raise ValueError(
                f"view {config.view} gives anchors only: a negatives provider must give the "
                "candidates (e.g. --negatives teacher)"
            )
        temperatures = [p for p in self.providers if hasattr(p, "temperature")]
        if len(temperatures) > 1:
            raise ValueError("two negatives providers set the temperature; use one of them")
        self._temperature = temperatures[0].temperature if temperatures else None
        self.steps_per_epoch = steps_per_epoch(
            config.batch_size * world, world, data, config.loss, config.view
        )
        self._perm: tuple[int, torch.Tensor] | None = None
        self._last: Batch | None = None  # what providers saw, for their step_end

    def examples(self, step: int) -> list[tuple[str, ...]]:
        """This process's examples for `step`: a seeded shuffle per epoch, restartable anywhere."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, epoch_order(len(self.data.examples), self.config.seed, epoch))
        gb, b = self.config.batch_size * self.world, self.config.batch_size
        idx = self._perm[1][pos * gb : (pos + 1) * gb]
        idx = idx[dist.rank() * b : (dist.rank() + 1) * b]
        return [self.data.examples[i] for i in idx.tolist()]

    def tokenize(self, texts: list[str]) -> tuple[dict, int]:
        """Pad to the longest, truncate to max_length; also count the texts that were cut."""
        n = self.config.max_length
        enc = self.tokenizer(
            texts, truncation=True, max_length=n, padding=True, return_tensors="pt"
        )
        if getattr(enc, "encodings", None):  # fast tokenizer: cut tokens are kept as overflow
            cut = sum(bool(e.overflowing) for e in enc.encodings)
        else:
            probe = self.tokenizer(texts, truncation=True, max_length=n + 1)["input_ids"]
            cut = sum(len(ids) > n for ids in probe)
        return {k: v.to(self.device) for k, v in enc.items()}, cut

    def loss(self, examples: list[tuple[str, ...]], step: int) -> tuple[torch.Tensor, int]:
        """The loss of `examples` (drawn at `step`) and how many of their texts were cut."""
        b = len(examples)
        views = self.view(examples, **self.view_args)
        inputs, cut = self.tokenize([t for col in views.texts for t in col])
        if views.order != tuple(range(len(views.texts))):  # a shared column: tokenized once
            rows = torch.cat([torch.arange(b) + c * b for c in views.order]).to(self.device)
            inputs = {k: v[rows] for k, v in inputs.items()}  # (V b, T)
        if views.augment:  # noise below the text (embeval.core.augment)
            inputs = repeat_tokens(inputs, views.augment, b, self.tokenizer.pad_token_id or 0)
        hooks = embedding_layer_hooks(
            self.model.backbone, views.augment, b, inputs["attention_mask"]
        )
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            with hooks:
                emb = self.forward(**inputs)  # (V b, H)
            emb = emb.view(len(views.order), b, -1)  # (V, b, H)
            extra = None
            if self.providers:  # their own forward passes (a momentum encoder) autocast too
                new_epoch = step % self.steps_per_epoch == 0
                tokenize = lambda t: self.tokenize(t)[0]  # noqa: E731
                batch = Batch(
                    step,
                    examples,
                    views,
                    emb,
                    self.model,
                    tokenize,
                    new_epoch,
                    self.config.max_length,
                )
                extra = torch.cat([p.columns(batch) for p in self.providers])  # (k, H)
                self._last = batch
                for p in self.providers:  # e.g. DistilCSE's projection into the teacher's space
                    if hasattr(p, "project"):
                        emb = p.project(emb)
        tau = self._temperature() if self._temperature else None  # a learnable one
        return contrastive_loss(emb, self.config, extra, self.loss_fn, tau), cut

    def extra_parameters(self) -> list:
        """The providers' own trainable weights (the optimizer's third group)."""
        return [w for p in self.providers if hasattr(p, "parameters") for w in p.parameters()]

    def provider_states(self) -> list:
        """The providers' states, for `last/`."""
        return provider_states(self.providers)

    def load_provider_states(self, states: list | None, where: str) -> None:
        load_provider_states(self.providers, states, where)

    def step_end(self) -> None:
        """Tell the providers that the optimizer stepped on the last batch."""
        for provider in self.providers:
            if self._last is not None and hasattr(provider, "step_end"):
                provider.step_end(self._last)
