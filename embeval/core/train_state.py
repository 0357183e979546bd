"""A run's state on disk: the checkpoints, the resume state, and reading them back.

Output folder: `best/` (best dev score, as SimCSE keeps), `last/` (plus `trainer_state.pt` with
optimizer, scheduler, scaler and RNG state, for `resume`), `train_log.jsonl`,
`train_config.json`. Both checkpoints save the evaluation pooler (`cls_before_pooler`) and keep
the MLP pooler weights, so `--pooler cls` still works on them. A checkpoint is written beside
its folder and swapped in, so a failed save (a full disk) leaves the previous one whole. A
resumed run must have the saved run's settings; configs saved by older versions are read in
today's fields (`embeval.core.train_config.saved_config`).
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from embeval.core import distributed as dist
from embeval.core.fileio import aside, atomic_write_text, replace_dir
from embeval.core.model import hf_progress_bars_off, save_checkpoint
from embeval.core.train_config import TrainConfig, saved_config
from embeval.core.train_data import TrainData

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"
BEST_INFO = "embeval_train.json"  # in best/: the step and metrics it was saved at


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, nothing to resume, mismatched resume config)."""


# ---------------------------------------------------------------------- random state
def seed_all(seed: int) -> None:
    """Seed torch, Python and NumPy, as a fresh run starts."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])


@contextlib.contextmanager
def sigint_deferred():
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


# ---------------------------------------------------------------------- a fresh start
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


def clear_run(out: Path, overwrite: bool) -> None:
    """Refuse a fresh start into a folder that holds a run, or delete it with overwrite=True.
    A collective call: every process stops, or none."""
    found = run_files(out) if dist.is_main() else []
    found = dist.all_gather_objects(found)[0]  # rank 0's view
    if found and not overwrite:
        raise TrainingError(
            f"{out} already holds a run ({', '.join(found)}); continue it with "
            "--resume, replace it with --overwrite, or choose another --out"
        )
    if found and dist.is_main():
        log.warning("--overwrite: deleting %s in %s", ", ".join(found), out)
        for name in found:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def data_info(data: TrainData, world: int, total_steps: int) -> dict:
    """What a run records of its training data beside its config (and checks on --resume)."""
    return {
        "data": data.path,
        "n_examples": len(data.examples),
        "columns": list(data.columns),
        "skipped_empty_lines": data.skipped_empty,
        "world_size": world,
        "total_steps": total_steps,
    }


# ---------------------------------------------------------------------- saving
def save_model(backbone, tokenizer, path: Path, cfg: TrainConfig) -> Path:
    """save_checkpoint with the evaluation pooler, without transformers' per-save progress bar."""
    with hf_progress_bars_off():
        # max_length is a training setting; inference keeps SimCSE's untruncated evaluation
        limit = min(getattr(backbone.config, "max_position_embeddings", 512), 512)
        return save_checkpoint(backbone, tokenizer, path, cfg.eval_pooler, limit, cfg.normalize)


def write_state(path: Path, state: dict) -> None:
    torch.save(state, path)


def save_dir(
    out: Path, name: str, write: Callable[[Path], None], step: int, saved_step: int | None
) -> None:
    """Write checkpoint `name` beside it (`write(folder)` fills the folder), then swap it in.

    A write that fails (a full disk) leaves the previous checkpoint whole and no partial
    folder behind, and stops training with the folder and the previous step named; `step` is
    the one being saved, `saved_step` that of the last whole `last/`."""
    dest, new = out / name, out / f".{name}.new"
    try:
        write(new)
        replace_dir(new, dest)
    except Exception as exc:  # a full disk is OSError, safetensors' or torch's own error
        shutil.rmtree(new, ignore_errors=True)
        previous = saved_step if name == "last" else best_step_on_disk(dest)
        kept = (
            f"the previous {name}/ (step {previous}) is intact"
            if previous is not None
            else f"no earlier {name}/ was saved"
        )
        if saved_step is not None:
            kept += f"; free space, then continue from last/ (step {saved_step}) with --resume"
        raise TrainingError(
            f"could not save the step-{step} checkpoint to {dest} "
            f"({type(exc).__name__}: {exc}); {kept}"
        ) from exc


def best_step_on_disk(best: Path) -> int | None:
    try:
        return json.loads((best / BEST_INFO).read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------- resuming
def read_state(last: Path) -> dict:
    """The resume state in `last` (a collective call). A crash between the two renames of a
    save left only the previous save aside: it is taken back."""
    old = aside(last)
    if not last.exists() and (old / STATE_FILE).is_file() and dist.is_main():
        os.replace(old, last)
        log.warning("%s was missing; restored the previous save from %s", last, old)
    dist.barrier()
    if not (last / STATE_FILE).is_file():
        raise TrainingError(f"nothing to resume: {last / STATE_FILE} does not exist")
    return torch.load(last / STATE_FILE, map_location="cpu", weights_only=False)


def check_resumable(state: dict, config: TrainConfig, data: dict, last: Path) -> None:
    """Refuse to resume under settings other than the saved run's; `config` is resolved, `data`
    describes the training file (`columns`, `n_examples`, ...)."""
    now = dataclasses.asdict(config)
    try:
        saved = saved_config(state["config"], data["columns"])
    except ValueError as exc:  # e.g. a loss that no longer takes a saved argument
        raise TrainingError(f"{last}: the saved settings do not apply any more: {exc}") from exc
    saved_data = state.get("data", {})  # older states lack it
    pairs = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now if saved[k] != now[k]]
    pairs += [  # another file of the same size is the user's call: only its size counts
        f"{k}: {saved_data[k]!r} -> {data[k]!r}"
        for k in ("n_examples", "columns", "world_size", "total_steps")
        if k in saved_data and saved_data[k] != data[k]
    ]
    if pairs:
        raise TrainingError(f"resume with the settings of {last}; these differ: {', '.join(pairs)}")


def load_weights_and_optimizer(
    state: dict, last: Path, backbone, optimizer, scheduler, scaler, device
) -> None:
    """The saved weights, optimizer, scheduler and scaler, into the run's own objects."""
    from safetensors.torch import load_file

    weights = load_file(str(last / "model.safetensors"), device=str(device))
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise TrainingError(f"{last} does not fit this --model: {exc}") from exc
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as exc:  # e.g. parameter groups of an older embeval
        msg = f"{last / STATE_FILE}: optimizer state does not fit: {exc}"
        raise TrainingError(msg) from exc
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])


def rank_rng(state: dict, world: int, last: Path) -> dict:
    """This process's saved RNG state; an interrupt save keeps rank 0's only (a warning)."""
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    if len(rngs) != world:
        log.warning(
            "%s holds the RNG state of %d of %d processes: dropout masks after resuming "
            "differ from an uninterrupted run",
            last,
            len(rngs),
            world,
        )
    return rngs[dist.rank()] if len(rngs) == world else rngs[0]


def trim_log(path: Path, step: int) -> None:
    """Drop the log lines written after `step` (the checkpoint a run resumes from)."""
    lines = path.read_text().splitlines() if path.exists() else []
    keep = [ln for ln in lines if _line_step(ln) <= step]
    atomic_write_text(path, "".join(f"{ln}\n" for ln in keep))


def _line_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
