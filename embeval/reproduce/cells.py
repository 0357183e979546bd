"""Run a card's cells: each (model, method, seed) is `embeval train` then `embeval score` in
subprocesses (a crash, a leak or a CUDA context stays in its cell; `--jobs` and Ray need nothing
else), and its results file, written atomically last, is the record that it is done.

A cell's folder OUT/cells/KEY holds train/ (the training run: last/, best/, train_log.jsonl),
results.json + results.pairs.npz (the scored best/ checkpoint, meta["reproduce"] = the card's
name and the cell's settings). State, read by `cell_state`:
- done: results.json exists and its meta["reproduce"] is what the card now asks;
- stale: results.json exists but was made with other settings (refused, never overwritten);
- partial: train/last/ holds a checkpoint: resumed with `embeval train --resume`;
- trained: train/ finished (train/DONE), scoring not yet;
- todo: nothing yet.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from embeval.reproduce.card import PACKAGED, Card, Cell, train_params

log = logging.getLogger(__name__)
RESULTS = "results.json"
TRAIN_DONE = "DONE"  # in train/, once `embeval train` returned 0


class CellError(RuntimeError):
    """A cell's subprocess failed; the message names the cell, the command and its log."""


@dataclass
class CellPlan:
    """Everything a worker needs to run one cell (plain data: it crosses process and Ray
    boundaries)."""

    cell: Cell
    folder: str
    train_argv: list[str]
    score_argv: list[str]
    meta: dict
    processes: int = 1  # training processes (torchrun) for this cell


def cell_folder(out: str | os.PathLike, cell: Cell) -> Path:
    return Path(out) / "cells" / cell.key


def cell_state(folder: Path, meta: dict) -> str:
    res = folder / RESULTS
    if res.exists():
        try:
            got = json.loads(res.read_text(encoding="utf-8"))["meta"].get("reproduce")
        except (ValueError, KeyError, TypeError):
            got = None
        return "done" if got == json.loads(json.dumps(meta)) else "stale"
    if (folder / "train" / TRAIN_DONE).exists():
        return "trained"
    if (folder / "train" / "last").is_dir():
        return "partial"
    return "todo"


def option_args(settings: dict) -> list[str]:
    """`embeval train` command-line options for a method's settings (names checked by the card)."""
    params = train_params()
    argv: list[str] = []
    for key, value in settings.items():
        p = params[key]
        flag = next(o for o in p.opts if o.startswith("--"))
        if key == "loss_args":
            for k, v in value.items():
                argv += [flag, f"{k}={v}"]
        elif p.multiple:
            for v in value:
                argv += [flag, str(v)]
        elif p.is_flag and p.secondary_opts:  # --normalize/--no-normalize
            argv.append(flag if value else p.secondary_opts[0])
        elif p.is_flag:
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def model_arg(model: str) -> str:
    if model == PACKAGED:
        from embeval.core.checkpoint import default_checkpoint_path

        return str(default_checkpoint_path())
    return model


def plan(card: Card, out: str | os.PathLike, cell: Cell) -> CellPlan:
    folder = cell_folder(out, cell)
    ev = card.eval
    train_argv = [
        "train",
        "--model", model_arg(cell.model),
        "--data", card.data_of(cell.method),
        "--out", str(folder / "train"),
        "--seed", str(cell.seed),
        *(["--steps", str(card.steps)] if card.steps is not None else []),
        "--no-progress",
        *option_args(card.methods[cell.method]),
    ]  # fmt: skip
    if "data" in ev:
        train_argv += ["--eval-data", ev["data"]]
    name = f"{cell.method}-s{cell.seed}"
    if len(card.models) > 1:
        from embeval.reproduce.card import model_label

        name = f"{model_label(cell.model)}-{name}"
    score_argv = [
        "score",
        str(folder / "train" / "best"),
        "--tasks", ",".join(ev["tasks"]),
        "--split", ev["split"],
        "--name", name,
        "--out", str(folder / "score.tmp.json"),
        "--overwrite",
        "--no-cache",
        "--jobs", "1",
    ]  # fmt: skip
    for key in ("data", "limit", "protocol", "batch_size"):
        if key in ev:
            score_argv += [f"--{key.replace('_', '-')}", str(ev[key])]
    return CellPlan(cell, str(folder), train_argv, score_argv, card.cell_meta(cell), card.processes)


