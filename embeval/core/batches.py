"""Batch construction: which examples a step draws, the views they become, and the loss of them.

Each step draws this process's slice of a global batch (a seeded shuffle per epoch, so a run
restarts anywhere). A view builder (`embeval.core.views`) turns the examples into texts: view 0
the anchors, view 1 their positives, further views hard-negative columns. The model encodes
them; extra-negative providers (`embeval.core.negatives`) may add candidate columns; then
`contrastive_loss` forms the cosine similarity matrix, as SimCSE's `cl_forward` does, and hands
it to the loss (`embeval.core.losses`) with the config's temperature and loss arguments.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from embeval.core import distributed as dist
from embeval.core.augment import embedding_layer_hooks, repeat_tokens
from embeval.core.losses import (
    Loss,
    all_views,
    batch_inputs,
    bind_loss_arguments,
    get_loss,
    in_batch_only,
)
from embeval.core.negatives import (
    Batch,
    load_provider_rank_states,
    load_provider_states,
    make_providers,
    provider_rank_states,
    provider_states,
)
from embeval.core.poolers import POOLERS
from embeval.core.train_config import TrainConfig, _flat
from embeval.core.train_data import TrainData, epoch_order
from embeval.core.views import VIEWS, extra_views, view_arguments, view_name


def similarity(
    emb: torch.Tensor,  # (V, b, H) the views' embeddings
    extra: torch.Tensor | None = None,  # (k, H) providers' candidate columns
    dim: int | None = None,  # keep the first `dim` coordinates (Matryoshka); None: all
    every_view: bool = False,  # rows of every view, not the anchors only (NT-Xent)
) -> torch.Tensor:  # (W b, W b (V - 1) + W k), or (V W b, V W b + W k)
    """Cosines of the anchors (emb[0]) with the candidates (emb[1:], then `extra`), gathered
    over processes, in float32: the matrix a loss receives. With `every_view`, every view
    against every view, then the extra columns."""
    emb = F.normalize(emb[..., :dim].float(), dim=-1)  # cosine in float32
    anchors = dist.gather_with_grad(emb[0])  # (W b, H)
    cands = [dist.gather_with_grad(e) for e in emb[1:]]  # (V - 1) x (W b, H)
    if extra is not None:
        cands.append(dist.gather_with_grad(F.normalize(extra[..., :dim].float(), dim=-1)))
    if every_view:
        rows = torch.cat([anchors, *cands[: len(emb) - 1]])
        return rows @ torch.cat([rows, *cands[len(emb) - 1 :]]).T
    return anchors @ torch.cat(cands).T


def contrastive_loss(
    emb: torch.Tensor,  # (V, b, H) the views' embeddings
    cfg: TrainConfig,
    extra: torch.Tensor | None = None,  # (k, H) providers' candidate columns
    fn: Loss | None = None,  # the loss cfg.loss names, when already looked up
    inputs: dict | None = None,  # the batch inputs the loss takes (losses.BATCH_INPUTS)
    temperature: torch.Tensor | None = None,  # () a provider's learnable one, else cfg's
) -> torch.Tensor:  # ()
    """The training loss of one batch from its embeddings, as SimCSE's `cl_forward` forms it.

    emb[0] holds the anchors, emb[1] their positives (the second dropout view, or sent1) and
    emb[2:] hard negatives when present; `extra` the providers' columns. Vectors are
    L2-normalised in float32 (cosines), then gathered over processes; sim = anchors @
    candidates.T, (W b, W b (V - 1) + W k) with positives on the diagonal, goes to the loss
    `cfg.loss` with `cfg.temperature` and its arguments (`cfg.loss_args` over its defaults).

    Matryoshka (Kusupati et al. 2022; sentence-transformers' MatryoshkaLoss): with
    `cfg.matryoshka_dims` the loss is sum_d w_d * L(sim of the first d coordinates), each
    prefix normalised on its own; w_d from `cfg.matryoshka_weights` (default 1). Any loss can be
    wrapped; `inputs` (e.g. the reference model's full-width ref_sim) are the same for every d.
    A loss marked `all_views` (NT-Xent) gets every view against every view instead:
    (V W b, V W b + W k). `temperature` is a provider's learnable one (DistilCSE), else cfg's.
    """
    fn = fn or get_loss(cfg.loss)
    kwargs = {**bind_loss_arguments(fn, cfg.loss_args, cfg.loss), **(inputs or {})}
    tau = cfg.temperature if temperature is None else temperature
    dims = cfg.matryoshka_dims or [None]
    weights = cfg.matryoshka_weights or [1.0] * len(dims)
    every = all_views(fn)
    terms = [
        w * fn(similarity(emb, extra, d, every), tau, **kwargs)
        for d, w in zip(dims, weights, strict=True)
    ]
    return terms[0] if len(terms) == 1 else torch.stack(terms).sum()


def two_d_matryoshka(
    emb: torch.Tensor,  # (V, b, H) last layer's embeddings
    layers: list[torch.Tensor],  # n x (V, b, H) the sampled layers' embeddings
    cfg: TrainConfig,
    extra: torch.Tensor | None = None,
    fn: Loss | None = None,
    inputs: dict | None = None,
    temperature: torch.Tensor | None = None,
) -> torch.Tensor:  # ()
    """2D Matryoshka (2DMSE, Li et al. 2024), as sentence-transformers' Matryoshka2dLoss
    (AdaptiveLayerLoss over MatryoshkaLoss) computes it with its default weights 1:

    L = L(last) + (1/n) sum_l L(layer l) + sum_l T * KL(softmax(e_last / T) || softmax(e_l / T)),
    L the (Matryoshka) contrastive loss, e the raw embeddings of all views (rows), the softmax
    over their coordinates, T = cfg.matryoshka_kl_temperature (0.3; 0: no KL term), the last
    layer detached in the KL (its teacher), KL averaged over rows (batchmean). The code softmaxes
    embedding coordinates, not similarity rows; that is followed. Each step uses every
    Matryoshka width (its n_dims_per_step=1 samples one) and the providers' columns of the
    last layer.
    """
    loss = contrastive_loss(emb, cfg, extra, fn, inputs, temperature)
    t = cfg.matryoshka_kl_temperature
    h = emb.shape[-1]
    teacher = F.softmax(emb.reshape(-1, h).float() / t, -1).detach() if t > 0 else None
    for layer in layers:
        loss = loss + contrastive_loss(layer, cfg, extra, fn, inputs, temperature) / len(layers)
        if teacher is not None:
            student = F.log_softmax(layer.reshape(-1, h).float() / t, -1)
            loss = loss + F.kl_div(student, teacher, reduction="batchmean") * t
    return loss


def reference_model(name: str, cfg: TrainConfig, backbone: torch.nn.Module, tokenizer):
    """The frozen model behind a loss's `ref_sim` (--reference-model): `initial` is a copy of
    the backbone being trained as it starts (with the run's evaluation pooler: GCSE's base
    model), `random-tiny` the random tiny BERT of the run's seed, anything else a checkpoint (its
    declared pooling). It must share the trained model's tokenizer: it reads the same ids."""
    import copy

    from embeval.core.model import SentenceModel, load_model, random_tiny

    if name == "initial":
        return SentenceModel(copy.deepcopy(backbone), cfg.eval_pooler).eval().requires_grad_(False)
    if name == "random-tiny":
        tiny, ref_tok = random_tiny(cfg.seed)
        ref = SentenceModel(tiny, "cls_before_pooler")
    else:
        ref, ref_tok, _ = load_model(name)
    if ref_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"--reference-model {name}: its tokenizer differs from the trained model's (it would "
            "read the same token ids as other words); use a reference with the same vocabulary"
        )
    return ref.eval().requires_grad_(False)


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
        objective: torch.nn.Module | None = None,
    ):
        self.data, self.config, self.tokenizer = data, config, tokenizer
        self.objective = objective  # `embeval.core.objectives`: a head with its own loss
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
        self.inputs = batch_inputs(self.loss_fn)  # e.g. ref_sim: the reference model scores
        self.reference = None
        if "ref_sim" in self.inputs:
            if config.reference_model is None:
                raise ValueError(
                    f"loss {config.loss} scores the batch with a frozen model: give "
                    "--reference-model (a checkpoint, or 'initial' for the starting weights)"
                )
            ref = reference_model(config.reference_model, config, model.backbone, tokenizer)
            self.reference = ref.to(device)
        width = getattr(getattr(model, "backbone", None), "config", None)
        width = getattr(width, "hidden_size", None)
        if width and any(d > width for d in config.matryoshka_dims):
            raise ValueError(
                f"matryoshka_dims {config.matryoshka_dims}: the model's embeddings have {width}"
            )
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
            for aug in views.augment:
                if aug is not None:
                    aug.bind(self.tokenizer)
            inputs = repeat_tokens(inputs, views.augment, b, self.tokenizer.pad_token_id or 0)
        hooks = embedding_layer_hooks(
            self.model.backbone, views.augment, b, inputs["attention_mask"]
        )
        hidden = []  # the backbone's outputs, when layers are sampled (2DMSE)
        hook = None
        if self.config.matryoshka_layers:
            hook = self.model.backbone.register_forward_hook(lambda m, a, out: hidden.append(out))
        tokenize = lambda t: self.tokenize(t)[0]  # noqa: E731
        new_epoch = step % self.steps_per_epoch == 0
        try:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                with hooks:
                    emb = self.forward(**inputs)  # (V b, H)
                layers = self._sampled_layers(hidden, inputs["attention_mask"])
                emb = emb.view(len(views.order), b, -1)  # (V, b, H)
                layers = [e.view(len(views.order), b, -1) for e in layers]
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
                extra = None
                if self.providers:  # their own forward passes (a momentum encoder) autocast too
                    extra = torch.cat([p.columns(batch) for p in self.providers])  # (k, H)
                    self._last = batch
                    for p in self.providers:  # e.g. DistilCSE's projection into the teacher's
                        if hasattr(p, "project"):
                            emb = p.project(emb)
        finally:
            if hook is not None:
                hook.remove()
        aux = None
        if self.objective is not None:  # outside autocast: heads run in float32
            aux = self.objective(batch)  # () this process's slice's mean
            if self.world > 1:
                # The trainer scales by the world size (for the gathered contrastive loss) and
                # the gradients are averaged over processes: 1 / world gives the gradient of
                # the global mean, and the value (for the log) is the global mean itself.
                whole = dist.mean_over_processes(aux)
                aux = aux / self.world + (whole - aux.detach() / self.world)
            if not getattr(self.objective, "contrastive", True):
                return aux, cut
        given = {}
        if self.reference is not None:
            with torch.no_grad():
                ref = self.reference(**inputs).view(len(views.order), b, -1)  # (V, b, H')
            given["ref_sim"] = similarity(ref)  # (W b, W b (V - 1))
        tau = self._temperature() if self._temperature else None  # a learnable one
        if layers:
            loss = two_d_matryoshka(emb, layers, self.config, extra, self.loss_fn, given, tau)
        else:
            loss = contrastive_loss(emb, self.config, extra, self.loss_fn, given, tau)
        return (loss if aux is None else loss + aux), cut

    def _sampled_layers(self, hidden: list, mask: torch.Tensor) -> list[torch.Tensor]:
        """2DMSE: the training pooler over `matryoshka_layers` layers drawn (Python's random,
        as sentence-transformers) from the embedding output and all but the last layer."""
        if not hidden:
            return []
        states = hidden[0].hidden_states  # (L + 1) x (V b, T, H)
        first = 2 if self.model.pooler in ("avg_first_last", "avg_top2") else 0  # two layers
        picks = range(first, len(states) - 1)
        n = self.config.matryoshka_layers
        picks = random.sample(picks, n) if n < len(picks) else list(picks)
        mlp = getattr(self.model.backbone, "pooler", None)
        pool = POOLERS.get(self.model.pooler)
        return [pool(mask, states[: i + 1], None if mlp is None else mlp(states[i])) for i in picks]

    def extra_parameters(self) -> list:
        """The providers' own trainable weights (the optimizer's third group)."""
        return [w for p in self.providers if hasattr(p, "parameters") for w in p.parameters()]

    def provider_states(self) -> list:
        """The providers' states, for `last/`."""
        return provider_states(self.providers)

    def load_provider_states(self, states: list | None, where: str) -> None:
        load_provider_states(self.providers, states, where)

    def provider_rank_states(self) -> list:
        """This process's own part of the providers' states (each rank's queue)."""
        return provider_rank_states(self.providers)

    def load_provider_rank_states(self, states: list) -> None:
        load_provider_rank_states(self.providers, states)

    def step_end(self) -> None:
        """Tell the providers that the optimizer stepped on the last batch."""
        for provider in self.providers:
            if self._last is not None and hasattr(provider, "step_end"):
                provider.step_end(self._last)
