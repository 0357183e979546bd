"""The contrastive training loop (SimCSE, Gao et al. 2021), with interchangeable units.

The loop draws batches (`embeval.core.batches`: views, extra columns, the loss of them), steps
the optimizer, evaluates, logs and saves (`embeval.core.train_state`); it does not know which
loss, view builder or negatives provider a run uses (the registries of `embeval.core.losses`,
`views`, `negatives`) nor how a model is scored: an `evaluate(model) -> dict` callback does
that (the CLI wires STS-B dev in), so this module imports nothing from `embeval.eval`. The
files a run writes are described in `embeval.core.train_state`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from embeval.core import distributed as dist
from embeval.core.batches import Batches, check_batch_size
from embeval.core.model import SentenceModel, set_dropout
from embeval.core.objectives import make_objective, prepare_data, trainable
from embeval.core.train_config import TrainConfig, simcse_poolers
from embeval.core.train_data import TrainData, read_training_file
from embeval.core.train_state import (
    BEST_INFO,
    CONFIG_FILE,
    LOG_FILE,
    STATE_FILE,
    TrainingError,
    check_resumable,
    clear_run,
    data_info,
    load_weights_and_optimizer,
    rank_rng,
    read_state,
    rng_state,
    save_dir,
    save_model,
    seed_all,
    set_rng_state,
    sigint_deferred,
    trim_log,
    write_json,
    write_state,
)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingError", "simcse_poolers"]
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    step: int
    best_step: int | None
    best_score: float | None
    out_dir: str
    truncated: int


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
    `on_step_end` hooks get (trainer, step) after every optimizer step. `self.config` is the
    config resolved as the run records it (`TrainConfig.resolved`).
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
        self.tokenizer, self.evaluate = tokenizer, evaluate
        self.data = data if isinstance(data, TrainData) else read_training_file(data)
        self.data = prepare_data(config.objective, self.data)  # e.g. triplets -> labelled pairs
        self.config = config = config.resolved(self.data.columns)
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
        prompt = config.view == "promptbert"  # its training pooler ends with the MLP, as cls
        if config.pooler != "cls" and not prompt and getattr(backbone, "pooler", None) is not None:
            # The MLP is not in the training graph: frozen, DDP needs no unused-parameter search.
            backbone.pooler.requires_grad_(False)
        self.backbone = backbone.to(self.device)
        self.model = SentenceModel(self.backbone, config.pooler, tokenizer)
        self.eval_model = SentenceModel(self.backbone, config.eval_pooler, tokenizer)  # shared
        if prompt:  # each view's rows hold its own template (denoising); the MLP if any
            templates = (config.view_args["template1"], config.view_args["template2"])
            mlp = getattr(self.backbone, "pooler", None)
            self.model._pool = self.model._pool.for_views(templates, mlp)
        check_batch_size(
            config.batch_size, self.world, self.data, config.loss, config.view, config.view_args
        )
        self.objective = self._make_objective(tokenizer)
        self.amp = config.amp and self.device.type == "cuda"
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.batches = Batches(
            self.data,
            config,
            tokenizer,
            self.device,
            self.world,
            forward=self.ddp or self.model,
            model=self.model,
            amp=self.amp,
            objective=self.objective,
        )
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = (
            config.steps if config.steps is not None else config.epochs * self.steps_per_epoch
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        groups = param_groups(self.backbone, config.weight_decay)
        objective = self.objective or torch.nn.Module()
        groups += [g for g in param_groups(objective, config.weight_decay) if g["params"]]
        if self.batches.extra_parameters():  # a provider's own weights (DistilCSE's scale)
            groups.append({"params": self.batches.extra_parameters(), "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, eps=1e-8)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(config.warmup_steps, self.total_steps)
        )
        self.on_step_end: list[Callable[[Trainer, int], None]] = []
        self.step, self.truncated = 0, 0
        self.best_score: float | None = None
        self.last_score: float | None = None
        self.best_step: int | None = None
        self.saved_step: int | None = None
        self._cut = 0  # texts truncated in the batch being computed
        self._unlogged: dict = {}  # the last step's log record until it is written

    # ------------------------------------------------------------------ one step
    def batch_examples(self, step: int) -> list[tuple[str, ...]]:
        """This process's examples for `step` (see `Batches.examples`)."""
        return self.batches.examples(step)

    def tokenize(self, texts: list[str]) -> tuple[dict, int]:
        """Model inputs for `texts` and how many were cut (see `Batches.tokenize`)."""
        return self.batches.tokenize(texts)

    def compute_loss(self, examples: list[tuple[str, ...]]) -> torch.Tensor:
        loss, self._cut = self.batches.loss(examples, self.step)  # cut: counted once stepped
        return loss

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
        rng = rng_state()  # matches the weights at self.step, for an interrupt
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
                dist.average_gradients(trainable(self.objective))  # the head is outside DDP
                if cfg.max_grad_norm:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled
                    params = [
                        *self.backbone.parameters(),
                        *trainable(self.objective),
                        *self.batches.extra_parameters(),
                    ]
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                with sigint_deferred():  # Ctrl-C lands before or after a step, never inside
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.scheduler.step()
                    self.step += 1
                    self.truncated += self._cut
                    rng = rng_state()
                    window.append(loss.item())
                    rec = {}
                    if self.step % cfg.log_steps == 0 or self.step == self.total_steps:
                        dt = time.perf_counter() - t0
                        rec = self._train_record(window, dt)
                        window, t0 = [], time.perf_counter()
                    self._unlogged = rec  # logged with the evaluation, or by the interrupt
                    self.batches.step_end()  # a negatives queue takes in this batch, as saved
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
                # No collective call here (other processes may be gone): rank 0's RNG and own
                # provider parts only (a multi-process resume from it warns, as rank_rng says).
                own = self.batches.provider_rank_states()
                self._save_last([(rng, self.truncated, own)])
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

    def _make_objective(self, tokenizer) -> torch.nn.Module | None:
        """The config's objective head on the device, initialised from the run's seed (its
        parameters are saved in last/ only, for --resume)."""
        if self.config.objective is None:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            head = make_objective(
                self.config.objective, self.config.objective_args, self.model, tokenizer
            )
        return head.to(self.device).train()

    # ------------------------------------------------------------------ state
    def _fresh_start(self, overwrite: bool) -> None:
        cfg = self.config
        clear_run(self.out, overwrite)
        seed_all(cfg.seed)
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
            write_json(self.out / CONFIG_FILE, {**dataclasses.asdict(cfg), **self._data_info()})

    def _data_info(self) -> dict:
        return data_info(self.data, self.world, self.total_steps)

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
        # One (RNG state, truncated count, providers' own parts) per rank, when saving only
        # (a queue copied to the CPU every step would be wasted).
        ranks = []
        if do_save:
            mine = (rng_state(), self.truncated, self.batches.provider_rank_states())
            ranks = dist.all_gather_objects(mine)
        error = None
        if dist.is_main():
            try:
                if do_eval:
                    rec.update(self._run_evaluate(step))
                if rec:
                    self._log({"step": step, **rec})
                self._unlogged = {}
                if do_save:
                    self._save_last(ranks)
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
        self._save_dir("best", lambda new: write_json(new / BEST_INFO, info))

    def _save_last(self, ranks: list[tuple]) -> None:
        """last/ with every rank's (RNG state, truncated count, providers' own parts)."""
        state = {
            "step": self.step,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "truncated": sum(n for _, n, _ in ranks),  # all ranks'
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": [rng for rng, _, _ in ranks],  # per rank: dropout streams diverge by rank
            "config": dataclasses.asdict(self.config),
            "data": self._data_info(),
            "providers": self.batches.provider_states(),  # a queue, a momentum encoder
            "provider_ranks": [own for _, _, own in ranks],  # per rank: its own queue
        }
        if self.objective is not None:  # the head: for --resume, not part of the checkpoint
            state["objective"] = self.objective.state_dict()
        self._save_dir("last", lambda new: write_state(new / STATE_FILE, state))
        self.saved_step = self.step

    def _save_dir(self, name: str, extra: Callable[[Path], None]) -> None:
        def write(new: Path) -> None:
            save_model(self.backbone, self.tokenizer, new, self.config)
            extra(new)

        save_dir(self.out, name, write, self.step, self.saved_step)

    def _load_state(self) -> None:
        last = self.out / "last"
        state = read_state(last)
        check_resumable(state, self.config, self._data_info(), last)
        load_weights_and_optimizer(
            state, last, self.backbone, self.optimizer, self.scheduler, self.scaler, self.device
        )
        if self.objective is not None:
            try:
                self.objective.load_state_dict(state["objective"])
            except (KeyError, RuntimeError) as exc:
                raise TrainingError(f"{last}: no state of objective fits: {exc}") from exc
        try:
            self.batches.load_provider_states(state.get("providers"), str(last / STATE_FILE))
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
        own = state.get("provider_ranks") or []  # absent before embeval saved them
        if len(own) == self.world:
            self.batches.load_provider_rank_states(own[dist.rank()])
        self.step = state["step"]
        self.truncated = state["truncated"] if dist.is_main() else 0  # the sum stays right
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.last_score = self.best_score
        self.saved_step = self.step
        set_rng_state(rank_rng(state, self.world, last))
        if dist.is_main():  # drop log lines written after the checkpoint
            trim_log(self.out / LOG_FILE, self.step)
        log.info("resumed from %s at step %d", last, self.step)

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