def _run(argv: list[str], logfile: Path, what: str, env: dict | None, processes: int = 1) -> None:
    cmd = [sys.executable, "-m", "embeval.cli", *argv]
    if processes > 1:  # the distributed Trainer; --standalone: a free port, cells side by side
        torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd = [sys.executable, *torchrun, *cmd[1:]]
    with open(logfile, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        tail = logfile.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise CellError(f"{what} failed (exit {rc}); log {logfile}:\n  " + "\n  ".join(tail))


def run_cell(
    p: CellPlan, device: str | None = None, threads: int | None = None, visible: str | None = None
) -> str:
    """Train (resuming a partial run), score best/, write results.json with the card's metadata.
    Returns the results path. A done cell returns at once. `device`: a single-process cell's
    --device; `visible`: CUDA_VISIBLE_DEVICES for a multi-process cell's GPUs (each training
    process takes the GPU of its local rank; scoring the first)."""
    from embeval.results.files import load_run, save_run

    folder = Path(p.folder)
    state = cell_state(folder, p.meta)
    res = folder / RESULTS
    if state == "done":
        return str(res)
    if state == "stale":
        raise CellError(
            f"{res} was made with other settings than the card now gives for cell "
            f"{p.cell.key}; move it away to rerun the cell"
        )
    folder.mkdir(parents=True, exist_ok=True)
    logfile = folder / "cell.log"
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads and "OMP_NUM_THREADS" not in env:  # cells side by side share the cores
        env["OMP_NUM_THREADS"] = str(threads)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    dev = ["--device", device] if device else []
    if state in ("todo", "partial"):
        extra = ["--resume"] if state == "partial" else []
        if state == "todo" and (folder / "train").exists():
            extra = ["--overwrite"]  # killed before its first checkpoint: nothing to keep
        what = f"cell {p.cell.key}: embeval train"
        train_dev = dev if p.processes == 1 else []  # each rank: cuda:LOCAL_RANK, or the CPU
        _run([*p.train_argv, *train_dev, *extra], logfile, what, env, p.processes)
        (folder / "train" / TRAIN_DONE).write_text("")
    _run([*p.score_argv, *dev], logfile, f"cell {p.cell.key}: embeval score", env)
    tmp = folder / "score.tmp.json"
    run = load_run(tmp)
    run.load_pairs()
    run.meta["reproduce"] = p.meta
    save_run(run, res)  # pairs first, JSON last: a results.json always has its pairs
    tmp.unlink()
    (folder / "score.tmp.pairs.npz").unlink(missing_ok=True)
    return str(res)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch build with CUDA: CPU cells
        return 0


def visible_devices(indices: range) -> str:
    """CUDA_VISIBLE_DEVICES naming this process's CUDA devices `indices`: through its own
    CUDA_VISIBLE_DEVICES when set (device 0 of a process started with "4,5" is GPU 4)."""
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in own.split(",")] if own else None
    return ",".join(ids[i] if ids else str(i) for i in indices)


def run_plans(
    plans: list[CellPlan], jobs: int = 1, executor: str = "local", on_done=None
) -> dict[str, str | Exception]:
    """Run the plans' cells; returns cell key -> results path, or the exception it raised.
    local: `jobs` cells side by side, each on its own GPU when there are GPUs (its own group of
    `processes` GPUs for multi-process cells; cells beyond the GPU count wait), else each with
    cores / (jobs x processes) threads a process. ray: each cell a Ray task (`processes` GPUs
    when the cluster has GPUs) on the cluster RAY_ADDRESS names, else on a local one."""
    if executor == "ray":
        return _run_ray(plans, on_done)
    from concurrent.futures import ThreadPoolExecutor, as_completed
    from queue import Queue

    n = max((p.processes for p in plans), default=1)
    gpus = gpu_count()
    if gpus and n > gpus:
        raise CellError(f"the card asks {n} processes (GPUs) per cell; this machine has {gpus}")
    slots: Queue = Queue()  # (device, visible) per cell running at once
    for i in range(min(jobs, gpus // n) if gpus else jobs):
        group = visible_devices(range(i * n, (i + 1) * n))
        slots.put((None, None) if not gpus else (f"cuda:{i}", None) if n == 1 else (None, group))

    threads = None if gpus or jobs * n == 1 else max(1, (os.cpu_count() or 1) // (jobs * n))

    def work(p: CellPlan) -> str:
        device, visible = slots.get()
        try:
            return run_cell(p, device, threads, visible=visible)
        finally:
            slots.put((device, visible))

    out: dict[str, str | Exception] = {}
    with ThreadPoolExecutor(max(1, slots.qsize())) as pool:
        futures = {pool.submit(work, p): p.cell.key for p in plans}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                out[key] = fut.result()
            except Exception as exc:  # one failed cell does not stop the others
                out[key] = exc
            if on_done:
                on_done(key, out[key])
    return out


def _run_ray(plans: list[CellPlan], on_done) -> dict[str, str | Exception]:
    try:
        import ray
    except ImportError:
        raise CellError("--executor ray needs Ray: pip install 'embeval[ray]'") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        local = {} if address else {"include_dashboard": False}  # a local cluster: lean
        ray.init(address=address, log_to_driver=False, **local)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = max((p.processes for p in plans), default=1)  # Ray sets the task's CUDA_VISIBLE_DEVICES
    task = ray.remote(num_gpus=n if gpus else 0, num_cpus=n, max_retries=0)(run_cell)
    refs = {task.remote(p): p.cell.key for p in plans}
    out: dict[str, str | Exception] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        key = refs[ready[0]]
        try:
            out[key] = ray.get(ready[0])
        except Exception as exc:
            out[key] = exc
        if on_done:
            on_done(key, out[key])
    return out
