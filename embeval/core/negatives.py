"""Extra-negative providers: candidate columns beyond the batch's own views.

A provider adds columns to the similarity matrix. After the views' candidates (positives, then
hard negatives) come each provider's (k, H) embeddings, L2-normalised and gathered over
processes like the views: k more negatives in every anchor's row, which the loss sees as extra
columns. ESimCSE's momentum queue (Wu et al., COLING 2022: earlier batches' sentences encoded by
a momentum copy of the encoder) and a teacher's embeddings are such providers.

The registry holds factories (usually the provider class), called once per run with the
provider's settings as keyword arguments (``--negatives-arg KEY=VALUE``: each provider takes the
keys its signature names). `--negatives NAME` (repeatable) picks them; a user's own is
``package.module:Class`` or an entry point in the group ``embeval.negatives``. Built in:
ESimCSE's `momentum-queue`, DistilCSE's `teacher` and DCLR's `dclr-noise`.

Optional methods: `check(n_examples, global_batch, model, tokenizer)` refuses settings the data
or the model cannot serve before any step; `state_dict()` / `load_state_dict(state)` let `last/`
hold the provider's state (a queue, a momentum encoder), so that `--resume` continues it as an
uninterrupted run would; `rank_state()` / `load_rank_state(state)` the part that differs by
process (each rank's own queue), saved for every rank and given back to each. A provider with
trainable weights of its own (DistilCSE's logit scale and projection) lists them in
`parameters()` (the optimizer takes them), may map the views' embeddings into its columns' space
with `project(emb)` and may set the loss's temperature with `temperature()` (a tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embeval.registry import Registry, UnknownUnit

if TYPE_CHECKING:  # torch stays unimported until training: the CLI lists providers without it
    import torch

    from embeval.core.views import Views


@dataclass
class Batch:
    """What a provider sees of one training batch (this process's share of it)."""

    step: int  # optimizer steps taken before this batch
    examples: list[tuple[str, ...]]  # (b,) the training examples
    views: Views  # their texts, view by view
    emb: torch.Tensor  # (V, b, H) the views' embeddings as pooled in training: with grad, raw
    model: torch.nn.Module  # the SentenceModel under training (training pooler, train mode)
    tokenize: Callable[[list[str]], dict]  # texts -> model inputs on the device, cut as the batch
    new_epoch: bool = False  # the first batch of an epoch
    max_length: int = 32  # the training max_length, for a provider's own tokenizer


class ExtraColumns:
    """An extra-negative provider: subclass it, override `columns`, register the class."""

    def columns(self, batch: Batch) -> torch.Tensor:  # (k, H)
        """Candidate embeddings appended to every anchor's row for `batch`. k may be 0 and must
        be the same on every process (the columns are gathered); H is the model's width."""
        raise NotImplementedError

    def step_end(self, batch: Batch) -> None:
        """Called after the optimizer step on `batch` (e.g. to enqueue its embeddings)."""


def _check_provider(label: str, factory) -> None:
    if not callable(factory):
        raise UnknownUnit(
            f"negatives provider {label}: expected a class (or function) making an ExtraColumns"
        )


NEGATIVES: Registry[Callable[[], ExtraColumns]] = Registry(
    "negatives provider", plural="negatives", check=_check_provider
)


def negatives_arguments(names: list[str], given: dict | None = None) -> dict[str, dict]:
    """Each provider's settings: its factory's keyword defaults, overridden by the keys of
    `given` its signature names (text converted to the default's type). A key no provider
    takes, or a bad value, is a ValueError."""
    from embeval.core.losses import bind_loss_arguments, loss_parameters  # the loss binder

    given = dict(given or {})
    out, taken = {}, set()
    for name in names:
        factory = NEGATIVES.get(name)
        mine = {k: v for k, v in given.items() if k in _parameters(factory, loss_parameters)}
        taken |= set(mine)
        out[name] = bind_loss_arguments(factory, mine, name, "negatives provider", skip=0)
    unknown = sorted(set(given) - taken)
    if unknown:
        raise ValueError(
            f"no negatives provider of {names} takes {', '.join(map(repr, unknown))} "
            "(--negatives-arg)"
        )
    return out


def _parameters(factory, loss_parameters) -> dict:
    try:
        return loss_parameters(factory, 0)
    except (TypeError, ValueError):  # no signature: takes nothing we can name
        return {}


def make_providers(names: list[str], args: dict | None = None) -> list[ExtraColumns]:
    """One provider per name, in order, made with its settings (`negatives_arguments`); a
    factory that makes no `columns` method is refused."""
    providers = []
    settings = negatives_arguments(names, args)
    for name in names:
        provider = NEGATIVES.get(name)(**settings[name])
        if not callable(getattr(provider, "columns", None)):
            raise UnknownUnit(
                f"negatives provider {name!r} made {type(provider).__name__}, which has no "
                "columns(batch) method (see embeval.core.negatives.ExtraColumns)"
            )
        providers.append(provider)
    return providers


@NEGATIVES.register("dclr-noise")
class DCLRNoise(ExtraColumns):
    """DCLR's noise negatives (Zhou et al., ACL 2022; RUCAIBox/DCLR `simcse/models.py`).

    times * b Gaussian vectors (randn, H wide), refined by `steps` gradient-ascent steps of
    size `step_size` along the row-normalised gradient of InfoNCE over [anchor @ positives |
    anchor @ noise] / tau, NaNs set to 0, as the released code (noise_times 1, pgd 4, step 1e-3,
    tau 0.05). The columns carry no gradient to the encoder. Unlike the code, which refines
    against the gathered batch, each process refines against its own share. Pair with loss
    `dclr`; settings with ``--negatives-arg KEY=VALUE``.
    """

    def __init__(
        self, times: float = 1.0, steps: int = 4, step_size: float = 1e-3, tau: float = 0.05
    ):
        if times <= 0 or steps < 0 or step_size < 0 or tau <= 0:
            raise ValueError(
                "dclr-noise: expected times > 0, steps >= 0, step_size >= 0 and tau > 0, "
                f"got {times}, {steps}, {step_size}, {tau}"
            )
        self.times, self.steps = times, steps
        self.step_size, self.tau = step_size, tau  # not `temperature`: that names a learnable one

    def columns(self, batch: Batch) -> torch.Tensor:  # (times * b, H)
        import torch
        import torch.nn.functional as F

        z1 = F.normalize(batch.emb[0].detach().float(), dim=-1)  # (b, H) anchors
        z2 = F.normalize(batch.emb[1].detach().float(), dim=-1)  # (b, H) positives
        b, h = z1.shape
        noise = torch.randn(int(b * self.times), h, device=z1.device)
        pos = z1 @ z2.T / self.tau  # (b, b)
        target = torch.arange(b, device=z1.device)
        for _ in range(self.steps):
            noise.requires_grad_(True)
            neg = z1 @ F.normalize(noise, dim=-1).T / self.tau  # (b, times * b)
            loss = F.cross_entropy(torch.cat([pos, neg], 1), target)
            (grad,) = torch.autograd.grad(loss, noise)
            step = grad / grad.norm(dim=-1, keepdim=True) * self.step_size
            noise = torch.nan_to_num(noise.detach() + step, nan=0.0)
        return noise


def provider_states(providers: list[ExtraColumns]) -> list:
    """What `last/` keeps of each provider: its `state_dict()`, or None without one."""
    return [p.state_dict() if hasattr(p, "state_dict") else None for p in providers]


def provider_rank_states(providers: list[ExtraColumns]) -> list:
    """This process's own part of each provider's state (`rank_state()`), or None without one."""
    return [p.rank_state() if hasattr(p, "rank_state") else None for p in providers]


def load_provider_rank_states(providers: list[ExtraColumns], states: list) -> None:
    """Give each provider this process's part that `provider_rank_states` saved."""
    for p, state in zip(providers, states, strict=True):
        if state is not None and hasattr(p, "load_rank_state"):
            p.load_rank_state(state)


def load_provider_states(providers: list[ExtraColumns], states: list | None, where: str) -> None:
    """Give each provider the state `provider_states` saved; a provider with state to load and
    none saved (a `last/` of an older embeval) is refused, as resuming would diverge."""
    states = states if states is not None else [None] * len(providers)
    if len(states) != len(providers):
        raise ValueError(f"{where} holds {len(states)} provider states for {len(providers)}")
    for p, state in zip(providers, states, strict=True):
        if not hasattr(p, "load_state_dict"):
            continue
        if state is None:
            raise ValueError(
                f"{where} holds no state for negatives provider {type(p).__name__} (saved by an "
                "older embeval); resuming would start it afresh: train anew with --overwrite"
            )
        p.load_state_dict(state)


def check_queue_fits(name: str, queue_size: int, global_batch: int, n_examples: int) -> None:
    """A queue of earlier batches must not reach back to the current one: with queue_size +
    global_batch > n_examples it would hold a batch's own sentences as their negatives."""
    if queue_size + global_batch > n_examples:
        raise ValueError(
            f"negatives provider {name}: queue_size {queue_size} + the global batch "
            f"{global_batch} exceed the {n_examples} training examples: the queue would hold "
            f"a batch's own sentences as their negatives; use --negatives-arg "
            f"queue_size={max(0, n_examples - global_batch)} or less"
        )


@NEGATIVES.register("momentum-queue")
class MomentumQueue(ExtraColumns):
    """ESimCSE's momentum contrast (Wu et al., COLING 2022; caskcsg/sentemb ESimCSE/): a FIFO
    queue of the `queue_size` latest anchors encoded by a momentum copy of the encoder.

    theta_m <- momentum * theta_m + (1 - momentum) * theta, then q = f_{theta_m}(anchors) in
    eval mode (dropout off), without gradient; loss = InfoNCE over [in-batch | queue] columns,
    the queue holding earlier batches only. As the released code (`esimcse/models.py`,
    `trainers.py`), which the paper leaves open: the momentum update uses the weights before
    this step's optimizer update; the queue is emptied at each epoch's start; with the `cls`
    pooler the momentum features go through the live MLP (SimCSE's `mlp` is no part of the
    momentum copy). Several processes gather their queues as they gather their batches (the
    code keeps each process's own) and `last/` keeps every process's queue for its resume
    (`rank_state`; the momentum copy is the same on all). The momentum copy starts as
    the model at the first step and is saved with the queue in `last/trainer_state.pt` (a
    model's size more).
    """

    def __init__(self, queue_size: int = 160, momentum: float = 0.995):
        if queue_size < 0:
            raise ValueError(f"momentum-queue: queue_size must be >= 0, got {queue_size}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum-queue: momentum must be in [0, 1], got {momentum}")
        self.queue_size, self.momentum = queue_size, momentum
        self.queue = None  # (k <= queue_size, H), newest last
        self.encoder = None  # the momentum SentenceModel, made at the first batch
        self._saved = None  # momentum weights loaded before the model was known
        self._pending = None  # this batch's momentum embeddings, queued at step_end

    def check(self, n_examples: int, global_batch: int, model=None, tokenizer=None) -> None:
        check_queue_fits("momentum-queue", self.queue_size, global_batch, n_examples)

    def _make_encoder(self, model):
        import copy

        from embeval.core.model import SentenceModel

        live_mlp = getattr(model.backbone, "pooler", None)
        backbone = model.backbone
        if live_mlp is not None:  # copied without the MLP, which stays shared (see above)
            backbone.pooler = None
            try:
                copy_ = copy.deepcopy(backbone)
            finally:
                backbone.pooler = live_mlp
        else:
            copy_ = copy.deepcopy(backbone)
        copy_.requires_grad_(False)
        if self._saved is not None:
            copy_.load_state_dict(self._saved)
            self._saved = None
        if live_mlp is not None:
            copy_.pooler = live_mlp
        self.encoder = SentenceModel(copy_, model.pooler).eval()

    def _own_parameters(self, module):
        return [(n, p) for n, p in module.named_parameters() if not n.startswith("pooler.")]

    def columns(self, batch):
        import torch

        if self.queue_size == 0:  # no queue: nothing to encode, nothing drawn
            return batch.emb.new_zeros((0, batch.emb.shape[-1]))
        if self.encoder is None:
            self._make_encoder(batch.model)
        if batch.new_epoch or self.queue is None:
            self.queue = batch.emb.new_zeros((0, batch.emb.shape[-1]), dtype=torch.float32)
        self.queue = cols = self.queue.to(batch.emb.device)  # a resumed queue comes on the CPU
        with torch.no_grad():
            live = dict(self._own_parameters(batch.model.backbone))
            for name, p_m in self._own_parameters(self.encoder.backbone):
                p_m.mul_(self.momentum).add_(live[name].detach(), alpha=1 - self.momentum)
            inputs = batch.tokenize(batch.views.texts[batch.views.order[0]])
            self.encoder.eval()
            self._pending = self.encoder(**inputs).float()  # (b, H) the anchors' view
        return cols

    def step_end(self, batch) -> None:
        if self._pending is not None:
            self.queue = torch_cat(self.queue, self._pending)[-self.queue_size :]
            self._pending = None

    def state_dict(self) -> dict:
        weights = None
        if self.encoder is not None:
            weights = {
                k: v.detach().cpu().clone()
                for k, v in self.encoder.backbone.state_dict().items()
                if not k.startswith("pooler.")
            }
        elif self._saved is not None:
            weights = self._saved
        queue = None if self.queue is None else self.queue.detach().cpu().clone()
        return {"queue": queue, "momentum_encoder": weights}

    def load_state_dict(self, state: dict) -> None:
        self._saved = state["momentum_encoder"]
        self.encoder = None  # rebuilt from the model at the next batch, then given these weights
        self.queue = state["queue"]

    # The momentum weights follow the (DDP-synchronised) model, the same on every process; the
    # queue holds each process's own anchors, so every rank keeps its own.
    def rank_state(self):
        return None if self.queue is None else self.queue.detach().cpu().clone()

    def load_rank_state(self, queue) -> None:
        self.queue = queue


def torch_cat(queue, new):
    import torch

    return torch.cat([queue.to(new.device), new])


@NEGATIVES.register("teacher")
class TeacherQueue(ExtraColumns):
    """DistilCSE's contrastive distillation (caskcsg/sentemb DistilCSE/, `ckd_contrastive.py`):
    the candidates are a frozen teacher's embeddings of the batch's sentences, then a queue of
    its embeddings of earlier batches (newest first, `queue_size` kept).

    loss_i = -log( exp(s cos(W x_i, t_i)) / sum_j exp(s cos(W x_i, c_j)) ), c = [t_1..t_B |
    queue], x the student's embedding (``--view anchors``), s = exp(log_scale) learnable with
    log_scale starting at `scale_init` (1: s = e), W a learnable linear map into the teacher's
    width when the two differ (dropped from the saved student; none when they match), both
    trained with the student (no weight decay). As the released code: the queue is not emptied
    between epochs, each model reads the raw text with its own tokenizer (cut at the training
    max_length), the teacher pools as its checkpoint declares unless `pooler` is given. One
    process only (the code keeps a queue per process; gathering would misalign the diagonal).
    `teacher` is a checkpoint folder or hub name; its state (queue, scale, W) is saved in last/.
    """

    def __init__(
        self,
        teacher: str = "",
        queue_size: int = 65536,
        scale_init: float = 1.0,
        learnable_scale: bool = True,
        pooler: str = "",
    ):
        import torch

        from embeval.core import distributed as dist
        from embeval.core.model import load_model

        if not teacher:
            raise ValueError("negatives provider teacher needs --negatives-arg teacher=CHECKPOINT")
        if queue_size < 0:
            raise ValueError(f"teacher: queue_size must be >= 0, got {queue_size}")
        if dist.world_size() > 1:
            raise ValueError("negatives provider teacher runs in one process only")
        self.model, self.tokenizer, self.info = load_model(teacher, pooler=pooler or None)
        self.model.requires_grad_(False)
        self.queue_size = queue_size
        self.log_scale = torch.nn.Parameter(torch.tensor(float(scale_init)))
        self.log_scale.requires_grad_(learnable_scale)
        self.projection = None  # made by check(), once the student's width is known
        self.queue = None  # (k, H_t) normalised, newest first
        self.same_tokenizer = False
        self._pending = None

    def check(self, n_examples: int, global_batch: int, model=None, tokenizer=None) -> None:
        import torch

        check_queue_fits("teacher", self.queue_size, global_batch, n_examples)
        device = next(model.parameters()).device
        self.model.to(device)
        self.log_scale.data = self.log_scale.data.to(device)  # the same Parameter, moved
        student = model.backbone.config.hidden_size
        width = self.model.backbone.config.hidden_size
        if student != width and self.projection is None:
            gen = torch.Generator().manual_seed(0)  # the same W in every run and on --resume
            self.projection = torch.nn.Linear(student, width)
            bound = 1 / student**0.5  # nn.Linear's own initialisation, from a seeded generator
            with torch.no_grad():
                self.projection.weight.uniform_(-bound, bound, generator=gen)
                self.projection.bias.uniform_(-bound, bound, generator=gen)
            self.projection.to(device)
        if tokenizer is not None:
            self.same_tokenizer = tokenizer.get_vocab() == self.tokenizer.get_vocab()

    def parameters(self) -> list:
        extra = list(self.projection.parameters()) if self.projection is not None else []
        return [p for p in [self.log_scale, *extra] if p.requires_grad]

    def temperature(self):
        return 1 / self.log_scale.exp()  # logits = s * cos, s = exp(log_scale)

    def project(self, emb):  # (V, b, H_s) -> (V, b, H_t)
        return emb if self.projection is None else self.projection(emb.float())

    def columns(self, batch):
        import torch
        import torch.nn.functional as F

        device = batch.emb.device
        self.model.eval()
        texts = batch.views.texts[batch.views.order[0]]
        if self.same_tokenizer:
            inputs = batch.tokenize(texts)
        else:
            enc = self.tokenizer(
                texts,
                truncation=True,
                max_length=batch.max_length,
                padding=True,
                return_tensors="pt",
            )
            inputs = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            t = F.normalize(self.model(**inputs).float(), dim=-1)  # (b, H_t)
        if self.queue is None:
            self.queue = t.new_zeros((0, t.shape[1]))
        self.queue = self.queue.to(device)
        self._pending = t
        return torch.cat([t, self.queue])  # (b + k, H_t): positives first

    def step_end(self, batch) -> None:
        if self._pending is not None:
            import torch

            self.queue = torch.cat([self._pending, self.queue])[: self.queue_size]
            self._pending = None

    def state_dict(self) -> dict:
        return {
            "queue": None if self.queue is None else self.queue.detach().cpu().clone(),
            "log_scale": self.log_scale.detach().cpu().clone(),
            "projection": None
            if self.projection is None
            else {k: v.detach().cpu().clone() for k, v in self.projection.state_dict().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        import torch

        self.queue = state["queue"]
        with torch.no_grad():
            self.log_scale.copy_(state["log_scale"])
            if self.projection is not None and state["projection"] is not None:
                self.projection.load_state_dict(state["projection"])
