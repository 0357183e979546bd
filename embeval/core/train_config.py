"""The training configuration: every setting of a run, its checks, and how older runs' saved
configs read today (so that `--resume` accepts a `last/` written by an earlier embeval).

A run records its config *resolved* (`TrainConfig.resolved`): the loss's arguments with the
signature defaults filled in, the view chosen by the data named, registry aliases replaced by
names. Two runs that train alike then record alike, whichever way they were asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from embeval.core.losses import (
    LOSSES,
    batch_inputs,
    get_loss,
    loss_arguments,
    loss_parameters,
)
from embeval.core.negatives import NEGATIVES, negatives_arguments
from embeval.core.objectives import OBJECTIVES, objective_arguments
from embeval.core.poolers import POOLERS, PromptBERT
from embeval.core.views import VIEWS, view_arguments, view_name


@dataclass
class TrainConfig:
    """SimCSE's unsupervised BERT-base defaults; CLI flags override fields one-to-one."""

    loss: str = "infonce"  # a LOSSES name, package.module:function or an entry point
    temperature: float = 0.05
    loss_args: dict = field(default_factory=dict)  # the loss's keyword arguments, e.g. {"m": 0.2}
    view: str | None = None  # a VIEWS name; None: by the data (.txt -> dropout, CSV -> pairs)
    view_args: dict = field(default_factory=dict)  # the view builder's settings
    negatives: list[str] = field(default_factory=list)  # NEGATIVES providers: extra columns
    reference_model: str | None = None  # frozen model behind a loss's ref_sim (gcse, dclr)
    matryoshka_dims: list[int] = field(default_factory=list)  # loss summed over prefixes
    matryoshka_weights: list[float] = field(default_factory=list)  # w_d; empty: all 1
    matryoshka_layers: int = 0  # 2DMSE: layers sampled per step (1 in the paper); 0: off
    matryoshka_kl_temperature: float = 0.3  # 2DMSE's KL term (last layer teaches); 0: none
    objective: str | None = None  # an OBJECTIVES head trained beside the encoder (sbert-nli)
    objective_args: dict = field(default_factory=dict)  # its keyword arguments
    negatives_args: dict = field(default_factory=dict)  # provider -> its settings (resolved)
    batch_size: int = 64  # per process
    lr: float = 3e-5
    epochs: int = 1
    steps: int | None = None  # overrides epochs when set
    max_length: int = 32
    dropout: float | None = None  # backbone dropout, SimCSE's noise; None keeps the model's (0.1)
    warmup_steps: int = 0
    weight_decay: float = 0.0  # AdamW's; biases and LayerNorm weights are never decayed (HF)
    max_grad_norm: float = 1.0  # gradient-norm clipping as in HF's Trainer (SimCSE); 0: off
    eval_steps: int = 125
    save_steps: int | None = None  # `last/` checkpoint; default: at every evaluation
    log_steps: int = 25
    seed: int = 42
    pooler: str = "cls"  # training pooler: the MLP over [CLS], as SimCSE trains
    eval_pooler: str = "cls_before_pooler"  # evaluation and saved pooler (MLP only in training)
    reinit_pooler: bool = True  # SimCSE's MLP starts fresh (normal(0, initializer_range), bias 0)
    normalize: bool = False  # checkpoints end with sentence-transformers' Normalize module
    amp: bool = True  # float16 autocast + GradScaler on CUDA; ignored on CPU
    metric: str = "stsb_dev"  # key of the evaluate() result used to keep the best checkpoint
    extra: dict = field(default_factory=dict)  # free-form notes stored with the config

    def validate(self) -> None:
        loss_arguments(self.loss, self.loss_args)  # the loss, its arguments and their values
        if self.view is not None:
            VIEWS.get(self.view)
        if isinstance(self.negatives, str) or not all(isinstance(n, str) for n in self.negatives):
            raise ValueError(f"negatives must be a list of names, got {self.negatives!r}")
        for name in self.negatives:
            NEGATIVES.get(name)
        self._validate_matryoshka()
        if self.objective is not None:
            objective_arguments(self.objective, self.objective_args)
        if "ref_sim" in batch_inputs(get_loss(self.loss)) and not self.reference_model:
            raise ValueError(
                f"loss {self.loss} scores each batch with a frozen model: give --reference-model "
                "(a checkpoint, or 'initial' for a frozen copy of the starting weights)"
            )
        if self.view is not None:
            view_arguments(self.view, self.view_args)
        elif self.view_args:
            raise ValueError("view_args need a view (--view NAME)")
        negatives_arguments(self.negatives, _flat(self.negatives_args))
        for name in ("pooler", "eval_pooler"):
            try:  # a registered name or user code; unknown names get a "did you mean"
                unit = POOLERS.get(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
            # The trainer tokenizes bare sentences: only PromptBERT's view builds prompts.
            if getattr(unit, "template", None) and not isinstance(unit, PromptBERT):
                raise ValueError(f"{name}: prompt pooler {getattr(self, name)} is for scoring only")
        self._validate_promptbert()
        for name in ("batch_size", "max_length", "eval_steps", "log_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_grad_norm < 0:
            raise ValueError(
                f"max_grad_norm must be >= 0 (0: no clipping), got {self.max_grad_norm}"
            )
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def _validate_promptbert(self) -> None:
        """PromptBERT: a [MASK]-state training pooler and the two-template view go together,
        and a template given to a prompt pooler must be the view's template1."""
        prompt_view = self.view is not None and VIEWS.canonical(self.view) == "promptbert"
        pool = POOLERS.get(self.pooler)
        if isinstance(pool, PromptBERT) != prompt_view:
            raise ValueError(
                f"pooler {self.pooler} with view {self.view}: training with a PromptBERT pooler "
                "needs --view promptbert (it builds the prompts), and that view needs --pooler "
                "promptbert or promptbert_denoised (they read the [MASK] state)"
            )
        if prompt_view:
            template1 = view_arguments(self.view, self.view_args)["template1"]
            for name in ("pooler", "eval_pooler"):
                unit, given = POOLERS.get(getattr(self, name)), getattr(self, name)
                if isinstance(unit, PromptBERT) and ":" in given and unit.template != template1:
                    raise ValueError(
                        f"{name} {given!r}: its template must be the view's template1 "
                        f"{template1!r} (or leave it out: it is filled in)"
                    )

    def _validate_matryoshka(self) -> None:
        dims, weights = self.matryoshka_dims, self.matryoshka_weights
        if not all(isinstance(d, int) and d >= 1 for d in dims):
            raise ValueError(f"matryoshka_dims must be positive integers, got {dims!r}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"matryoshka_dims {dims!r} repeats a dimension")
        if self.matryoshka_layers < 0 or self.matryoshka_kl_temperature < 0:
            raise ValueError(
                "matryoshka_layers and matryoshka_kl_temperature must be >= 0, got "
                f"{self.matryoshka_layers}, {self.matryoshka_kl_temperature}"
            )
        if weights and len(weights) != len(dims):
            raise ValueError(
                f"matryoshka_weights {weights!r}: one weight per dimension of {dims!r} expected"
            )

    def resolved(self, columns: Sequence[str]) -> TrainConfig:
        """This config as a run records it, for training data with `columns`: the loss's full
        arguments (defaults filled in, text values converted), the view named, aliases resolved."""
        return dataclasses.replace(
            self,
            **self._prompt_poolers(),
            loss=LOSSES.canonical(self.loss),
            loss_args=loss_arguments(self.loss, self.loss_args),
            view=view_name(self.view, columns),
            view_args=view_arguments(view_name(self.view, columns), self.view_args),
            negatives=[NEGATIVES.canonical(n) for n in self.negatives],
            objective=None if self.objective is None else OBJECTIVES.canonical(self.objective),
            objective_args={}
            if self.objective is None
            else objective_arguments(self.objective, self.objective_args),
            negatives_args=negatives_arguments(self.negatives, _flat(self.negatives_args)),
        )

    def _prompt_poolers(self) -> dict:
        """With --view promptbert, a prompt pooler named without its template gets the view's
        template1, so the run and its checkpoints record the template they evaluate with."""
        if self.view is None or VIEWS.canonical(self.view) != "promptbert":
            return {}
        template1 = view_arguments(self.view, self.view_args)["template1"]
        out = {}
        for name in ("pooler", "eval_pooler"):
            given = getattr(self, name)
            if isinstance(POOLERS.get(given), PromptBERT) and ":" not in given:
                out[name] = f"{POOLERS.canonical(given)}:{template1}"
        return out


def _flat(args: dict) -> dict:
    """Provider settings as given (KEY: VALUE) or as resolved (provider: {KEY: VALUE})."""
    if all(isinstance(v, dict) for v in args.values()) and args:
        return {k: v for per in args.values() for k, v in per.items()}
    return args


# Fields added after resumable states existed, with the value their absence stands for.
FIELDS_ADDED = {
    "normalize": False,
    "view": None,
    "negatives": [],
    "reference_model": None,
    "matryoshka_dims": [],
    "matryoshka_weights": [],
    "matryoshka_layers": 0,
    "matryoshka_kl_temperature": 0.3,
    "objective": None,
    "objective_args": {},
    "view_args": {},
    "negatives_args": {},
}
# Loss settings that were config fields before `loss_args` held them: field -> loss argument.
# Each loss took those of them it has (as `embeval train --focal-m` etc. still set them).
LOSS_FIELDS = {
    "focal_m": "m",  # focal-infonce
    "hard_negative_weight": "hard_negative_weight",  # sup-simcse
    "uniformity_weight": "lam",  # align-uniform
}


def saved_config(saved: dict, columns: Sequence[str]) -> dict:
    """A config as any embeval version saved it (train_config.json, a resume state), in today's
    fields and resolved as a run records it; `columns` are the training data's."""
    old = dict(saved)
    if "loss_args" not in old:  # before loss_args: the fields of LOSS_FIELDS
        takes = loss_parameters(get_loss(old["loss"]))
        old["loss_args"] = {a: old[f] for f, a in LOSS_FIELDS.items() if f in old and a in takes}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    fields = {k: old[k] if k in old else _copy(FIELDS_ADDED.get(k)) for k in known}
    return dataclasses.asdict(TrainConfig(**fields).resolved(columns))


def _copy(value):
    return type(value)(value) if isinstance(value, list | dict) else value


def pooler_to_load(view: str | None, pooler: str) -> str:
    """The pooler to load a checkpoint with for training: 'cls' (which keeps the MLP pooling
    layer) for poolers that train through it, the PromptBERT view's [MASK] state included;
    else the training pooler itself."""
    if view is not None and VIEWS.canonical(view) == "promptbert":
        return "cls"
    return pooler


def simcse_poolers(
    declared: str | None, pooler: str | None = None, eval_pooler: str | None = None
) -> tuple[str, str]:
    """Fill in the (training, evaluation) poolers the user left out, as SimCSE pairs them.

    SimCSE trains an MLP over [CLS] and evaluates [CLS] before it; any other pooler evaluates as
    it trains. With neither given, a checkpoint keeps the pooling it declares (`declared`, e.g.
    sentence-transformers' mean pooling); a plain HF encoder (None) gets SimCSE's pair.
    """
    if pooler is None and eval_pooler is None and declared not in (None, "cls_before_pooler"):
        return declared, declared
    if pooler is None:
        pooler = "cls" if declared in (None, "cls_before_pooler") else declared
    if eval_pooler is None:
        eval_pooler = "cls_before_pooler" if pooler == "cls" else pooler
    return pooler, eval_pooler
