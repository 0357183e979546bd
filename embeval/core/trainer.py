"""The contrastive training loop (SimCSE, Gao et al. 2021), with interchangeable losses.

Unsupervised data: one sentence per line; every batch is encoded twice with dropout on and the
two views are positives. Supervised data: a CSV with `sent0,sent1[,hard_neg]` columns; sent1 is
the positive and hard_neg an extra column of the similarity matrix. The loop does not know the
loss (`embeval.core.losses`) nor how a model is scored: an `evaluate(model) -> dict` callback
does that (the CLI wires STS-B dev in), so this module imports nothing from `embeval.eval`.

Output folder: `best/` (best dev score, as SimCSE keeps), `last/` (plus `trainer_state.pt` with
optimizer, scheduler, scaler and RNG state, for `resume`), `train_log.jsonl`,
`train_config.json`. Both checkpoints save the evaluation pooler (`cls_before_pooler`) and keep
the MLP pooler weights, so `--pooler cls` still works on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from embeval.core import distributed as dist
from embeval.core.fileio import aside, atomic_write_text, replace_dir
from embeval.core.losses import get_loss, loss_hparams
from embeval.core.model import (
    POOLERS,
    SentenceModel,
    hf_progress_bars_off,
    save_checkpoint,
    set_dropout,
)
from embeval.core.train_data import TrainData, epoch_order, read_training_file

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"
BEST_INFO = "embeval_train.json"  # in best/: the step and metrics it was saved at


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, nothing to resume, mismatched resume config)."""


@dataclass
class TrainConfig:
    """SimCSE's unsupervised BERT-base defaults; CLI flags override fields one-to-one."""

    loss: str = "infonce"
    temperature: float = 0.05
    focal_m: float = 0.3  # Focal-InfoNCE hardness m
    hard_negative_weight: float = 0.0  # sup-simcse: log(alpha)
    uniformity_weight: float = 1.0  # align-uniform: lambda
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
        get_loss(self.loss)
        for name in ("pooler", "eval_pooler"):
            try:  # a registered name or user code; unknown names get a "did you mean"
                POOLERS.get(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
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


# Fields added after resumable states existed, with the behaviour their absence stands for.
FIELDS_ADDED = {"normalize": False}


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


@dataclass
class TrainResult:
    step: int
    best_step: int | None
    best_score: float | None
    out_dir: str
    truncated: int


# Losses that read only the in-batch columns (the first B): hard_neg columns give them nothing.
IN_BATCH_ONLY = ("align-uniform",)


def negatives_per_anchor(global_batch: int, columns: int, loss: str) -> int:
    """Negatives in each anchor's row of the similarity matrix: the other sentences of the
    global batch, plus the batch's hard_neg column (a supervised CSV's third one) when the loss
    reads it. 0 makes a contrastive loss identically 0 (InfoNCE of a single logit)."""
    hard = global_batch if columns == 3 and loss not in IN_BATCH_ONLY else 0
    return global_batch - 1 + hard


def check_batch_size(batch_size: int, world: int, data: TrainData, loss: str) -> None:
    """Refuse a batch that leaves no negative for the loss, or that the file cannot fill."""
    cols, n = len(data.columns), len(data.examples)
    least = 1 if negatives_per_anchor(world, cols, loss) else 2  # per process
    if batch_size < least:
        why = (
            f"{loss} does not use hard_neg columns"
            if loss in IN_BATCH_ONLY
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


def steps_per_epoch(global_batch: int, world: int, data: TrainData, loss: str) -> int:
    """Batches per epoch. Several processes drop the ragged last batch (their gathers need equal
    batches); one process keeps it, unless it would hold a single example with no negative (a
    1x1 similarity matrix: loss 0, yet AdamW's momentum would still move the weights)."""
    full, rest = divmod(len(data.examples), global_batch)
    if world > 1 or rest == 0:
        return full
    if not negatives_per_anchor(rest, len(data.columns), loss):
        return full
    return full + 1


def loss_kwargs(fn: Callable[..., torch.Tensor], cfg: TrainConfig) -> dict:
    """The hyper-parameters `fn` accepts, from the config fields that hold them."""
    candidates = {
        "m": cfg.focal_m,
        "hard_negative_weight": cfg.hard_negative_weight,
        "lam": cfg.uniformity_weight,
    }
    return loss_hparams(fn, candidates)


def contrastive_loss(emb: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:  # (V, b, H) -> ()
    """The training loss of one batch from its embeddings, as SimCSE's `cl_forward` forms it.

    emb[0] holds the anchors, emb[1] their positives (the second dropout view, or sent1) and
    emb[2] the hard negatives when present. Vectors are L2-normalised in float32 (cosines), then
    gathered over processes; sim = anchors @ candidates.T, (W b, W b + k) with positives on the
    diagonal, goes to the loss `cfg.loss` with `cfg.temperature` and its hyper-parameters."""
    fn = get_loss(cfg.loss)
    emb = F.normalize(emb.float(), dim=-1)  # cosine in float32
    anchors = dist.gather_with_grad(emb[0])  # (W b, H)
    cands = torch.cat([dist.gather_with_grad(e) for e in emb[1:]])  # (k W b, H)
    sim = anchors @ cands.T  # (W b, W b + k)
    return fn(sim, cfg.temperature, **loss_kwargs(fn, cfg))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as Hugging Face's Trainer builds them: no decay for biases and LayerNorm
    weights (the 1-d parameters); frozen parameters are left out."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Hugging Face's linear schedule (SimCSE's default): warm up, then decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class Trainer:
    """`Trainer(backbone, tokenizer, data, config, evaluate).train()`; see the module docstring.

    evaluate(model) receives a SentenceModel with the evaluation pooler in eval mode, returns
    metrics (`config.metric` among them, higher is better) and must not change the weights.
    `on_step_end` hooks get (trainer, step) after every optimizer step.
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        tokenizer,
        data: TrainData | str | os.PathLike,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        evaluate: Callable[[SentenceModel], dict] | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
    ):
        config.validate()
        self.config, self.tokenizer, self.evaluate = config, tokenizer, evaluate
        self.data = data if isinstance(data, TrainData) else read_training_file(data)
        self.out = Path(out_dir)
        self.progress = progress
        dist_device = dist.init_from_env()
        self.device = torch.device(
            device or dist_device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.world = dist.world_size()
        if config.pooler == "cls" and getattr(backbone, "pooler", None) is None:
            raise ValueError(
                f"{type(backbone).__name__} has no MLP pooler for training pooler 'cls'; "
                "use --pooler avg or cls_before_pooler"
            )
        if config.dropout is not None:
            set_dropout(backbone, config.dropout)
        if config.pooler != "cls" and getattr(backbone, "pooler", None) is not None:
            # The MLP is not in the training graph: frozen, DDP needs no unused-parameter search.
            backbone.pooler.requires_grad_(False)
        self.backbone = backbone.to(self.device)
        self.model = SentenceModel(self.backbone, config.pooler)
        self.eval_model = SentenceModel(self.backbone, config.eval_pooler)  # same weights
        check_batch_size(config.batch_size, self.world, self.data, config.loss)
        global_batch = config.batch_size * self.world
        self.steps_per_epoch = steps_per_epoch(global_batch, self.world, self.data, config.loss)
        self.total_steps = (
            config.steps if config.steps is not None else config.epochs * self.steps_per_epoch
        )
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.backbone, config.weight_decay), lr=config.lr, eps=1e-8
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(config.warmup_steps, self.total_steps)
        )
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.on_step_end: list[Callable[[Trainer, int], None]] = []
        self.step, self.truncated = 0, 0
        self.best_score: float | None = None
        self.last_score: float | None = None
        self.best_step: int | None = None
        self.saved_step: int | None = None
        self._perm: tuple[int, torch.Tensor] | None = None
        self._cut = 0  # texts truncated in the batch being computed
        self._unlogged: dict = {}  # the last step's log record until it is written

    # ------------------------------------------------------------------ data
    def batch_examples(self, step: int) -> list[tuple[str, ...]]:
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

    # ------------------------------------------------------------------ one step
    def compute_loss(self, examples: list[tuple[str, ...]]) -> torch.Tensor:
        b, cols = len(examples), len(examples[0])
        views = 2 if cols == 1 else cols  # unsupervised: the sentence twice, dropout differs
        inputs, cut = self.tokenize([ex[c] for c in range(cols) for ex in examples])
        if cols == 1:  # unsupervised: the same ids twice; dropout makes the two views differ
            inputs = {k: torch.cat([v, v]) for k, v in inputs.items()}
        self._cut = cut  # counted once the step is taken
        model = self.ddp or self.model
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            emb = model(**inputs)  # (views * b, H)
        return contrastive_loss(emb.view(views, b, -1), self.config)

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train from scratch, or from `last/` with resume=True. A fresh start into a folder
        that holds a run (checkpoints or log records) is refused unless overwrite=True, which
        deletes them first."""
        from tqdm.auto import tqdm

        cfg = self.config
        if resume:
            self._load_state()
        else:
            self._fresh_start(overwrite)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"train {cfg.loss}",
            unit="step",
            disable=not (self.progress and dist.is_main()),
        )
        window, t0 = [], time.perf_counter()
        rng = self._rng_state()  # matches the weights at self.step, for an interrupt
        try:
            # Step 0 is scored unless a resumed run already holds its score (a Ctrl-C during
            # that first evaluation saves step 0 below, so that --resume works from there).
            if self.step == 0 and (not resume or self.best_step is None):
                self._evaluate_and_save(0, {})
            while self.step < self.total_steps:
                self.model.train()
                loss = self.compute_loss(self.batch_examples(self.step))
                if not torch.isfinite(loss):
                    raise TrainingError(self._nan_message(loss.item()))
                self.optimizer.zero_grad(set_to_none=True)
                # Gathered negatives: every process holds the global loss; DDP averages the
                # gradients, so scale by the world size to get the global-batch gradient.
                self.scaler.scale(loss * self.world).backward()
                if cfg.max_grad_norm:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled
                    torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), cfg.max_grad_norm)
                with _sigint_deferred():  # Ctrl-C lands before or after a step, never inside
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.scheduler.step()
                    self.step += 1
                    self.truncated += self._cut
                    rng = self._rng_state()
                    window.append(loss.item())
                    rec = {}
                    if self.step % cfg.log_steps == 0 or self.step == self.total_steps:
                        dt = time.perf_counter() - t0
                        rec = self._train_record(window, dt)
                        window, t0 = [], time.perf_counter()
                    self._unlogged = rec  # logged with the evaluation, or by the interrupt
                bar.update(1)
                if rec:
                    rec["truncated"] = self._total_truncated()  # each rank counted its slice
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", dev=self._dev_text())
                t_eval = time.perf_counter()
                self._evaluate_and_save(self.step, rec)
                t0 += time.perf_counter() - t_eval  # throughput excludes scoring and saving
                for hook in self.on_step_end:
                    hook(self, self.step)
        except KeyboardInterrupt:
            if dist.is_main() and self._unlogged:
                self._log({"step": self.step, **self._unlogged})
            if dist.is_main() and self.saved_step != self.step:
                # No collective call here (other processes may be gone): rank 0's RNG only.
                self._save_last([rng], self.truncated)
                log.warning("interrupted: saved step %d to %s", self.step, self.out / "last")
            raise
        finally:
            bar.close()
        truncated = self._total_truncated()
        if truncated:
            log.warning(
                "%d training sentence(s) longer than %d tokens were truncated",
                truncated,
                cfg.max_length,
            )
        return TrainResult(self.step, self.best_step, self.best_score, str(self.out), truncated)

    def _total_truncated(self) -> int:
        """Texts cut to max_length so far, over all processes (a collective call)."""
        return sum(dist.all_gather_objects(self.truncated))

    def _fresh_start(self, overwrite: bool) -> None:
        cfg = self.config
        found = run_files(self.out) if dist.is_main() else []
        found = dist.all_gather_objects(found)[0]  # rank 0's view: every process stops or none
        if found and not overwrite:
            raise TrainingError(
                f"{self.out} already holds a run ({', '.join(found)}); continue it with "
                "--resume, replace it with --overwrite, or choose another --out"
            )
        if found and dist.is_main():
            log.warning("--overwrite: deleting %s in %s", ", ".join(found), self.out)
            for name in found:
                path = self.out / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        if cfg.reinit_pooler and getattr(self.backbone, "pooler", None) is not None:
            std = getattr(self.backbone.config, "initializer_range", 0.02)
            with torch.no_grad():
                for mod in self.backbone.pooler.modules():
                    if isinstance(mod, torch.nn.Linear):
                        mod.weight.normal_(0.0, std)
                        mod.bias.zero_()
        if dist.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / LOG_FILE).write_text("")
            _write_json(self.out / CONFIG_FILE, {**dataclasses.asdict(cfg), **self._data_info()})

    def _data_info(self) -> dict:
        d = self.data
        return {
            "data": d.path,
            "n_examples": len(d.examples),
            "columns": list(d.columns),
            "skipped_empty_lines": d.skipped_empty,
            "world_size": self.world,
            "total_steps": self.total_steps,
        }

    def _train_record(self, window: list[float], dt: float) -> dict:
        n = len(window) * self.config.batch_size * self.world
        return {
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "loss": float(np.mean(window)),
            "lr": self.scheduler.get_last_lr()[0],
            "truncated": self.truncated,
            "sentences_per_s": n / dt if dt > 0 else None,
        }

    def _dev_text(self) -> str:
        return "-" if self.last_score is None else f"{self.last_score:.2f}"

    def _evaluate_and_save(self, step: int, rec: dict) -> None:
        cfg = self.config
        final = step == self.total_steps
        do_eval = step % cfg.eval_steps == 0 or final
        do_save = step % (cfg.save_steps or cfg.eval_steps) == 0 or final
        # One (RNG state, truncated count) per rank.
        ranks = dist.all_gather_objects((self._rng_state(), self.truncated)) if do_save else []
        error = None
        if dist.is_main():
            try:
                if do_eval:
                    rec.update(self._run_evaluate(step))
                if rec:
                    self._log({"step": step, **rec})
                self._unlogged = {}
                if do_save:
                    self._save_last([rng for rng, _ in ranks], sum(n for _, n in ranks))
            except TrainingError as exc:  # e.g. a full disk: every process stops, none waits
                error = exc
        if do_eval or do_save:
            failed = dist.all_gather_objects(error is not None)[0]  # also the barrier
            if failed and error is None:
                raise TrainingError("process 0 stopped training (its error says why)")
        if error is not None:
            raise error

    def _run_evaluate(self, step: int) -> dict:
        cfg = self.config
        if self.evaluate is None:  # nothing scores: `best` is the latest model
            self._save_best(step, None)
            return {}
        self.eval_model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # scoring must not shift dropout masks
            metrics = dict(self.evaluate(self.eval_model))
        self.model.train()
        score = metrics.get(cfg.metric)
        if not isinstance(score, int | float) or not math.isfinite(score):
            raise TrainingError(f"evaluate() returned {cfg.metric}={score!r}; expected a number")
        self.last_score = float(score)
        is_best = self.best_score is None or score > self.best_score
        if is_best:
            self._save_best(step, metrics)
            self.best_score, self.best_step = float(score), step  # once best/ holds it
        return {**metrics, "best": is_best}

    def _save_best(self, step: int, metrics: dict | None) -> None:
        info = {"step": step, "metrics": metrics or {}}
        self._save_dir("best", lambda new: _write_json(new / BEST_INFO, info))

    def _save_last(self, rngs: list[dict], truncated: int) -> None:
        state = {
            "step": self.step,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "truncated": truncated,  # all ranks'
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs,  # per rank: dropout streams diverge with each rank's batch shapes
            "config": dataclasses.asdict(self.config),
            "data": self._data_info(),
        }
        self._save_dir("last", lambda new: torch.save(state, new / STATE_FILE))
        self.saved_step = self.step

    def _save_dir(self, name: str, extra: Callable[[Path], None]) -> None:
        """Write checkpoint `name` (plus what `extra(folder)` adds) beside it, then swap it in.

        A write that fails (a full disk) leaves the previous checkpoint whole and no partial
        folder behind, and stops training with the folder and the previous step named."""
        dest, new = self.out / name, self.out / f".{name}.new"
        try:
            _save(self.backbone, self.tokenizer, new, self.config)
            extra(new)
            replace_dir(new, dest)
        except Exception as exc:  # a full disk is OSError, safetensors' or torch's own error
            shutil.rmtree(new, ignore_errors=True)
            previous = self.saved_step if name == "last" else _best_step_on_disk(dest)
            kept = (
                f"the previous {name}/ (step {previous}) is intact"
                if previous is not None
                else f"no earlier {name}/ was saved"
            )
            if self.saved_step is not None:
                kept += (
                    f"; free space, then continue from last/ (step {self.saved_step}) with --resume"
                )
            raise TrainingError(
                f"could not save the step-{self.step} checkpoint to {dest} "
                f"({type(exc).__name__}: {exc}); {kept}"
            ) from exc

    def _load_state(self) -> None:
        from safetensors.torch import load_file

        last = self.out / "last"
        old = aside(last)
        if not last.exists() and (old / STATE_FILE).is_file() and dist.is_main():
            # A crash between the two renames of replace_dir: the previous save is whole.
            os.replace(old, last)
            log.warning("%s was missing; restored the previous save from %s", last, old)
        dist.barrier()
        if not (last / STATE_FILE).is_file():
            raise TrainingError(f"nothing to resume: {last / STATE_FILE} does not exist")
        state = torch.load(last / STATE_FILE, map_location="cpu", weights_only=False)
        now = dataclasses.asdict(self.config)
        saved = {k: state["config"].get(k, FIELDS_ADDED.get(k)) for k in now}
        diff = [k for k in now if saved[k] != now[k]]
        saved_data, data = state.get("data", {}), self._data_info()  # older states lack it
        pairs = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in diff]
        pairs += [  # another file of the same size is the user's call: only its size counts
            f"{k}: {saved_data[k]!r} -> {data[k]!r}"
            for k in ("n_examples", "columns", "world_size", "total_steps")
            if k in saved_data and saved_data[k] != data[k]
        ]
        if pairs:
            raise TrainingError(
                f"resume with the settings of {last}; these differ: {', '.join(pairs)}"
            )
        weights = load_file(str(last / "model.safetensors"), device=str(self.device))
        try:
            self.backbone.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise TrainingError(f"{last} does not fit this --model: {exc}") from exc
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # e.g. parameter groups of an older embeval
            msg = f"{last / STATE_FILE}: optimizer state does not fit: {exc}"
            raise TrainingError(msg) from exc
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.truncated = state["truncated"] if dist.is_main() else 0  # the sum stays right
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.last_score = self.best_score
        self.saved_step = self.step
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) != self.world:  # an interrupt save keeps rank 0's only
            log.warning(
                "%s holds the RNG state of %d of %d processes: dropout masks after resuming "
                "differ from an uninterrupted run",
                last,
                len(rngs),
                self.world,
            )
        self._set_rng_state(rngs[dist.rank()] if len(rngs) == self.world else rngs[0])
        if dist.is_main():  # drop log lines written after the checkpoint
            path = self.out / LOG_FILE
            lines = path.read_text().splitlines() if path.exists() else []
            keep = [ln for ln in lines if _line_step(ln) <= self.step]
            atomic_write_text(path, "".join(f"{ln}\n" for ln in keep))
        log.info("resumed from %s at step %d", last, self.step)

    def _rng_state(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        }

    def _set_rng_state(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])

    def _nan_message(self, value: float) -> str:
        where = (
            f"the last good checkpoint is {self.out / 'last'} (step {self.saved_step})"
            if self.saved_step is not None
            else "no checkpoint was saved yet"
        )
        return (
            f"loss became {value} at step {self.step + 1} (loss {self.config.loss}, "
            f"lr {self.scheduler.get_last_lr()[0]:.3g}); training stopped and {where}. "
            "Try a lower --lr or a larger --temp."
        )

    def _log(self, rec: dict) -> None:
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def run_files(out: Path) -> list[str]:
    """What a fresh start would replace in `out`: checkpoints (and the copies a save keeps
    aside) and a non-empty log. A train_config.json alone (a run stopped before its first
    save) holds nothing to lose."""
    names = ["best", "last", aside(out / "best").name, aside(out / "last").name]
    found = [n for n in names if (out / n).exists()]
    log_file = out / LOG_FILE
    if log_file.is_file() and log_file.stat().st_size > 0:
        found.append(LOG_FILE)
    return found


def _save(backbone, tokenizer, path: Path, cfg: TrainConfig) -> Path:
    """save_checkpoint with the evaluation pooler, without transformers' per-save progress bar."""
    with hf_progress_bars_off():
        # max_length is a training setting; inference keeps SimCSE's untruncated evaluation
        limit = min(getattr(backbone.config, "max_position_embeddings", 512), 512)
        return save_checkpoint(backbone, tokenizer, path, cfg.eval_pooler, limit, cfg.normalize)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends: weights, optimizer, step and RNG then agree.

    A SIGINT inside is recorded and handed to the previous handler on exit (normally Python's,
    which raises KeyboardInterrupt). Handlers can only be set from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def _best_step_on_disk(best: Path) -> int | None:
    try:
        return json.loads((best / BEST_INFO).read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _line_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
